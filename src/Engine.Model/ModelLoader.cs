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
            var a => throw new ModelFormatException(file.Path, -1,
                $"architecture '{a}' is not supported (supported: {string.Join(", ", SupportedArchitectures)})"),
        };
    }
}
