// Owns: the simplest IKvStore — float32 K/V in one native, 64-byte-aligned buffer per (layer, sequence), sized by the
// context length, exposed as a single KvPage per sequence.
// Invariants: buffer [layer][seq] is [Capacity, KvDim] for K and the same for V; lengths are tracked per (layer, seq)
// so a forward pass sees, in layer L, exactly the positions written to layer L so far. Memory is allocated lazily
// per sequence on first write and freed on Dispose. Subclasses may supply the row storage elsewhere by
// overriding RowBuffer / ReleaseStorage (the disk tier is Disk.TieredKvStore; MappedKvStore is one of its configurations).
using System.Runtime.InteropServices;
using Engine.Kernels;
using Engine.Tensors;

namespace Engine.Memory;

/// <summary>Float32 contiguous KV cache: one page per (layer, sequence).</summary>
public unsafe class ContiguousKvStore : IKvStore
{
    private readonly float*[,] _k;          // [layer, seq] -> [Capacity, KvDim]
    private readonly float*[,] _v;          // [layer, seq] -> [Capacity, KvDim]
    private readonly int[,] _length;        // [layer, seq]
    private readonly KvPage[,][] _page;     // [layer, seq] -> one-element page list (reused)
    private bool _disposed;

    public ContiguousKvStore(int layerCount, int kvDim, int capacity, int sequenceCapacity = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(layerCount, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(kvDim, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(sequenceCapacity, 1);
        LayerCount = layerCount; KvDim = kvDim; Capacity = capacity; SequenceCapacity = sequenceCapacity;
        _k = new float*[layerCount, sequenceCapacity];
        _v = new float*[layerCount, sequenceCapacity];
        _length = new int[layerCount, sequenceCapacity];
        _page = new KvPage[layerCount, sequenceCapacity][];
        for (int l = 0; l < layerCount; l++)
            for (int s = 0; s < sequenceCapacity; s++) _page[l, s] = new KvPage[1];
    }

    public int LayerCount { get; }
    public int KvDim { get; }
    public int Capacity { get; }
    public int SequenceCapacity { get; }

    /// <summary>Bytes held per sequence once allocated (K + V, all layers).</summary>
    public long BytesPerSequence => 2L * LayerCount * Capacity * KvDim * sizeof(float);

    public void Write(int layer, int seqId, ReadOnlySpan<int> positions, ReadOnlySpan<float> k, ReadOnlySpan<float> v)
    {
        Check(layer, seqId);
        int n = positions.Length;
        if (k.Length < n * KvDim || v.Length < n * KvDim)
            throw new ArgumentException($"K/V spans hold {k.Length}/{v.Length} floats, need {n} × {KvDim}");
        int length = _length[layer, seqId];
        int newLength = length;
        for (int i = 0; i < n; i++)
        {
            int p = positions[i];
            if (p < 0) throw new ArgumentOutOfRangeException(nameof(positions), $"negative KV position {p}");
            if (p >= Capacity) throw new KvCapacityException(p, Capacity);
            if (p > newLength) throw new ArgumentException($"KV position {p} leaves a gap after length {newLength} (layer {layer}, sequence {seqId})");
            newLength = Math.Max(newLength, p + 1);
        }
        float* kb = RowBuffer(layer, seqId, 0), vb = RowBuffer(layer, seqId, 1);
        for (int i = 0; i < n; i++)
        {
            k.Slice(i * KvDim, KvDim).CopyTo(new Span<float>(kb + (long)positions[i] * KvDim, KvDim));
            v.Slice(i * KvDim, KvDim).CopyTo(new Span<float>(vb + (long)positions[i] * KvDim, KvDim));
        }
        _length[layer, seqId] = newLength;
        _page[layer, seqId][0] = new KvPage((nint)kb, (nint)vb, newLength, 0, KvDim);
    }

    public ReadOnlySpan<KvPage> Pages(int layer, int seqId)
    {
        Check(layer, seqId);
        return _length[layer, seqId] == 0 ? ReadOnlySpan<KvPage>.Empty : _page[layer, seqId];
    }

    public int Length(int layer, int seqId) { Check(layer, seqId); return _length[layer, seqId]; }

    public void Truncate(int seqId, int length)
    {
        Check(0, seqId);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        for (int l = 0; l < LayerCount; l++)
        {
            if (_length[l, seqId] <= length) continue;
            _length[l, seqId] = length;
            var p = _page[l, seqId][0];
            _page[l, seqId][0] = p with { TokenCount = length };
        }
    }

    public void Clear(int seqId) => Truncate(seqId, 0);

    /// <summary>The [Capacity, KvDim] float32 rows of K (<paramref name="which"/> = 0) or V (1) of (layer, seq);
    /// allocated on first use. Called on every write, so it must be cheap after the first call.</summary>
    protected virtual float* RowBuffer(int layer, int seqId, int which)
    {
        if (_k[layer, seqId] == null)
        {
            nuint bytes = (nuint)((long)Capacity * KvDim * sizeof(float));
            _k[layer, seqId] = (float*)HugePageMemory.Allocate(bytes);
            _v[layer, seqId] = (float*)HugePageMemory.Allocate(bytes);
        }
        return which == 0 ? _k[layer, seqId] : _v[layer, seqId];
    }

    /// <summary>Frees what <see cref="RowBuffer"/> handed out (called once, from Dispose).</summary>
    protected virtual void ReleaseStorage()
    {
        for (int l = 0; l < LayerCount; l++)
            for (int s = 0; s < SequenceCapacity; s++)
            {
                HugePageMemory.Free(_k[l, s]);
                HugePageMemory.Free(_v[l, s]);
                _k[l, s] = null; _v[l, s] = null;
            }
    }

    private void Check(int layer, int seqId)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if ((uint)layer >= (uint)LayerCount) throw new ArgumentOutOfRangeException(nameof(layer), $"layer {layer} not in 0..{LayerCount - 1}");
        if ((uint)seqId >= (uint)SequenceCapacity) throw new ArgumentOutOfRangeException(nameof(seqId), $"sequence id {seqId} not in 0..{SequenceCapacity - 1}");
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        ReleaseStorage();
        GC.SuppressFinalize(this);
    }
}
