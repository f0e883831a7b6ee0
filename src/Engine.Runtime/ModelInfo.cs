// Owns: the summary of a loaded model that front ends print (architecture and sizes), so they need not see
// Engine.Model's ModelConfig.
namespace Engine.Runtime;

/// <summary>What a front end shows about a loaded model.</summary>
/// <param name="Architecture">GGUF architecture name (llama, qwen2, rwkv6 …).</param>
/// <param name="LayerCount">Transformer / RWKV layers.</param>
/// <param name="EmbeddingLength">Model width.</param>
/// <param name="VocabSize">Token vocabulary size.</param>
/// <param name="TrainedContextLength">Context the model was trained on (0 = unknown / unbounded, e.g. RWKV).</param>
public sealed record ModelInfo(string Architecture, int LayerCount, int EmbeddingLength, int VocabSize, int TrainedContextLength);
