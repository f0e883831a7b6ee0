// Owns: the float32 row storage of a PolicyKvStore whose rows live in the shared paged pool (PolicyRowStorage.Slots):
// one layer of one request's block table, seen as a dense run of row slots [0, capacity) — slot s is row s % B of the
// table's block s / B (K and V regions, kvDim floats each). Only kept Full-tier tokens occupy slots; the store appends
// in position order, makes holes on eviction / demotion and squeezes them out (Compact), so after each Compact the
// layer uses Used = slots [0, Used) with ceil(Used / B) == ceil(Live / B): at most one partly used block. The owner of
// the table (the scheduler) keeps ceil(max over layers of Used / B) blocks for the request after the step and returns
// the rest to the pool (PagedKvExecutor reports SlotsUsed as StepResult.KeptSlots).
// Invariants: slot ids are dense (no block id in them); Rebind is called with the inner store's pages of the table
// before every access in a call (the table may have grown, shrunk or been rebound to another slot since the last
// step); the memory belongs to the pool — Dispose frees nothing.
using Engine.Kernels;

namespace Engine.Memory.Policies;

internal sealed unsafe class SlotRows : IRowStore
{
    private readonly int _rowBytes;          // kvDim · 4
    private nint[] _k = [], _v = [];         // [table block] start of that block's K (V) rows in this layer
    private int[] _pos = [];                 // [slot] position held, −1 = hole
    private int _capacity;                   // slots of the bound table (blocks · B)

    public SlotRows(int blockTokens, int kvDim)
    {
        if (blockTokens <= 0) throw new ArgumentOutOfRangeException(nameof(blockTokens), $"block size {blockTokens} must be positive");
        B = blockTokens;
        _rowBytes = kvDim * sizeof(float);
    }

    public int B { get; }
    public int Live { get; private set; }

    /// <summary>Slots in use, holes included ([0, Used)); after Compact at most one block's worth above Live.</summary>
    public int Used { get; private set; }

    /// <summary>This layer's share of the table blocks in use: ceil(Used / B) blocks of B K + V rows.</summary>
    public long AllocatedBytes => (long)((Used + B - 1) / B) * B * 2 * _rowBytes;

    /// <summary>Points the slots at the table the inner store presents for this layer: its pages cover slots
    /// [0, blocks · B) in block order (a page starts at a block boundary and spans whole blocks but maybe the last).</summary>
    public void Rebind(ReadOnlySpan<KvPage> pages)
    {
        int blocks = 0;
        foreach (var pg in pages)
        {
            if (pg.Type != KvElementType.F32) throw new NotSupportedException("pool row slots need a float32 paged store");
            if (pg.StartPosition != blocks * B) throw new InvalidOperationException($"pool pages are not contiguous slots: a page starts at {pg.StartPosition}, expected {blocks * B}");
            int n = (pg.TokenCount + B - 1) / B;
            if (_k.Length < blocks + n) { Array.Resize(ref _k, Math.Max(blocks + n, 2 * _k.Length)); Array.Resize(ref _v, _k.Length); }
            long stride = (long)pg.RowStride * sizeof(float) * B;
            for (int j = 0; j < n; j++) { _k[blocks + j] = pg.K + (nint)(j * stride); _v[blocks + j] = pg.V + (nint)(j * stride); }
            blocks += n;
        }
        _capacity = blocks * B;
        if (Used > _capacity)
            throw new InvalidOperationException($"the request's block table holds {_capacity} row slots but this layer uses {Used}");
    }

    public int Append(int position)
    {
        if (Used == _capacity)
            throw new InvalidOperationException($"KV policy rows overflow the request's block table ({_capacity} slots): the scheduler reserved too few");
        if (_pos.Length == Used) Array.Resize(ref _pos, Math.Max(64, 2 * _pos.Length));
        _pos[Used] = position;
        Live++;
        return Used++;
    }

    public byte* Row(int slotId, int region)
    {
        if ((uint)slotId >= (uint)Used) throw new InvalidOperationException($"slot {slotId} is not in use (used {Used})");
        return (byte*)(region == 0 ? _k[slotId / B] : _v[slotId / B]) + (long)(slotId % B) * _rowBytes;
    }

    public void Remove(int slotId)
    {
        if ((uint)slotId >= (uint)Used || _pos[slotId] < 0) throw new InvalidOperationException($"slot {slotId} is already free");
        _pos[slotId] = -1;
        Live--;
    }

    /// <summary>Drops trailing holes; then, when the slots in use span more blocks than the live rows need, moves every
    /// row after the first hole towards the front (slot order kept; each moved row's new slot goes to
    /// <paramref name="slotOf"/>[position]).</summary>
    public void Compact(int[] slotOf)
    {
        while (Used > 0 && _pos[Used - 1] < 0) Used--;
        if ((Used + B - 1) / B <= (Live + B - 1) / B) return;
        int d = Array.IndexOf(_pos, -1, 0, Used);
        for (int s = d + 1; s < Used; s++)
        {
            int p = _pos[s];
            if (p < 0) continue;
            Buffer.MemoryCopy(Row(s, 0), Row(d, 0), _rowBytes, _rowBytes);
            Buffer.MemoryCopy(Row(s, 1), Row(d, 1), _rowBytes, _rowBytes);
            _pos[d] = p;
            slotOf[p] = d++;
        }
        Used = d;
    }

    /// <summary>Nothing to free: the blocks belong to the pool (the scheduler frees the table).</summary>
    public void Dispose() { Used = Live = 0; }
}
