// Owns: choosing the architecture implementation for a ModelFile by `general.architecture`.
// Invariant: an unknown or missing architecture is a ModelFormatException naming it, never a guess.
using Engine.Formats;
using Engine.Kernels;

namespace Engine.Model;

public static class ModelLoader
{
    /// <summary>Architectures this build can run.</summary>
    public static IReadOnlyList<string> SupportedArchitectures { get; } =
        [LlamaArchitecture.Name, Qwen2Architecture.Name, Qwen3Architecture.Name];

    /// <summary>Builds any supported model for <paramref name="file"/>: a transformer (<see cref="Load"/>) or a
    /// recurrent RWKV v5.2/v6/v7 model (<see cref="RwkvModel"/>).</summary>
    public static ILanguageModel LoadAny(ModelFile file, IBackend backend, bool ownsFile = false) =>
        RwkvModel.IsRwkv(file.Architecture) ? RwkvModel.Load(file, backend, ownsFile) : Load(file, backend, ownsFile);

    /// <summary>Builds the model for <paramref name="file"/>. The model does not own the file unless <paramref name="ownsFile"/>.</summary>
    public static TransformerModel Load(ModelFile file, IBackend backend, bool ownsFile = false)
    {
        var owner = ownsFile ? file : null;
        return file.Architecture switch
        {
            null => throw new ModelFormatException(file.Path, -1, "metadata 'general.architecture' is missing"),
            LlamaArchitecture.Name => LlamaArchitecture.Load(file, backend, owner),
            Qwen2Architecture.Name => Qwen2Architecture.Load(file, backend, owner),
            Qwen3Architecture.Name => Qwen3Architecture.Load(file, backend, owner),
            var r when RwkvModel.IsRwkv(r) => throw new ModelFormatException(file.Path, -1,
                $"architecture '{r}' is a recurrent model, not a transformer; use ModelLoader.LoadAny"),
            var a => throw new ModelFormatException(file.Path, -1,
                $"architecture '{a}' is not supported (supported: {string.Join(", ", SupportedArchitectures)})"),
        };
    }
}
