// Owns: the single-sequence KV store of a model whose K/V live on the GPU: it keeps only the per-(layer, sequence)
// lengths the runtime reads (Length / Truncate / Clear), with ContiguousKvStore's checks (capacity, no gaps); the
// rows themselves are in the executor's device block pool, so Pages() has nothing to hand out.
using Engine.Kernels;
using Engine.Memory;

namespace Engine.Runtime.Gpu;

/// <summary>Lengths-only IKvStore for device-resident KV.</summary>
public sealed class DeviceKvLengths : IKvStore
{
    private readonly int[,] _length;   // [layer, seq]

    public DeviceKvLengths(int layerCount, int kvDim, int capacity, int sequenceCapacity)
    {
        LayerCount = layerCount; KvDim = kvDim; Capacity = capacity; SequenceCapacity = sequenceCapacity;
        _length = new int[layerCount, sequenceCapacity];
    }

    public int LayerCount { get; }
    public int KvDim { get; }
    public int Capacity { get; }
    public int SequenceCapacity { get; }

    public void Write(int layer, int seqId, ReadOnlySpan<int> positions, ReadOnlySpan<float> k, ReadOnlySpan<float> v) => Advance(layer, seqId, positions);

    /// <summary>Records positions as written (the device wrote the rows).</summary>
    public void Advance(int layer, int seqId, ReadOnlySpan<int> positions)
    {
        Check(layer, seqId);
        int len = _length[layer, seqId];
        foreach (int p in positions)
        {
            if (p < 0) throw new ArgumentOutOfRangeException(nameof(positions), $"negative KV position {p}");
            if (p >= Capacity) throw new KvCapacityException(p, Capacity);
            if (p > len) throw new ArgumentException($"KV position {p} leaves a gap after length {len} (layer {layer}, sequence {seqId})");
            len = Math.Max(len, p + 1);
        }
        _length[layer, seqId] = len;
    }

    public ReadOnlySpan<KvPage> Pages(int layer, int seqId) =>
        throw new NotSupportedException("this KV store's rows live in GPU memory; host attention cannot read them");

    public int Length(int layer, int seqId) { Check(layer, seqId); return _length[layer, seqId]; }

    public void Truncate(int seqId, int length)
    {
        Check(0, seqId);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        for (int l = 0; l < LayerCount; l++) _length[l, seqId] = Math.Min(_length[l, seqId], length);
    }

    public void Clear(int seqId) => Truncate(seqId, 0);

    private void Check(int layer, int seqId)
    {
        if ((uint)layer >= (uint)LayerCount) throw new ArgumentOutOfRangeException(nameof(layer), $"layer {layer} not in 0..{LayerCount - 1}");
        if ((uint)seqId >= (uint)SequenceCapacity) throw new ArgumentOutOfRangeException(nameof(seqId), $"sequence id {seqId} not in 0..{SequenceCapacity - 1}");
    }

    public void Dispose() { }
}
