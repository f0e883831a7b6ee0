// Owns: what the runtime sees of a model — its config and a forward pass over a ForwardBatch and a KV store.
// Invariant: a model keeps no per-sequence state; everything that outlives a call is in the IKvStore.
using Engine.Memory;

namespace Engine.Model;

public interface ILanguageModel : IDisposable
{
    ModelConfig Config { get; }

    /// <summary>
    /// Runs the batch: writes its K/V into <paramref name="kv"/> and produces logits. With <paramref name="allLogits"/>,
    /// logits is [batch.Count, VocabSize] (row t = prediction after token t); otherwise [VocabSize] for the batch's last token.
    /// </summary>
    void Forward(ForwardBatch batch, IKvStore kv, Span<float> logits, bool allLogits);

    /// <summary>A KV store sized for this model (float32, contiguous).</summary>
    IKvStore CreateKvStore(int contextLength, int sequenceCapacity = 1);
}
