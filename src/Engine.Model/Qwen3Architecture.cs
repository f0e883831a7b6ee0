// Owns: the `qwen3` GGUF architecture: per-head RMSNorm on Q and K (attn_q_norm / attn_k_norm, applied before RoPE),
// NEOX RoPE, explicit head dim (`qwen3.attention.key_length`, may differ from embedding_length / head_count), no biases.
using Engine.Formats;
using Engine.Kernels;

namespace Engine.Model;

public static class Qwen3Architecture
{
    public const string Name = "qwen3";

    public static TransformerModel Load(ModelFile file, IBackend backend, IDisposable? owner = null)
    {
        var config = ModelConfig.FromFile(file, RopeStyle.Neox);
        var weights = WeightLoader.LoadDecoder(file, config, biases: false, qkNorm: true);
        return new TransformerModel(config, weights, backend, owner);
    }
}
