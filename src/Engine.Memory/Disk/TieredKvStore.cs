// Owns: the single-sequence path's disk-backed KV store — a paged float32 IKvStore whose blocks live in RAM or in the
// disk tier (DiskKvFile slots), in one of two configurations:
//   RAM budget (default): when the RAM held by blocks exceeds the budget, the least recently selected full block
//   (oldest Pages() touch, then lowest block index) is moved to the memory-mapped disk file; attention then reads it
//   in place from the mapping; a write into a block on disk promotes it back to RAM first.
//   blocks on disk (blocksOnDisk: true; MappedKvStore is this configuration): every block lives in the disk tier from
//   its first write and is written and read in place — no RAM copy at all, so the KV can exceed RAM.
// (The paged serving path's disk tier is PagedKvStore's disk blocks, moved there by the scheduler.)
// Invariants: Pages(layer, seq) covers 0 .. Length-1 in block order (one page per block, StartPosition = block·B);
// the payload is bit-identical whichever tier holds it; RamBytes ≤ max(budget, one partially-filled tail block per
// (layer, seq)) after every Write (0 with blocks on disk). Tiering idea: the
// issue's disk tier + vLLM's swap space, with in-place reads from an mmap instead of swap-in.
using System.Runtime.InteropServices;
using Engine.Kernels;

namespace Engine.Memory.Disk;

/// <summary>Paged F32 KV store with a RAM budget and a memory-mapped disk tier for cold blocks.</summary>
public unsafe class TieredKvStore : IKvStore
{
    private readonly List<Block>[,] _blocks;   // [layer, seq] -> blocks in position order
    private readonly int[,] _length;           // [layer, seq]
    private readonly KvPage[,][] _pages;       // [layer, seq] -> page list buffer (grown)
    private readonly DiskKvTier _disk;
    private readonly long _blockBytes;         // K + V bytes of one block in RAM
    private long _tick;
    private bool _disposed;

    /// <param name="blockSize">tokens per block (the unit that moves between tiers)</param>
    /// <param name="ramBudgetBytes">bytes of K/V blocks kept in RAM (long.MaxValue = never offload)</param>
    /// <param name="diskPathPrefix">prefix of the disk tier's segment files (a temp file when null, deleted on Dispose)</param>
    /// <param name="blocksOnDisk">every block lives on disk from its first write (written and read in place; the RAM
    /// budget is ignored) and the disk file is created up front as one sparse segment sized for the whole capacity</param>
    public TieredKvStore(int layerCount, int kvDim, int capacity, int sequenceCapacity = 1, int blockSize = 32,
        long ramBudgetBytes = long.MaxValue, string? diskPathPrefix = null, bool blocksOnDisk = false)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(layerCount, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(kvDim, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(sequenceCapacity, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(ramBudgetBytes);
        LayerCount = layerCount; KvDim = kvDim; Capacity = capacity; SequenceCapacity = sequenceCapacity;
        BlockSize = blockSize; BlocksOnDisk = blocksOnDisk; RamBudgetBytes = blocksOnDisk ? 0 : ramBudgetBytes;
        _blocks = new List<Block>[layerCount, sequenceCapacity];
        _length = new int[layerCount, sequenceCapacity];
        _pages = new KvPage[layerCount, sequenceCapacity][];
        for (int l = 0; l < layerCount; l++)
            for (int s = 0; s < sequenceCapacity; s++) { _blocks[l, s] = new(); _pages[l, s] = []; }
        _blockBytes = KvPageLayout.Of(KvElementType.F32, blockSize, kvDim).TotalBytes;
        OwnsDiskPath = diskPathPrefix == null;
        diskPathPrefix ??= Path.Combine(Path.GetTempPath(), $"engine-kv-{Environment.ProcessId}-{Guid.NewGuid():N}");
        if (blocksOnDisk)
        {
            // [layer, seq, block] slots in one segment: the whole file exists (sparse) from the start.
            long slots = (long)layerCount * sequenceCapacity * ((capacity + blockSize - 1) / blockSize);
            if (slots > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(capacity), $"{slots} disk blocks exceed one file's slot range");
            _disk = new DiskKvTier(diskPathPrefix, _blockBytes, (int)slots);
            _disk.File.EnsureCapacity((int)slots);
        }
        else _disk = new DiskKvTier(diskPathPrefix, _blockBytes);
    }

    public int LayerCount { get; }
    public int KvDim { get; }
    public int Capacity { get; }
    public int SequenceCapacity { get; }
    public int BlockSize { get; }
    public long RamBudgetBytes { get; }

    /// <summary>Every block lives on disk from its first write (see the constructor).</summary>
    public bool BlocksOnDisk { get; }

    private bool OwnsDiskPath { get; }

    /// <summary>The disk tier's segment files (<c>{prefix}.{n}.bin</c>) that exist now.</summary>
    public IReadOnlyList<string> DiskFiles =>
        Enumerable.Range(0, int.MaxValue).Select(_disk.File.SegmentPath).TakeWhile(File.Exists).ToArray();

    /// <summary>Logical size of the disk tier's segment files (sparse: unwritten slots take no disk).</summary>
    public long DiskFileBytes => _disk.File.FileBytes;

    /// <summary>Bytes of blocks held in RAM now.</summary>
    public long RamBytes { get; private set; }
    /// <summary>Highest RamBytes seen after any Write.</summary>
    public long PeakRamBytes { get; private set; }
    /// <summary>Bytes of blocks held in the disk tier (used slots × slot size).</summary>
    public long DiskBytes => _disk.File.UsedBytes;
    public int RamBlocks => (int)(RamBytes / _blockBytes);
    public int DiskBlocks => _disk.File.UsedSlots;
    /// <summary>Blocks moved RAM → disk / disk → RAM so far.</summary>
    public long Offloads { get; private set; }
    public long Promotions { get; private set; }

    public void Write(int layer, int seqId, ReadOnlySpan<int> positions, ReadOnlySpan<float> k, ReadOnlySpan<float> v)
    {
        Check(layer, seqId);
        int n = positions.Length;
        if (k.Length < n * KvDim || v.Length < n * KvDim)
            throw new ArgumentException($"K/V spans hold {k.Length}/{v.Length} floats, need {n} × {KvDim}");
        int newLength = _length[layer, seqId];
        for (int i = 0; i < n; i++)
        {
            int p = positions[i];
            if (p < 0) throw new ArgumentOutOfRangeException(nameof(positions), $"negative KV position {p}");
            if (p >= Capacity) throw new KvCapacityException(p, Capacity);
            if (p > newLength) throw new ArgumentException($"KV position {p} leaves a gap after length {newLength} (layer {layer}, sequence {seqId})");
            newLength = Math.Max(newLength, p + 1);
        }
        var blocks = _blocks[layer, seqId];
        for (int i = 0; i < n; i++)
        {
            int p = positions[i], bi = p / BlockSize, j = p % BlockSize;
            while (blocks.Count <= bi) blocks.Add(NewBlock(bi));
            var b = blocks[bi];
            if (b.Ram == null && !BlocksOnDisk) Promote(b);
            byte* payload = b.Ram != null ? b.Ram : _disk.File.Pointer(b.Slot);
            k.Slice(i * KvDim, KvDim).CopyTo(new Span<float>((float*)payload + (long)j * KvDim, KvDim));
            v.Slice(i * KvDim, KvDim).CopyTo(new Span<float>((float*)(payload + VOffset) + (long)j * KvDim, KvDim));
            b.Count = Math.Max(b.Count, j + 1);
            b.LastUse = ++_tick;
        }
        _length[layer, seqId] = newLength;
        EnforceBudget();
        PeakRamBytes = Math.Max(PeakRamBytes, RamBytes);
    }

    public ReadOnlySpan<KvPage> Pages(int layer, int seqId)
    {
        Check(layer, seqId);
        var blocks = _blocks[layer, seqId];
        int len = _length[layer, seqId];
        int count = (len + BlockSize - 1) / BlockSize;
        if (_pages[layer, seqId].Length < count) _pages[layer, seqId] = new KvPage[Math.Max(count, 2 * _pages[layer, seqId].Length)];
        var pages = _pages[layer, seqId];
        long tick = ++_tick;
        for (int bi = 0; bi < count; bi++)
        {
            var b = blocks[bi];
            b.LastUse = tick;
            int tokens = Math.Min(BlockSize, len - bi * BlockSize);
            byte* payload = b.Ram != null ? b.Ram : _disk.File.Pointer(b.Slot);
            pages[bi] = new KvPage((nint)payload, (nint)(payload + VOffset), tokens, bi * BlockSize, KvDim);
        }
        return pages.AsSpan(0, count);
    }

    /// <summary>Where each block of the sequence lives now (true = disk), for tests and reports.</summary>
    public bool[] OnDisk(int layer, int seqId)
    {
        Check(layer, seqId);
        return _blocks[layer, seqId].Select(b => b.Ram == null).ToArray();
    }

    public int Length(int layer, int seqId) { Check(layer, seqId); return _length[layer, seqId]; }

    public void Truncate(int seqId, int length)
    {
        Check(0, seqId);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        for (int l = 0; l < LayerCount; l++)
        {
            if (_length[l, seqId] <= length) continue;
            var blocks = _blocks[l, seqId];
            int keep = (length + BlockSize - 1) / BlockSize;
            for (int bi = blocks.Count - 1; bi >= keep; bi--) { FreeBlock(blocks[bi]); blocks.RemoveAt(bi); }
            if (keep > 0) blocks[keep - 1].Count = Math.Min(blocks[keep - 1].Count, length - (keep - 1) * BlockSize);
            _length[l, seqId] = length;
        }
    }

    public void Clear(int seqId) => Truncate(seqId, 0);

    private long VOffset => KvPageLayout.Of(KvElementType.F32, BlockSize, KvDim).VOffset;

    private Block NewBlock(int index)
    {
        if (BlocksOnDisk) return new Block { Index = index, Slot = _disk.File.Allocate() };
        var b = new Block { Index = index, Ram = (byte*)NativeMemory.AlignedAlloc((nuint)_blockBytes, 64) };
        RamBytes += _blockBytes;
        return b;
    }

    private void Promote(Block b)
    {
        b.Ram = (byte*)NativeMemory.AlignedAlloc((nuint)_blockBytes, 64);
        Buffer.MemoryCopy(_disk.File.Pointer(b.Slot), b.Ram, _blockBytes, _blockBytes);
        _disk.File.Free(b.Slot);
        b.Slot = -1;
        RamBytes += _blockBytes;
        Promotions++;
    }

    private void Offload(Block b)
    {
        int slot = _disk.File.Allocate();
        Buffer.MemoryCopy(b.Ram, _disk.File.Pointer(slot), _blockBytes, _blockBytes);
        NativeMemory.AlignedFree(b.Ram);
        b.Ram = null; b.Slot = slot;
        RamBytes -= _blockBytes;
        Offloads++;
    }

    private void FreeBlock(Block b)
    {
        if (b.Ram != null) { NativeMemory.AlignedFree(b.Ram); b.Ram = null; RamBytes -= _blockBytes; }
        else { _disk.File.Free(b.Slot); b.Slot = -1; }
    }

    /// <summary>Moves least recently used full RAM blocks to disk until RamBytes ≤ budget (tail blocks stay).</summary>
    private void EnforceBudget()
    {
        while (RamBytes > RamBudgetBytes)
        {
            Block? victim = null;
            foreach (var list in _blocks)
                foreach (var b in list)
                    if (b.Ram != null && b.Count == BlockSize &&
                        (victim == null || b.LastUse < victim.LastUse || (b.LastUse == victim.LastUse && b.Index < victim.Index)))
                        victim = b;
            if (victim == null) return;
            Offload(victim);
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
        foreach (var list in _blocks)
            foreach (var b in list)
                if (b.Ram != null) { NativeMemory.AlignedFree(b.Ram); b.Ram = null; }
        _disk.Dispose();
        if (OwnsDiskPath)
            for (int n = 0; File.Exists(_disk.File.SegmentPath(n)); n++)
                try { File.Delete(_disk.File.SegmentPath(n)); } catch (IOException) { }
    }

    private sealed class Block
    {
        public int Index;
        public byte* Ram;          // [K: BlockSize × KvDim | V: BlockSize × KvDim] floats, or null when on disk
        public int Slot = -1;      // disk tier slot when Ram == null
        public int Count;          // rows written
        public long LastUse;
    }
}
