// Owns: the paged KV storage — per layer, K and V each laid out by block as [blockCount, blockSize, kvDim] float32 in
// one native 64-byte-aligned buffer — and the per-sequence bindings (block table + per-layer lengths) through which an
// IKvStore caller writes and reads a sequence. Pages(layer, seq) returns the block table as KvPages, one page per run
// of physically consecutive blocks, so the existing IBackend.Attention reads K/V through the table unchanged.
// Two ways to own blocks:
//   external (the scheduler-driven runtime): Bind(seq, blockTable, length) before each step; writes must stay inside
//   the bound table (position p → block table[p / BlockSize], slot p % BlockSize); CopyBlock applies copy-on-write.
//   self-managed (a drop-in IKvStore, e.g. tests): a write past the sequence's blocks takes blocks from the store's
//   own free list; Truncate/Clear give them back. A store is one or the other (constructor flag).
// Invariants: block ids are 0..BlockCount-1; Length(layer, seq) ≤ table length · BlockSize; positions are written
// without gaps (as ContiguousKvStore). Memory is reserved once (untouched pages are not committed by the OS).
// Element type: F32 only today (exact results); ElementType (the kernels' KvElementType, which KvPage carries) is the
// hook for per-block F16/Int8/Int4 tiers (BlockMeta.Tier).
// Source: vLLM PagedAttention (Kwon et al. 2023) block layout, reduced to the page list our attention kernel takes.
using System.Runtime.InteropServices;
using Engine.Kernels;

namespace Engine.Memory.Paged;

/// <summary>Float32 paged KV cache: fixed-size blocks shared by many sequences through block tables.</summary>
public sealed unsafe class PagedKvStore : IKvStore
{
    private readonly float*[] _k;                 // [layer] -> [BlockCount, BlockSize, KvDim]
    private readonly float*[] _v;                 // [layer] -> [BlockCount, BlockSize, KvDim]
    private readonly List<int>[] _tables;         // [seq] block ids in position order
    private readonly int[,] _length;              // [layer, seq]
    private readonly KvPage[][] _pages;           // [seq] reusable page list (grown)
    private readonly Stack<int>? _free;           // self-managed mode only
    private bool _disposed;

    /// <param name="layerCount">Transformer layers.</param>
    /// <param name="kvDim">Floats per K (and V) row: kvHeadCount · headDim.</param>
    /// <param name="blockSize">Token slots per block.</param>
    /// <param name="blockCount">Blocks in the store (the budget; see <see cref="BlockCountForBudget"/>).</param>
    /// <param name="capacity">Most positions one sequence may hold (the context length).</param>
    /// <param name="sequenceCapacity">Sequence ids 0..sequenceCapacity-1.</param>
    /// <param name="selfManaged">True: writes allocate blocks from the store's own free list. False: blocks come from
    /// <see cref="Bind"/> (an external BlockManager owns them).</param>
    public PagedKvStore(int layerCount, int kvDim, int blockSize, int blockCount, int capacity, int sequenceCapacity = 1,
        bool selfManaged = true, KvElementType elementType = KvElementType.F32)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(layerCount, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(kvDim, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockCount, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(sequenceCapacity, 1);
        if (elementType != KvElementType.F32) throw new NotSupportedException($"paged KV element type {elementType} is not supported yet (F32 only)");
        LayerCount = layerCount; KvDim = kvDim; BlockSize = blockSize; BlockCount = blockCount;
        Capacity = capacity; SequenceCapacity = sequenceCapacity; ElementType = elementType; SelfManaged = selfManaged;
        _k = new float*[layerCount];
        _v = new float*[layerCount];
        nuint bytes = (nuint)((long)blockCount * blockSize * kvDim * sizeof(float));
        for (int l = 0; l < layerCount; l++)
        {
            _k[l] = (float*)NativeMemory.AlignedAlloc(bytes, 64);
            _v[l] = (float*)NativeMemory.AlignedAlloc(bytes, 64);
        }
        _tables = new List<int>[sequenceCapacity];
        _pages = new KvPage[sequenceCapacity][];
        for (int s = 0; s < sequenceCapacity; s++) { _tables[s] = new List<int>(); _pages[s] = new KvPage[4]; }
        _length = new int[layerCount, sequenceCapacity];
        if (selfManaged)
        {
            _free = new Stack<int>(blockCount);
            for (int b = blockCount - 1; b >= 0; b--) _free.Push(b);
        }
    }

    public int LayerCount { get; }
    public int KvDim { get; }
    public int BlockSize { get; }
    public int BlockCount { get; }
    public int Capacity { get; }
    public int SequenceCapacity { get; }
    public bool SelfManaged { get; }

    /// <summary>Element type of the K/V payload (F32 today; the hook for precision tiers).</summary>
    public KvElementType ElementType { get; }

    /// <summary>Bytes of one block's K and V over all layers.</summary>
    public long BytesPerBlock => 2L * LayerCount * BlockSize * KvDim * sizeof(float);

    /// <summary>Bytes reserved for all blocks.</summary>
    public long TotalBytes => BytesPerBlock * BlockCount;

    /// <summary>Blocks on the self-managed free list (0 for an externally managed store).</summary>
    public int FreeBlockCount => _free?.Count ?? 0;

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
        if (SelfManaged) throw new InvalidOperationException("Bind is for externally managed stores; this store allocates its own blocks");
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
        if (SelfManaged) throw new InvalidOperationException("Unbind is for externally managed stores; use Clear");
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
        long block = (long)BlockSize * KvDim, n = (long)tokenCount * KvDim;
        for (int l = 0; l < LayerCount; l++)
        {
            Buffer.MemoryCopy(_k[l] + source * block, _k[l] + destination * block, n * sizeof(float), n * sizeof(float));
            Buffer.MemoryCopy(_v[l] + source * block, _v[l] + destination * block, n * sizeof(float), n * sizeof(float));
        }
    }

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
        {
            if (_free == null)
                throw new InvalidOperationException($"KV position {maxPos} of sequence {seqId} is outside its bound block table ({table.Count} blocks of {BlockSize})");
            if (blocksNeeded - table.Count > _free.Count)
                throw new KvCapacityException(maxPos, table.Count * BlockSize + _free.Count * BlockSize);
            while (table.Count < blocksNeeded) table.Add(_free.Pop());
        }
        float* kb = _k[layer], vb = _v[layer];
        for (int i = 0; i < n; i++)
        {
            long row = RowOf(table, positions[i]);
            k.Slice(i * KvDim, KvDim).CopyTo(new Span<float>(kb + row * KvDim, KvDim));
            v.Slice(i * KvDim, KvDim).CopyTo(new Span<float>(vb + row * KvDim, KvDim));
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
        float* kb = _k[layer], vb = _v[layer];
        int count = 0;
        for (int i = 0; i < blocks;)
        {
            // A run of physically consecutive blocks is one contiguous page.
            int j = i + 1;
            while (j < blocks && table[j] == table[j - 1] + 1) j++;
            int start = i * BlockSize, tokens = Math.Min(length, j * BlockSize) - start;
            long row = (long)table[i] * BlockSize * KvDim;
            pages[count++] = new KvPage((nint)(kb + row), (nint)(vb + row), tokens, start, KvDim);
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
        if (_free == null) return;
        // Self-managed: give back blocks no layer uses any more.
        int longest = 0;
        for (int l = 0; l < LayerCount; l++) longest = Math.Max(longest, _length[l, seqId]);
        var table = _tables[seqId];
        int keep = (longest + BlockSize - 1) / BlockSize;
        while (table.Count > keep) { _free.Push(table[^1]); table.RemoveAt(table.Count - 1); }
    }

    public void Clear(int seqId)
    {
        if (SelfManaged) Truncate(seqId, 0);
        else Unbind(seqId);
    }

    private long RowOf(List<int> table, int position) => (long)table[position / BlockSize] * BlockSize + position % BlockSize;

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
            NativeMemory.AlignedFree(_k[l]);
            NativeMemory.AlignedFree(_v[l]);
            _k[l] = null; _v[l] = null;
        }
    }
}
