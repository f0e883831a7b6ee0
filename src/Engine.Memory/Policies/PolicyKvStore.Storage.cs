// Owns: the row storage half of PolicyKvStore (see PolicyKvStore.cs): what holds each position (own float32 row blocks,
// the inner store, int8 row blocks, KIVI Int4 group chunks), moving a position between holders as the retention plan
// changes its tier (Settle), reading rows back, and the page views of each holder; plus the per-(layer, sequence) State.
// Invariants: as in PolicyKvStore.cs — Stored[p] says what holds p now; after Settle, storage matches the planned tiers.
using System.Runtime.InteropServices;
using Engine.Kernels;

namespace Engine.Memory.Policies;

public sealed unsafe partial class PolicyKvStore
{
    /// <summary>Makes position p Full with the given rows: overwrites its Full row in place, or frees what held it before
    /// (an Int8 row; an Int4 group is unpacked to Full rows first) and appends a new row.</summary>
    private void StoreFull(State st, int p, ReadOnlySpan<float> k, ReadOnlySpan<float> v)
    {
        var held = p < st.Length ? st.Stored[p] : Held.None;
        if (held == Held.Int4) { UnpackInt4(st, p / G); held = st.Stored[p]; }
        if (LowBitTier && st.LowG > 0 && p < st.Length && st.Low[p / st.LowG] != 0) { UnpackLow(st, p / st.LowG); held = st.Stored[p]; }
        if (held == Held.Int8) { st.Int8Rows!.Remove(st.Slot[p]); held = Held.None; }
        if (_own)
        {
            if (held != Held.Full) st.Slot[p] = (st.Rows ??= new RowBlocks(FullRowBlockTokens, KvDim * FullElementBytes, KvDim * FullElementBytes)).Append(p);   // (Slots: set by Rebind)
            if (OwnHalfRows) { ToHalf(k, st.Rows!.Row(st.Slot[p], 0)); ToHalf(v, st.Rows.Row(st.Slot[p], 1)); }
            else
            {
                k.CopyTo(new Span<float>(st.Rows!.Row(st.Slot[p], 0), KvDim));
                v.CopyTo(new Span<float>(st.Rows.Row(st.Slot[p], 1), KvDim));
            }
        }
        st.Stored[p] = Held.Full;
    }

    /// <summary>A write into a quantized group: its Int4 tokens become Full again (rows decoded from the group, or the inner
    /// store's rows) and the group's chunk is freed; the group is not quantized again.</summary>
    private void UnpackInt4(State st, int g)
    {
        var chunk = Int4Page(st, g, G);
        int end = Math.Min((g + 1) * G, st.Length);
        var rk = new float[KvDim]; var rv = new float[KvDim];
        for (int q = g * G; q < end && st.Stored[q] == Held.Int4; q++)
        {
            fixed (float* pk = rk, pv = rv)
            {
                KvDecode.Row(chunk, true, q - g * G, pk, KvDim);
                KvDecode.Row(chunk, false, q - g * G, pv, KvDim);
            }
            st.Stored[q] = Held.None;
            st.Tiers[q] = KvTier.Full;
            StoreFull(st, q, rk, rv);   // own rows: the decoded values; inner rows: untouched (the originals)
        }
        NativeMemory.AlignedFree((void*)st.Int4[g]);
        st.Int4[g] = 0;
        st.Int4Chunks--;
    }

    /// <summary>Grows the per-position arrays (and Int4 chunk table, quest/msa summaries) of st to cover n positions.</summary>
    private void Grow(State st, int n)
    {
        if (st.Tiers.Length < n)
        {
            int cap = (int)Math.Min(Capacity, Math.Max(n, Math.Max(64L, 2L * st.Tiers.Length)));
            int old = st.Stored.Length;
            Array.Resize(ref st.Tiers, cap);
            Array.Resize(ref st.Stored, cap);
            st.Stored.AsSpan(old).Fill(Held.None);
            Array.Resize(ref st.Slot, cap);
            if (Spec.NeedsAttentionMass) { Array.Resize(ref st.Mass, cap); Array.Resize(ref st.Snap, cap); }
            if (Spec.Retention == RetentionKind.Kivi4) Array.Resize(ref st.Int4, (cap + G - 1) / G);
            if (LowBitTier) Array.Resize(ref st.Low, (cap + G - 1) / G);
        }
    }

    /// <summary>Brings storage in line with the planned tiers: tokens that became Int8 are quantized (float32 row freed),
    /// evicted tokens' rows are freed; then empty blocks are returned and sparse ones squeezed.</summary>
    private void Settle(State st, ReadOnlySpan<KvPage> inner, int len)
    {
        float[]? rk = null, rv = null;
        var plan = MemoryMarshal.Cast<KvTier, byte>(st.Tiers.AsSpan(0, len));
        var now = MemoryMarshal.Cast<Held, byte>(st.Stored.AsSpan(0, len));
        for (int i = 0; i < len; i++)
        {
            i += plan[i..].CommonPrefixLength(now[i..]);             // skip positions already held as planned
            if (i >= len) break;
            var tier = st.Tiers[i];
            var held = st.Stored[i];
            if (tier == KvTier.Int8 && held == Held.Full)
            {
                rk ??= new float[KvDim]; rv ??= new float[KvDim];
                ReadFull(st, inner, i, rk, rv);
                DropFull(st, i);
                int slot = (st.Int8Rows ??= new RowBlocks(BlockTokens, KvDim, KvDim, KvDim / G * 4, KvDim / G * 4)).Append(i);
                fixed (float* pk = rk, pv = rv)
                {
                    KvQuantizer.Int8(pk, KvDim, 1, KvDim, G, (sbyte*)st.Int8Rows.Row(slot, 0), (float*)st.Int8Rows.Row(slot, 2));
                    KvQuantizer.Int8(pv, KvDim, 1, KvDim, G, (sbyte*)st.Int8Rows.Row(slot, 1), (float*)st.Int8Rows.Row(slot, 3));
                }
                st.Slot[i] = slot; st.Stored[i] = Held.Int8;
            }
            else if (tier == KvTier.Evicted && held == Held.Full) { DropFull(st, i); st.Stored[i] = Held.None; }
            else if (tier == KvTier.Evicted && held == Held.Int8) { st.Int8Rows!.Remove(st.Slot[i]); st.Stored[i] = Held.None; }
            else if (!(tier == KvTier.Int4 && held == Held.Int4))
                throw new InvalidOperationException($"KV policy {Spec.Name}: position {i} planned {tier} but held as {held}");
        }
        st.Rows?.Compact(st.Slot);
        st.Int8Rows?.Compact(st.Slot);
    }

    /// <summary>Slots storage: points st's row slots at the blocks the inner store presents for (layer, seq) now (the
    /// request's table, bound over all its blocks for this step).</summary>
    private void Rebind(State st, int layer, int seqId)
    {
        if (!_slots) return;
        var rows = (SlotRows)(st.Rows ??= new SlotRows(BlockTokens, KvDim));
        rows.Rebind(_inner.Pages(layer, seqId));
    }

    /// <summary>The float32 rows of a Full-tier position (own block or inner store).</summary>
    private void ReadFull(State st, ReadOnlySpan<KvPage> inner, int pos, Span<float> k, Span<float> v)
    {
        if (!_own) { CopyRow(inner, pos, k, v); return; }
        if (st.Stored[pos] != Held.Full) throw new InvalidOperationException($"position {pos} holds no float32 row");
        if (OwnHalfRows) { FromHalf(st.Rows!.Row(st.Slot[pos], 0), k); FromHalf(st.Rows.Row(st.Slot[pos], 1), v); return; }
        new ReadOnlySpan<float>(st.Rows!.Row(st.Slot[pos], 0), KvDim).CopyTo(k);
        new ReadOnlySpan<float>(st.Rows.Row(st.Slot[pos], 1), KvDim).CopyTo(v);
    }

    /// <summary>Frees the own float32 row of a Full-held position (inner rows stay in the inner store).</summary>
    private void DropFull(State st, int pos)
    {
        if (_own && st.Stored[pos] == Held.Full) st.Rows!.Remove(st.Slot[pos]);
    }

    private void CopyRow(ReadOnlySpan<KvPage> inner, int pos, Span<float> k, Span<float> v)
    {
        foreach (var pg in inner)
            if (pos >= pg.StartPosition && pos < pg.StartPosition + pg.TokenCount)
            {
                long o = (long)(pos - pg.StartPosition) * pg.RowStride;
                new ReadOnlySpan<float>((float*)pg.K + o, KvDim).CopyTo(k);
                new ReadOnlySpan<float>((float*)pg.V + o, KvDim).CopyTo(v);
                return;
            }
        throw new InvalidOperationException($"position {pos} is not in the inner store's pages");
    }

    /// <summary>Rows of any kept position, decoded to float32 (false for an evicted one).</summary>
    private bool ReadRow(State st, ReadOnlySpan<KvPage> inner, int pos, float[] k, float[] v)
    {
        switch (st.Stored[pos])
        {
            case Held.Full: ReadFull(st, inner, pos, k, v); return true;
            case Held.Low:
                var lp = LowPage(st, pos / st.LowG, 0, st.LowG);
                fixed (float* pk = k, pv = v) { KvDecode.Row(lp, true, pos % st.LowG, pk, KvDim); KvDecode.Row(lp, false, pos % st.LowG, pv, KvDim); }
                return true;
            case Held.Int8:
            case Held.Int4:
                var pg = st.Stored[pos] == Held.Int8 ? Int8Page(st, st.Slot[pos], pos, 1) : Int4Page(st, pos / G, G);
                int j = st.Stored[pos] == Held.Int8 ? 0 : pos % G;
                fixed (float* pk = k, pv = v) { KvDecode.Row(pg, true, j, pk, KvDim); KvDecode.Row(pg, false, j, pv, KvDim); }
                return true;
            default: return false;
        }
    }

    private KvPage FullPage(State st, int slot, int pos, int count)
        => new((nint)st.Rows!.Row(slot, 0), (nint)st.Rows.Row(slot, 1), count, pos, KvDim) { Type = OwnHalfRows ? KvElementType.F16 : KvElementType.F32 };

    private KvPage Int8Page(State st, int slot, int pos, int count)
        => new((nint)st.Int8Rows!.Row(slot, 0), (nint)st.Int8Rows.Row(slot, 1), count, pos, KvDim)
        {
            Type = KvElementType.Int8, KScale = (nint)st.Int8Rows.Row(slot, 2), VScale = (nint)st.Int8Rows.Row(slot, 3), GroupSize = G,
        };

    private KvPage Int4Page(State st, int g, int count)
    {
        nint c = st.Int4[g];
        if (c == 0) throw new InvalidOperationException($"Int4 group {g} is not held");
        return new KvPage(c, c + (nint)_int4V, count, g * G, KvDim)
        { Type = KvElementType.Int4, KScale = c + (nint)_int4KPrm, VScale = c + (nint)_int4VPrm, GroupSize = G };
    }

    /// <summary>Per-(layer, sequence) policy state. Per-position arrays are indexed by position and grown on demand.</summary>
    private sealed partial class State : IDisposable
    {
        public KvTier[] Tiers = [];                 // [≥ Length] planned tier
        public Held[] Stored = [];                  // [≥ Length] what holds the position now (None past Length)
        public int[] Slot = [];                     // [≥ Length] slot id in Rows (Full) or Int8Rows (Int8)
        public float[] Mass = [];                   // [≥ Length] accumulated attention mass (Σ KV heads); heavy-hitter policies only
        public float[] Snap = [];                   // [≥ Length] SnapKV observation-window score; heavy-hitter policies only
        public nint[] Int4 = [];                    // [groups] Int4 chunk of each quantized group (0 = none); kivi4 only
        public IRowStore? Rows;                     // own rows of Full tokens (float32; mix/auto in own blocks: half): regions K [B, kvDim], V [B, kvDim] (RowBlocks, or float32 SlotRows in the pool)
        public RowBlocks? Int8Rows;                 // int8 rows: K, V [B, kvDim] sbyte; K, V scales [B, kvDim / G] float
        public int Length;
        public int Int4Groups;                      // groups [0, Int4Groups) were quantized (kivi4)
        public int Int4Chunks;                      // chunks held
        public double FullShare = 0.5;
        public bool ShareSet;
        public int NewFrom;                         // first position written by the last Write

        public void Dispose()
        {
            Rows?.Dispose(); Int8Rows?.Dispose();
            Rows = Int8Rows = null;
            for (int g = 0; g < Int4.Length; g++)
                if (Int4[g] != 0) { NativeMemory.AlignedFree((void*)Int4[g]); Int4[g] = 0; }
            Int4Chunks = 0;
            DisposeLow();
        }

        partial void DisposeLow();                  // PolicyKvStore.Mix.cs
    }
}
