// Owns: the `qwen2` GGUF architecture (Qwen2 / Qwen2.5): q/k/v projection biases, NEOX (half-split) RoPE.
using Engine.Formats;
using Engine.Kernels;

namespace Engine.Model;

public static class Qwen2Architecture
{
    public const string Name = "qwen2";

    public static TransformerModel Load(ModelFile file, IBackend backend, IDisposable? owner = null)
    {
        var config = ModelConfig.FromFile(file, RopeStyle.Neox);
        var weights = WeightLoader.LoadDecoder(file, config, biases: true, qkNorm: false);
        return new TransformerModel(config, weights, backend, owner);
    }
}
