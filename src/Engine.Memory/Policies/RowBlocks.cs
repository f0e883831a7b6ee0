// Owns: the row storage of PolicyKvStore — fixed-size blocks of B token slots holding one tier's payload (float32 K/V
// rows; or int8 K/V rows + per-group scales), allocated from native memory on demand and freed as soon as the last token
// in them leaves. A block is laid out region by region: [B, regionBytes[0]] then [B, regionBytes[1]] … (e.g. K rows,
// V rows, K scales, V scales), so a run of consecutive slots of one block is a KvPage (row stride = the row width).
// Invariants: a slot id is blockId · B + slot and names one token's row until Compact moves it (Compact rewrites the
// position → slot map for every row it moves). Rows are appended at the end of the last block of the block order, and
// Compact squeezes holes out while keeping the slot order (a row only moves towards the front), so rows appended in
// position order stay in position order. Every block but the last is full before Compact runs (appends go to the last
// block only); after Compact the store holds ceil(Live / B) blocks: allocated rows ≤ Live + B − 1.
// AllocatedBytes counts exactly the blocks held (not a formula over tokens).
using System.Runtime.InteropServices;

namespace Engine.Memory.Policies;

/// <summary>Where a <see cref="PolicyKvStore"/> keeps one tier's rows of one (layer, sequence): slots that name one token's
/// row each, appended in position order, made holes by Remove and squeezed by Compact (slot order kept).</summary>
internal unsafe interface IRowStore : IDisposable
{
    /// <summary>Slots per block (the allocation and free unit).</summary>
    int B { get; }
    /// <summary>Tokens stored (non-hole slots).</summary>
    int Live { get; }
    /// <summary>Bytes of the blocks held now.</summary>
    long AllocatedBytes { get; }
    int Append(int position);
    byte* Row(int slotId, int region);
    void Remove(int slotId);
    void Compact(int[] slotOf);
}

internal sealed unsafe class RowBlocks : IRowStore
{
    private sealed class Block
    {
        public byte* Mem;           // [regions][B, regionBytes[r]]
        public int[] Pos = [];      // [B] position held by each slot, −1 = hole
        public int Used;            // slots [0, Used) were appended (some may be holes)
        public int Live;            // non-hole slots
        public int Id;
    }

    private readonly int[] _regionBytes;    // bytes per slot of each region
    private readonly long[] _regionOffset;  // byte offset of each region inside a block
    private readonly long _blockBytes;
    private readonly List<Block> _order = [];           // slot order
    private readonly List<Block?> _byId = [];           // [block id] → block (null = free id)
    private readonly Stack<int> _freeIds = new();

    public RowBlocks(int blockTokens, params int[] regionBytes)
    {
        if (blockTokens <= 0) throw new ArgumentOutOfRangeException(nameof(blockTokens), $"block size {blockTokens} must be positive");
        B = blockTokens;
        _regionBytes = regionBytes;
        _regionOffset = new long[regionBytes.Length];
        long off = 0;
        for (int r = 0; r < regionBytes.Length; r++) { _regionOffset[r] = off; off += (long)B * regionBytes[r]; }
        _blockBytes = off;
    }

    /// <summary>Slots per block.</summary>
    public int B { get; }

    /// <summary>Tokens stored (non-hole slots).</summary>
    public int Live { get; private set; }

    public int BlockCount => _order.Count;

    /// <summary>Bytes of the blocks held now.</summary>
    public long AllocatedBytes => _order.Count * _blockBytes;

    /// <summary>Appends a slot for <paramref name="position"/> (allocating a block when the last one is full); returns its slot id.</summary>
    public int Append(int position)
    {
        var tail = _order.Count > 0 ? _order[^1] : null;
        if (tail == null || tail.Used == B)
        {
            int id = _freeIds.Count > 0 ? _freeIds.Pop() : _byId.Count;
            tail = new Block { Mem = (byte*)NativeMemory.AlignedAlloc((nuint)_blockBytes, 64), Pos = new int[B], Id = id };
            Array.Fill(tail.Pos, -1);
            if (id == _byId.Count) _byId.Add(tail); else _byId[id] = tail;
            _order.Add(tail);
        }
        int slot = tail.Used++;
        tail.Pos[slot] = position;
        tail.Live++; Live++;
        return tail.Id * B + slot;
    }

    /// <summary>Start of slot <paramref name="slotId"/>'s row in region <paramref name="region"/>.</summary>
    public byte* Row(int slotId, int region)
    {
        var b = _byId[slotId / B] ?? throw new InvalidOperationException($"slot {slotId} is in a freed block");
        return b.Mem + _regionOffset[region] + (long)(slotId % B) * _regionBytes[region];
    }

    /// <summary>Makes a slot a hole (its block is freed by the next Compact once empty).</summary>
    public void Remove(int slotId)
    {
        var b = _byId[slotId / B] ?? throw new InvalidOperationException($"slot {slotId} is in a freed block");
        int s = slotId % B;
        if (b.Pos[s] < 0) throw new InvalidOperationException($"slot {slotId} is already free");
        b.Pos[s] = -1; b.Live--; Live--;
    }

    /// <summary>
    /// Frees empty blocks; then, when the blocks held exceed ceil(Live / B), squeezes the holes out from the first block
    /// that has one (rows keep their slot order) and frees the blocks left empty. Every moved row's new slot id is written
    /// to <paramref name="slotOf"/>[position].
    /// </summary>
    public void Compact(int[] slotOf)
    {
        int kept = 0;                                        // drop empty blocks in one pass (order kept)
        for (int i = 0; i < _order.Count; i++)
        {
            if (_order[i].Live == 0) Free(_order[i]);
            else _order[kept++] = _order[i];
        }
        _order.RemoveRange(kept, _order.Count - kept);
        int need = (Live + B - 1) / B;
        if (_order.Count <= need) return;
        int f = 0;
        while (f < _order.Count && _order[f].Live == B) f++;
        int d = f, ds = 0;                                   // destination block (index in _order) and slot
        for (int bi = f; bi < _order.Count; bi++)
        {
            var src = _order[bi];
            for (int s = 0; s < src.Used; s++)
            {
                int p = src.Pos[s];
                if (p < 0) continue;
                var dst = _order[d];
                if (dst != src || ds != s)
                {
                    for (int r = 0; r < _regionBytes.Length; r++)
                    {
                        int w = _regionBytes[r];
                        Buffer.MemoryCopy(src.Mem + _regionOffset[r] + (long)s * w, dst.Mem + _regionOffset[r] + (long)ds * w, w, w);
                    }
                    dst.Pos[ds] = p;
                    slotOf[p] = dst.Id * B + ds;
                }
                if (++ds == B) { dst.Used = dst.Live = B; d++; ds = 0; }
            }
        }
        if (ds > 0)
        {
            var last = _order[d];
            last.Used = last.Live = ds;
            Array.Fill(last.Pos, -1, ds, B - ds);
            d++;
        }
        for (int i = d; i < _order.Count; i++) Free(_order[i]);
        _order.RemoveRange(d, _order.Count - d);
    }

    private void Free(Block b)
    {
        NativeMemory.AlignedFree(b.Mem);
        b.Mem = null;                                        // (its live rows, if any, were moved: Live is unchanged)
        _byId[b.Id] = null;
        _freeIds.Push(b.Id);
    }

    public void Dispose()
    {
        foreach (var b in _order) if (b.Mem != null) NativeMemory.AlignedFree(b.Mem);
        _order.Clear(); _byId.Clear(); _freeIds.Clear();
        Live = 0;
    }
}
