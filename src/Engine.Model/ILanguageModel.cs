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

    /// <summary>
    /// Runs the batch (which may mix sequences: tokens of one sequence in increasing position order) and produces logits
    /// only for the batch rows <paramref name="logitRows"/>: logits is [logitRows.Length, VocabSize], row i = prediction
    /// after token logitRows[i]. The default computes all rows (or only the last when that is all that is asked) and copies.
    /// </summary>
    void Forward(ForwardBatch batch, IKvStore kv, ReadOnlySpan<int> logitRows, Span<float> logits)
    {
        int vocab = Config.VocabSize;
        if (logitRows.Length == 1 && logitRows[0] == batch.Count - 1)
        {
            Forward(batch, kv, logits, allLogits: false);
            return;
        }
        var all = new float[batch.Count * vocab];
        Forward(batch, kv, all, allLogits: true);
        for (int i = 0; i < logitRows.Length; i++)
            all.AsSpan(logitRows[i] * vocab, vocab).CopyTo(logits.Slice(i * vocab, vocab));
    }

    /// <summary>A KV store sized for this model (float32, contiguous).</summary>
    IKvStore CreateKvStore(int contextLength, int sequenceCapacity = 1);
}
