// Owns: the paged KV storage — per layer, K and V each laid out by block as [RamBlockCount, blockSize, kvDim] float32 in
// one native 64-byte-aligned buffer, plus an optional disk tier of DiskBlockCount blocks in one memory-mapped file laid
// out [layer, K|V, DiskBlockCount, blockSize, kvDim] (block id RamBlockCount + i is disk block i) — and the per-sequence
// bindings (block table + per-layer lengths) through which an
// IKvStore caller writes and reads a sequence. Pages(layer, seq) returns the block table as KvPages, one page per run
// of physically consecutive blocks, so the existing IBackend.Attention reads K/V through the table unchanged — disk
// blocks included: their pages point into the mapping and are read in place (the OS pages them in on demand).
// The store owns no block ids: the pool (BlockPool, through the scheduler's BlockManager) does. Bind(seq, blockTable,
// length) before each step; writes must stay inside the bound table (position p → block table[p / BlockSize], slot
// p % BlockSize); CopyBlock applies copy-on-write, MoveBlock a scheduler's offload of a whole block from a RAM id to a
// disk id. (A KV policy that packs rows binds its whole table and uses it as row slots: PolicyRowStorage.Slots.)
// Invariants: block ids are 0..BlockCount-1 (BlockCount = RamBlockCount + DiskBlockCount); a page (run of consecutive
// ids) never crosses the RAM/disk boundary; Length(layer, seq) ≤ table length · BlockSize; positions are written
// without gaps (as ContiguousKvStore). Memory is reserved once (untouched pages are not committed by the OS); the disk
// file is sparse and deleted on Dispose.
// Element type: F32 only today (exact results); ElementType (the kernels' KvElementType, which KvPage carries) is the
// hook for per-block F16/Int8/Int4 tiers (BlockMeta.Tier).
// Source: vLLM PagedAttention (Kwon et al. 2023) block layout, reduced to the page list our attention kernel takes.
using System.Runtime.InteropServices;
using Engine.Kernels;
using Engine.Tensors;
using Engine.Memory.Disk;

namespace Engine.Memory.Paged;

/// <summary>Float32 paged KV cache: fixed-size blocks shared by many sequences through block tables.</summary>
public sealed unsafe class PagedKvStore : IKvStore
{
    private readonly float*[] _k;                 // [layer] -> [RamBlockCount, BlockSize, KvDim]
    private readonly float*[] _v;                 // [layer] -> [RamBlockCount, BlockSize, KvDim]
    private readonly float*[] _diskK, _diskV;     // [layer] -> [DiskBlockCount, BlockSize, KvDim] inside _disk
    private readonly MappedRegion? _disk;         // [layer, K|V, DiskBlockCount, BlockSize, KvDim] float32
    private readonly List<int>[] _tables;         // [seq] block ids in position order
    private readonly int[,] _length;              // [layer, seq]
    private readonly KvPage[][] _pages;           // [seq] reusable page list (grown)
    private bool _disposed;

    /// <param name="layerCount">Transformer layers.</param>
    /// <param name="kvDim">Floats per K (and V) row: kvHeadCount · headDim.</param>
    /// <param name="blockSize">Token slots per block.</param>
    /// <param name="blockCount">RAM blocks in the store (the budget; see <see cref="BlockCountForBudget"/>).</param>
    /// <param name="capacity">Most positions one sequence may hold (the context length).</param>
    /// <param name="sequenceCapacity">Sequence ids 0..sequenceCapacity-1.</param>
    /// <param name="diskBlockCount">Blocks of the disk tier (ids blockCount..blockCount+diskBlockCount-1), in one
    /// memory-mapped file; 0 = none.</param>
    /// <param name="diskPath">The disk tier's file (created, and deleted on Dispose); null = a temporary file.</param>
    public PagedKvStore(int layerCount, int kvDim, int blockSize, int blockCount, int capacity, int sequenceCapacity = 1,
        KvElementType elementType = KvElementType.F32, int diskBlockCount = 0, string? diskPath = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(layerCount, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(kvDim, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockCount, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(sequenceCapacity, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(diskBlockCount);
        if (elementType != KvElementType.F32) throw new NotSupportedException($"paged KV element type {elementType} is not supported yet (F32 only)");
        LayerCount = layerCount; KvDim = kvDim; BlockSize = blockSize; RamBlockCount = blockCount; DiskBlockCount = diskBlockCount;
        BlockCount = checked(blockCount + diskBlockCount);
        Capacity = capacity; SequenceCapacity = sequenceCapacity; ElementType = elementType;
        _k = new float*[layerCount];
        _v = new float*[layerCount];
        nuint bytes = (nuint)((long)blockCount * blockSize * kvDim * sizeof(float));
        _diskK = new float*[layerCount];
        _diskV = new float*[layerCount];
        if (diskBlockCount > 0)   // first: a failure to create the file leaves nothing allocated
        {
            long tier = (long)diskBlockCount * blockSize * kvDim; // floats of one layer's K (or V) on disk
            _disk = new MappedRegion(diskPath, 2L * layerCount * tier * sizeof(float), create: true, deleteOnDispose: true);
            float* d = (float*)_disk.Base;
            for (int l = 0; l < layerCount; l++) { _diskK[l] = d + (2L * l) * tier; _diskV[l] = d + (2L * l + 1) * tier; }
        }
        for (int l = 0; l < layerCount; l++)
        {
            _k[l] = (float*)HugePageMemory.Allocate(bytes);
            _v[l] = (float*)HugePageMemory.Allocate(bytes);
        }
        _tables = new List<int>[sequenceCapacity];
        _pages = new KvPage[sequenceCapacity][];
        for (int s = 0; s < sequenceCapacity; s++) { _tables[s] = new List<int>(); _pages[s] = new KvPage[4]; }
        _length = new int[layerCount, sequenceCapacity];
    }

    public int LayerCount { get; }
    public int KvDim { get; }
    public int BlockSize { get; }

    /// <summary>All block ids: RamBlockCount + DiskBlockCount.</summary>
    public int BlockCount { get; }

    /// <summary>Blocks in RAM: ids 0..RamBlockCount-1.</summary>
    public int RamBlockCount { get; }

    /// <summary>Blocks in the memory-mapped disk tier: ids RamBlockCount..BlockCount-1.</summary>
    public int DiskBlockCount { get; }

    /// <summary>The disk tier's file (null without one); deleted on Dispose.</summary>
    public string? DiskFilePath => _disk?.Path;

    /// <summary>Blocks moved between tiers by <see cref="MoveBlock"/> so far.</summary>
    public long BlocksMoved { get; private set; }
    public int Capacity { get; }
    public int SequenceCapacity { get; }

    /// <summary>Element type of the K/V payload (F32 today; the hook for precision tiers).</summary>
    public KvElementType ElementType { get; }

    /// <summary>Bytes of one block's K and V over all layers.</summary>
    public long BytesPerBlock => 2L * LayerCount * BlockSize * KvDim * sizeof(float);

    /// <summary>Bytes reserved in RAM for the RAM blocks.</summary>
    public long TotalBytes => BytesPerBlock * RamBlockCount;

    /// <summary>Logical size of the disk tier's file (sparse: blocks never written take no disk).</summary>
    public long DiskBytes => BytesPerBlock * DiskBlockCount;

    /// <summary>True for a block id of the disk tier.</summary>
    public bool IsOnDisk(int block) => block >= RamBlockCount;


    /// <summary>How many blocks of <paramref name="blockSize"/> tokens a byte budget buys (F32 K + V, all layers).</summary>
    public static int BlockCountForBudget(long budgetBytes, int layerCount, int kvDim, int blockSize) =>
        BlockPool.BlockCountForBudget(budgetBytes, 2L * layerCount * blockSize * kvDim * sizeof(float));

    /// <summary>The block ids of <paramref name="seqId"/> in position order.</summary>
    public IReadOnlyList<int> BlockTable(int seqId) { Check(0, seqId); return _tables[seqId]; }

    /// <summary>
    /// Binds <paramref name="seqId"/> to <paramref name="blocks"/> (externally owned) with its first
    /// <paramref name="length"/> positions already computed (every layer). Replaces any previous binding.
    /// </summary>
    public void Bind(int seqId, ReadOnlySpan<int> blocks, int length)
    {
        Check(0, seqId);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if ((long)length > (long)blocks.Length * BlockSize)
            throw new ArgumentException($"length {length} does not fit {blocks.Length} blocks of {BlockSize} tokens");
        var table = _tables[seqId];
        table.Clear();
        foreach (int b in blocks)
        {
            if ((uint)b >= (uint)BlockCount) throw new ArgumentOutOfRangeException(nameof(blocks), b, $"block id outside 0..{BlockCount - 1}");
            table.Add(b);
        }
        for (int l = 0; l < LayerCount; l++) _length[l, seqId] = length;
    }

    /// <summary>Forgets the binding of <paramref name="seqId"/> (no blocks are freed: the external owner holds them).</summary>
    public void Unbind(int seqId)
    {
        Check(0, seqId);
        _tables[seqId].Clear();
        for (int l = 0; l < LayerCount; l++) _length[l, seqId] = 0;
    }

    /// <summary>Copies the first <paramref name="tokenCount"/> slots of block <paramref name="source"/> into
    /// <paramref name="destination"/>, K and V, every layer (copy-on-write of a shared partial block).</summary>
    public void CopyBlock(int source, int destination, int tokenCount)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if ((uint)source >= (uint)BlockCount || (uint)destination >= (uint)BlockCount)
            throw new ArgumentOutOfRangeException(nameof(source), $"block ids {source} → {destination} outside 0..{BlockCount - 1}");
        if ((uint)tokenCount > (uint)BlockSize) throw new ArgumentOutOfRangeException(nameof(tokenCount), tokenCount, $"a block holds {BlockSize} tokens");
        Copy(source, destination, (long)tokenCount * KvDim);
    }

    /// <summary>Moves the whole payload (every slot, K and V, every layer) of block <paramref name="source"/> to
    /// <paramref name="destination"/> — a scheduler's offload from a RAM id to a disk id (or back). The source's content
    /// is undefined afterwards (its id is free for reuse).</summary>
    public void MoveBlock(int source, int destination)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if ((uint)source >= (uint)BlockCount || (uint)destination >= (uint)BlockCount)
            throw new ArgumentOutOfRangeException(nameof(source), $"block ids {source} → {destination} outside 0..{BlockCount - 1}");
        if (source == destination) throw new ArgumentException($"block {source} cannot move onto itself");
        Copy(source, destination, (long)BlockSize * KvDim);
        BlocksMoved++;
    }

    private void Copy(int source, int destination, long floats)
    {
        long bytes = floats * sizeof(float);
        for (int l = 0; l < LayerCount; l++)
        {
            Buffer.MemoryCopy(KBlock(l, source), KBlock(l, destination), bytes, bytes);
            Buffer.MemoryCopy(VBlock(l, source), VBlock(l, destination), bytes, bytes);
        }
    }

    /// <summary>Start of block <paramref name="block"/>'s K rows in layer <paramref name="layer"/> ([BlockSize, KvDim]).</summary>
    private float* KBlock(int layer, int block) => block < RamBlockCount
        ? _k[layer] + (long)block * BlockSize * KvDim
        : _diskK[layer] + (long)(block - RamBlockCount) * BlockSize * KvDim;

    private float* VBlock(int layer, int block) => block < RamBlockCount
        ? _v[layer] + (long)block * BlockSize * KvDim
        : _diskV[layer] + (long)(block - RamBlockCount) * BlockSize * KvDim;

    public void Write(int layer, int seqId, ReadOnlySpan<int> positions, ReadOnlySpan<float> k, ReadOnlySpan<float> v)
    {
        Check(layer, seqId);
        int n = positions.Length;
        if (k.Length < n * KvDim || v.Length < n * KvDim)
            throw new ArgumentException($"K/V spans hold {k.Length}/{v.Length} floats, need {n} × {KvDim}");
        var table = _tables[seqId];
        int newLength = _length[layer, seqId], maxPos = -1;
        for (int i = 0; i < n; i++)
        {
            int p = positions[i];
            if (p < 0) throw new ArgumentOutOfRangeException(nameof(positions), $"negative KV position {p}");
            if (p >= Capacity) throw new KvCapacityException(p, Capacity);
            if (p > newLength) throw new ArgumentException($"KV position {p} leaves a gap after length {newLength} (layer {layer}, sequence {seqId})");
            newLength = Math.Max(newLength, p + 1);
            maxPos = Math.Max(maxPos, p);
        }
        int blocksNeeded = (maxPos + 1 + BlockSize - 1) / BlockSize;
        if (blocksNeeded > table.Count)
            throw new InvalidOperationException($"KV position {maxPos} of sequence {seqId} is outside its bound block table ({table.Count} blocks of {BlockSize})");
        for (int i = 0; i < n; i++)
        {
            int p = positions[i], block = table[p / BlockSize];
            long slot = (long)(p % BlockSize) * KvDim;
            k.Slice(i * KvDim, KvDim).CopyTo(new Span<float>(KBlock(layer, block) + slot, KvDim));
            v.Slice(i * KvDim, KvDim).CopyTo(new Span<float>(VBlock(layer, block) + slot, KvDim));
        }
        _length[layer, seqId] = newLength;
    }

    public ReadOnlySpan<KvPage> Pages(int layer, int seqId)
    {
        Check(layer, seqId);
        int length = _length[layer, seqId];
        if (length == 0) return ReadOnlySpan<KvPage>.Empty;
        var table = _tables[seqId];
        int blocks = (length + BlockSize - 1) / BlockSize;
        var pages = _pages[seqId];
        if (pages.Length < blocks) _pages[seqId] = pages = new KvPage[Math.Max(blocks, 2 * pages.Length)];
        int count = 0;
        for (int i = 0; i < blocks;)
        {
            // A run of physically consecutive blocks is one contiguous page (RAM and disk ids live in different
            // buffers: a run never crosses the boundary).
            int j = i + 1;
            while (j < blocks && table[j] == table[j - 1] + 1 && table[j] != RamBlockCount) j++;
            int start = i * BlockSize, tokens = Math.Min(length, j * BlockSize) - start;
            pages[count++] = new KvPage((nint)KBlock(layer, table[i]), (nint)VBlock(layer, table[i]), tokens, start, KvDim);
            i = j;
        }
        return pages.AsSpan(0, count);
    }

    public int Length(int layer, int seqId) { Check(layer, seqId); return _length[layer, seqId]; }

    public void Truncate(int seqId, int length)
    {
        Check(0, seqId);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        for (int l = 0; l < LayerCount; l++)
            if (_length[l, seqId] > length) _length[l, seqId] = length;
    }

    /// <summary>Same as <see cref="Unbind"/> (the blocks stay with their owner).</summary>
    public void Clear(int seqId) => Unbind(seqId);

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
        for (int l = 0; l < LayerCount; l++)
        {
            HugePageMemory.Free(_k[l]);
            HugePageMemory.Free(_v[l]);
            _k[l] = null; _v[l] = null; _diskK[l] = null; _diskV[l] = null;
        }
        _disk?.Dispose();
    }
}
