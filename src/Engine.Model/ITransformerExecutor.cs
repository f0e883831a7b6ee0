// Owns: the seam through which a TransformerModel's forward can run somewhere other than its IBackend ops on host
// spans — e.g. the GPU device forward (Engine.Runtime wires it). The model keeps its config, weights and
// validation; an executor only runs the validated batch.
// Invariants: Forward has TransformerModel.Forward's contract (K/V of the batch stored in the executor's KV for the
// same block ids / sequence ids the store names; logits rows as asked); CopyBlock mirrors a paged store's
// copy-on-write so prefix caching keeps working when the KV bytes live elsewhere.
using Engine.Memory;

namespace Engine.Model;

/// <summary>Runs a transformer's forward (instead of the host-span path).</summary>
public interface ITransformerExecutor : IDisposable
{
    /// <summary>Runs the (validated) batch: logits is [logitRows.Length, vocab].</summary>
    void Forward(ForwardBatch batch, IKvStore kv, ReadOnlySpan<int> logitRows, Span<float> logits);

    /// <summary>A KV store for the single-sequence path, or null for the model's default.</summary>
    IKvStore? CreateKvStore(int contextLength, int sequenceCapacity);

    /// <summary>Copies the first <paramref name="tokens"/> slots of a KV block (copy-on-write in the paged store).</summary>
    void CopyBlock(int source, int destination, int tokens);
}
