// Owns: the disk tier in its simplest form — a float32 IKvStore whose K/V rows live in one memory-mapped file, so the
// total KV can exceed RAM: the OS pages blocks in on demand when attention reads them and writes cold pages back.
// Layout of the file: [layer, seq, K|V, Capacity, KvDim] float32, one contiguous page per (layer, seq) as in
// ContiguousKvStore, whose bookkeeping (writes, pages, lengths, truncation, checks) this class inherits; it only
// supplies the rows from the mapping (the pages handed to attention point straight into it — no copy).
// Invariants: the file is created (sparse where the OS supports it) with the full size up front and deleted on Dispose
// when the store created it as a temporary; lengths are tracked in memory (the file holds rows only, not a format).
using System.IO.MemoryMappedFiles;
using Engine.Kernels;

namespace Engine.Memory.Disk;

public sealed unsafe class MappedKvStore : ContiguousKvStore
{
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _base;
    private readonly string _path;
    private readonly bool _deleteOnDispose;

    /// <param name="path">Backing file; null = a temporary file deleted on Dispose.</param>
    public MappedKvStore(int layerCount, int kvDim, int capacity, int sequenceCapacity = 1, string? path = null)
        : base(layerCount, kvDim, capacity, sequenceCapacity)
    {
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
    }

    public long FileBytes { get; }
    public string FilePath => _path;

    // [layer, seq, K|V, Capacity, KvDim] inside the mapping.
    protected override float* RowBuffer(int layer, int seqId, int which) =>
        (float*)(_base + ((((long)layer * SequenceCapacity + seqId) * 2 + which) * Capacity * KvDim) * sizeof(float));

    protected override void ReleaseStorage()
    {
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
        if (_deleteOnDispose) try { File.Delete(_path); } catch (IOException) { }
    }
}
