// Owns: the disk tier in its simplest form — a float32 IKvStore whose K/V rows live in one memory-mapped file, so the
// total KV can exceed RAM: the OS pages blocks in on demand when attention reads them and writes cold pages back.
// Layout of the file: [layer, seq, K|V, Capacity, KvDim] float32, one contiguous page per (layer, seq) as in
// ContiguousKvStore (the pages handed to attention point straight into the mapping — no copy).
// Invariants: the file is created (sparse where the OS supports it) with the full size up front and deleted on Dispose
// when the store created it as a temporary; lengths are tracked in memory (the file holds rows only, not a format).
using System.IO.MemoryMappedFiles;
using Engine.Kernels;

namespace Engine.Memory.Disk;

public sealed unsafe class MappedKvStore : IKvStore
{
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _base;
    private readonly string _path;
    private readonly bool _deleteOnDispose;
    private readonly int[,] _length;            // [layer, seq]
    private readonly KvPage[,][] _page;         // [layer, seq] -> one-element page list
    private bool _disposed;

    /// <param name="path">Backing file; null = a temporary file deleted on Dispose.</param>
    public MappedKvStore(int layerCount, int kvDim, int capacity, int sequenceCapacity = 1, string? path = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(layerCount, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(kvDim, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(sequenceCapacity, 1);
        LayerCount = layerCount; KvDim = kvDim; Capacity = capacity; SequenceCapacity = sequenceCapacity;
        _deleteOnDispose = path == null;
        _path = path ?? Path.Combine(Path.GetTempPath(), $"engine-kv-{Guid.NewGuid():N}.bin");
        long bytes = 2L * layerCount * sequenceCapacity * capacity * kvDim * sizeof(float);
        FileBytes = bytes;
        using (var fs = new FileStream(_path, FileMode.Create, FileAccess.ReadWrite, FileShare.None)) fs.SetLength(bytes);
        _map = MemoryMappedFile.CreateFromFile(_path, FileMode.Open, null, bytes, MemoryMappedFileAccess.ReadWrite);
        _view = _map.CreateViewAccessor(0, bytes, MemoryMappedFileAccess.ReadWrite);
        byte* p = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _base = p + _view.PointerOffset;
        _length = new int[layerCount, sequenceCapacity];
        _page = new KvPage[layerCount, sequenceCapacity][];
        for (int l = 0; l < layerCount; l++)
            for (int s = 0; s < sequenceCapacity; s++) _page[l, s] = new KvPage[1];
    }

    public int LayerCount { get; }
    public int KvDim { get; }
    public int Capacity { get; }
    public int SequenceCapacity { get; }
    public long FileBytes { get; }
    public string FilePath => _path;

    private float* Rows(int layer, int seq, int which) =>
        (float*)(_base + ((((long)layer * SequenceCapacity + seq) * 2 + which) * Capacity * KvDim) * sizeof(float));

    public void Write(int layer, int seqId, ReadOnlySpan<int> positions, ReadOnlySpan<float> k, ReadOnlySpan<float> v)
    {
        Check(layer, seqId);
        int n = positions.Length;
        if (k.Length < n * KvDim || v.Length < n * KvDim)
            throw new ArgumentException($"K/V spans hold {k.Length}/{v.Length} floats, need {n} × {KvDim}");
        int newLength = _length[layer, seqId];
        foreach (int p in positions)
        {
            if (p < 0) throw new ArgumentOutOfRangeException(nameof(positions), $"negative KV position {p}");
            if (p >= Capacity) throw new KvCapacityException(p, Capacity);
            if (p > newLength) throw new ArgumentException($"KV position {p} leaves a gap after length {newLength} (layer {layer}, sequence {seqId})");
            newLength = Math.Max(newLength, p + 1);
        }
        float* kb = Rows(layer, seqId, 0), vb = Rows(layer, seqId, 1);
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
            _page[l, seqId][0] = _page[l, seqId][0] with { TokenCount = length };
        }
    }

    public void Clear(int seqId) => Truncate(seqId, 0);

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
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
        if (_deleteOnDispose) try { File.Delete(_path); } catch (IOException) { }
    }
}
