// Owns: the disk tier's storage — fixed-size slots in memory-mapped segment files (<prefix>.<n>.bin), a free list, and
// stable pointers into the mappings (the OS pages data in on demand and may drop clean pages under memory pressure,
// so the bytes held on disk do not count against RAM).
// Invariants: a slot's address never moves while the file is open (new capacity comes as a new segment file, old
// mappings stay valid); Allocate never returns a slot in use; Free'd slots are reused lowest first; all slots of a
// segment are SlotBytes long and 64-byte aligned. Segment files are created with their blocks reserved (MappedRegion),
// so a full disk fails at Allocate/EnsureCapacity with an IOException instead of a fault on first touch.
// Each segment is one MappedRegion (the disk tier's single mmap primitive).

namespace Engine.Memory.Disk;

/// <summary>Fixed-size slots in memory-mapped files.</summary>
public sealed unsafe class DiskKvFile : IDisposable
{
    private readonly List<MappedRegion> _segments = new();
    private readonly SortedSet<int> _free = new();
    private readonly HashSet<int> _used = new();
    private int _nextNew;          // slots 0 .. _nextNew-1 have existed at some point (used or free)
    private bool _disposed;

    /// <summary>Creates (or, with <paramref name="usedSlots"/>, reopens) the slot files at <paramref name="pathPrefix"/>.</summary>
    /// <param name="pathPrefix">segment files are <c>{pathPrefix}.{n}.bin</c></param>
    /// <param name="slotBytes">bytes per slot (rounded up to 64)</param>
    /// <param name="slotsPerSegment">slots per segment file (0 = about 64 MiB per segment)</param>
    /// <param name="usedSlots">reopen: the slots that hold data (the rest of the existing files' slots become free)</param>
    public DiskKvFile(string pathPrefix, long slotBytes, int slotsPerSegment = 0, IEnumerable<int>? usedSlots = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(slotBytes, 1);
        PathPrefix = pathPrefix;
        SlotBytes = (slotBytes + 63) / 64 * 64;
        SlotsPerSegment = slotsPerSegment > 0 ? slotsPerSegment : (int)Math.Clamp((64L << 20) / SlotBytes, 1, 1 << 20);
        var dir = Path.GetDirectoryName(Path.GetFullPath(pathPrefix));
        if (dir != null) Directory.CreateDirectory(dir);
        if (usedSlots == null)
        {
            for (int n = 0; File.Exists(SegmentPath(n)); n++) File.Delete(SegmentPath(n));
            return;
        }
        int maxUsed = -1;
        foreach (int s in usedSlots)
        {
            if (s < 0) throw new InvalidDataException($"disk tier {pathPrefix}: negative slot {s}");
            if (!_used.Add(s)) throw new InvalidDataException($"disk tier {pathPrefix}: slot {s} listed twice");
            maxUsed = Math.Max(maxUsed, s);
        }
        int segments = maxUsed < 0 ? 0 : maxUsed / SlotsPerSegment + 1;
        for (int n = 0; n < segments; n++)
        {
            var path = SegmentPath(n);
            if (!File.Exists(path)) throw new InvalidDataException($"disk tier segment missing: {path}");
            long expect = SegmentBytes;
            long actual = new FileInfo(path).Length;
            if (actual != expect) throw new InvalidDataException($"disk tier segment {path} is {actual} bytes, expected {expect} (truncated or corrupted)");
            _segments.Add(new MappedRegion(path, SegmentBytes, create: false));
        }
        _nextNew = segments * SlotsPerSegment;
        for (int s = 0; s < _nextNew; s++) if (!_used.Contains(s)) _free.Add(s);
    }

    public string PathPrefix { get; }
    public long SlotBytes { get; }
    public int SlotsPerSegment { get; }
    private long SegmentBytes => SlotBytes * SlotsPerSegment;

    /// <summary>Slots holding data.</summary>
    public int UsedSlots => _used.Count;

    /// <summary>Bytes of data held on disk (used slots × slot size).</summary>
    public long UsedBytes => _used.Count * SlotBytes;

    /// <summary>Size of the segment files (their blocks are reserved on creation).</summary>
    public long FileBytes => _segments.Count * SegmentBytes;

    /// <summary>The slots in use, ascending.</summary>
    public IEnumerable<int> Used => _used.Order();

    public string SegmentPath(int n) => $"{PathPrefix}.{n}.bin";

    /// <summary>Creates segment files until at least <paramref name="slots"/> slots exist, so the files are
    /// there up front (e.g. a store that wants its whole file at construction, as one segment).</summary>
    public void EnsureCapacity(int slots)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        while ((long)_segments.Count * SlotsPerSegment < slots)
            _segments.Add(new MappedRegion(SegmentPath(_segments.Count), SegmentBytes, create: true));
    }

    /// <summary>Takes a free slot (lowest first), growing by one segment file when none is free.</summary>
    public int Allocate()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        int slot;
        if (_free.Count > 0) { slot = _free.Min; _free.Remove(slot); }
        else
        {
            if (_nextNew == _segments.Count * SlotsPerSegment)
                _segments.Add(new MappedRegion(SegmentPath(_segments.Count), SegmentBytes, create: true));
            slot = _nextNew++;
        }
        _used.Add(slot);
        return slot;
    }

    /// <summary>Returns a slot to the free list.</summary>
    public void Free(int slot)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_used.Remove(slot)) throw new ArgumentException($"disk tier slot {slot} is not in use", nameof(slot));
        _free.Add(slot);
    }

    /// <summary>Address of a slot in the mapping (valid until Dispose).</summary>
    public byte* Pointer(int slot)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_used.Contains(slot)) throw new ArgumentException($"disk tier slot {slot} is not in use", nameof(slot));
        return _segments[slot / SlotsPerSegment].Base + (long)(slot % SlotsPerSegment) * SlotBytes;
    }

    /// <summary>Writes dirty mapped pages to the files.</summary>
    public void Flush()
    {
        foreach (var s in _segments) s.Flush();
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var s in _segments) s.Dispose();
        _segments.Clear();
    }
}
