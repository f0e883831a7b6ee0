// Owns: the `llama` GGUF architecture (Llama 1/2/3, Mistral, TinyLlama, SmolLM, llama2.c checkpoints):
// normal (adjacent-pair) RoPE, no biases, optional Llama-3 `rope_freqs.weight` factors, optional tied output.
using Engine.Formats;
using Engine.Kernels;

namespace Engine.Model;

public static class LlamaArchitecture
{
    public const string Name = "llama";

    public static TransformerModel Load(ModelFile file, IBackend backend, IDisposable? owner = null)
    {
        var config = ModelConfig.FromFile(file, RopeStyle.Normal);
        var weights = WeightLoader.LoadDecoder(file, config, biases: false, qkNorm: false);
        return new TransformerModel(config, weights, backend, owner);
    }
}
