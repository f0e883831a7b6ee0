// Owns: the storage interface through which a model writes and reads its attention K/V ("models don't own caches").
// Invariants: K and V rows are float32 [kvDim] per (layer, sequence, position); Pages(layer, seq) covers positions
// 0 .. Length(layer, seq) - 1 in order, as one or more KvPage runs (a contiguous store gives one page, a paged block
// store gives its block table). A write at a position past the store's capacity throws KvCapacityException before
// touching anything. Source: llama.cpp's llama-memory interface (seq_rm / clear) and vLLM block tables, reduced to
// what a forward pass needs.
using Engine.Kernels;

namespace Engine.Memory;

/// <summary>KV storage seen by a model's forward pass.</summary>
public interface IKvStore : IDisposable
{
    /// <summary>Number of transformer layers stored.</summary>
    int LayerCount { get; }

    /// <summary>Floats per K (and per V) row: kvHeadCount · headDim.</summary>
    int KvDim { get; }

    /// <summary>Maximum number of positions one sequence can hold.</summary>
    int Capacity { get; }

    /// <summary>Number of sequences the store can hold at once (valid ids are 0 .. SequenceCapacity-1).</summary>
    int SequenceCapacity { get; }

    /// <summary>
    /// Stores K/V rows of <paramref name="positions"/>.Length tokens of one sequence in one layer.
    /// k, v: [positions.Length, KvDim]. Positions must not leave a gap after the current length.
    /// </summary>
    void Write(int layer, int seqId, ReadOnlySpan<int> positions, ReadOnlySpan<float> k, ReadOnlySpan<float> v);

    /// <summary>The pages holding positions 0 .. Length(layer, seqId) - 1 of the sequence in that layer.</summary>
    ReadOnlySpan<KvPage> Pages(int layer, int seqId);

    /// <summary>Number of positions of <paramref name="seqId"/> stored in <paramref name="layer"/>.</summary>
    int Length(int layer, int seqId);

    /// <summary>Drops every position ≥ <paramref name="length"/> of the sequence in all layers.</summary>
    void Truncate(int seqId, int length);

    /// <summary>Drops the whole sequence (all layers).</summary>
    void Clear(int seqId);
}

/// <summary>A write past the capacity of a KV store (a prompt or generation longer than the context).</summary>
public sealed class KvCapacityException : ArgumentOutOfRangeException
{
    public KvCapacityException(int position, int capacity)
        : base("position", $"KV position {position} exceeds the KV store capacity of {capacity} tokens (context length)")
    {
        Position = position; StoreCapacity = capacity;
    }

    public int Position { get; }
    public int StoreCapacity { get; }
}
