// Owns: the pure decision function of the composed policies (mix2/mix3/mix4/auto and the all-kept kivi2/kivi3) — one
// BYTE budget shared by three tiers: float32 rows (Full: sinks, the incomplete key group, recent tokens and heavy
// hitters), low-bit KIVI groups (the bulk: a complete group of G tokens is quantized as one chunk), and eviction (whole
// groups, lowest attention score first, only while the bytes still do not fit). No storage here: PolicyKvStore.Mix.cs
// applies the plan.
// Rules: tiers only move down. A complete group is quantized once (its chunk holds codes for all G tokens); a token of a
// quantized group may keep its float32 row as a heavy hitter or recent token, and dropping that row later costs nothing
// (its codes are in the chunk). Whole groups are evicted (a chunk is freed only as a whole); sinks stay Full even when
// their group is evicted. Costs: Full = RowBytes per token (block rounding is the store's slack), a group = GroupBytes.
// Sources: KIVI (Liu et al., 2024) low-bit groups + full-precision residual; H2O (Zhang et al., 2023) recent + heavy
// hitters; ARKV's Original / Quantized / Evicted split under one memory budget; StreamingLLM sinks.
namespace Engine.Memory.Policies;

/// <summary>Byte costs of the composed tiers for one (layer, sequence).</summary>
/// <param name="RowBytes">One float32 K + V row.</param>
/// <param name="GroupBytes">One low-bit group chunk (G tokens, codes + params).</param>
/// <param name="Group">Tokens per key group G.</param>
/// <param name="Sinks">Leading tokens always kept at full precision.</param>
/// <param name="Recent">Kivi mode: the recent tokens kept Full before a group is quantized (KIVI's residual); Mix mode:
/// the last ⌈Recent / G⌉ complete groups are evicted only after every older group.</param>
/// <param name="RowBlock">Rows per allocation block of the Full tier: the planned rows are rounded up to whole blocks,
/// so what is allocated (not just what is used) stays within the budget.</param>
public readonly record struct MixCosts(long RowBytes, long GroupBytes, int Group, int Sinks, int Recent, int RowBlock = 1);

public static class MixPlanner
{
    /// <summary>Bits the bulk gets for a byte budget fraction (auto): the widest of 4, 3, 2 at which the budget still holds
    /// at least half of the tokens (bytes per token at b bits ≤ 2 · budget · float32 row), else 3. Measured on stories260K
    /// (bench/RESULTS.md, issue 15): evicting the lowest-scored half of the groups at 4 bits loses less than keeping all
    /// of them at 2 bits, and 2 bits alone costs KLD ≈ 0.03–0.07 there.</summary>
    public static int ChooseBits(double budget, int kvDim, int group, int valueGroup)
    {
        double row = 2.0 * kvDim * sizeof(float);
        foreach (int b in (int[])[4, 3, 2])
            if (Engine.Tensors.Quants.KiviLowBit.GroupBytes(group, kvDim, b, valueGroup) / (double)group <= 2 * budget * row) return b;
        return 3;
    }

    /// <summary>
    /// Plans positions [0, tiers.Length) (the tokens older than the current write). tiers: Full / LowBit / Evicted now (in:
    /// what is held; out: the plan). grouped[g]: group g has a chunk (in) / keeps or gets one (out). scores: attention mass per
    /// token. <paramref name="budgetBytes"/> null = keep everything (kivi2/kivi3: groups older than the recent window are
    /// quantized, nothing is evicted). <paramref name="freshRows"/>: Full rows of the current write (not planned, but
    /// held). Returns the planned bytes: Full rows (with the fresh ones, rounded up to whole row blocks) + chunks. The
    /// plan stays within the budget unless the sinks, the incomplete group and the fresh rows alone exceed it.
    /// </summary>
    public static long Plan(Span<KvTier> tiers, Span<bool> grouped, ReadOnlySpan<float> scores, MixCosts c, long? budgetBytes, int freshRows)
    {
        int len = tiers.Length, G = c.Group;
        int complete = budgetBytes == null ? Math.Max(0, len - c.Recent) / G : len / G;
        int sinks = Math.Min(c.Sinks, len);
        bool Mandatory(int t) => t < sinks || t >= complete * G;
        // 1. complete groups not yet quantized get a chunk (their tokens keep their rows for now); an evicted group (only
        //    its sinks left) stays evicted
        for (int g = 0; g < complete; g++)
        {
            if (grouped[g]) continue;
            for (int t = g * G; t < (g + 1) * G; t++)
                if (!Mandatory(t) && tiers[t] != KvTier.Evicted) { grouped[g] = true; break; }
        }
        var bytes = System.Runtime.InteropServices.MemoryMarshal.Cast<KvTier, byte>(tiers);
        if (budgetBytes is not { } budget)
        {
            for (int t = NextFull(bytes, sinks); t < complete * G; t = NextFull(bytes, t + 1)) tiers[t] = KvTier.LowBit;
            return Cost(tiers, grouped, c, freshRows);
        }
        int mandRows = freshRows;                    // mandatory rows + chunks (the optional rows are decided in step 3)
        for (int t = 0; t < sinks; t++) if (tiers[t] != KvTier.Evicted) mandRows++;
        for (int t = Math.Max(sinks, complete * G); t < len; t++) if (tiers[t] != KvTier.Evicted) mandRows++;
        long chunks = 0;
        int groups = Math.Min(grouped.Length, (len + G - 1) / G);
        for (int g = 0; g < groups; g++) if (grouped[g]) chunks += c.GroupBytes;
        long cost = RowsBytes(mandRows, c) + chunks;
        // 2. evict whole groups, lowest score first (the last ⌈Recent/G⌉ complete groups last), while over budget
        if (cost > budget)
        {
            int protect = Math.Max(0, complete - (c.Recent + G - 1) / G);
            var ids = new List<int>(); var keys = new List<double>();
            for (int g = 0; g < complete; g++)
            {
                if (!grouped[g]) continue;
                double s = 0;
                for (int t = g * G; t < (g + 1) * G; t++) s += scores[t];
                ids.Add(g); keys.Add(g >= protect ? double.MaxValue / 2 + g : s);
            }
            var order = ids.ToArray(); var k = keys.ToArray();
            Array.Sort(k, order);                   // ascending score; equal scores (protected) by group index
            foreach (int g in order)
            {
                if (cost <= budget) break;
                grouped[g] = false; cost -= c.GroupBytes; chunks -= c.GroupBytes;
                for (int t = g * G; t < (g + 1) * G; t++)
                    if (!Mandatory(t)) tiers[t] = KvTier.Evicted;
            }
        }
        // 3. the bytes left keep float32 rows of quantized-group tokens that still have one: half to the most recent,
        //    half to the highest attention mass (H2O's split); every other such row is dropped (its codes stay)
        var cand = new List<int>();
        for (int t = NextFull(bytes, sinks); t < complete * G; t = NextFull(bytes, t + 1)) cand.Add(t);
        long rowsAllowed = Math.Max(0, budget - chunks) / c.RowBytes / c.RowBlock * c.RowBlock;   // whole blocks only
        long extra = Math.Max(0, rowsAllowed - mandRows);
        if (extra < cand.Count)
        {
            int recent = (int)((extra + 1) / 2), heavy = (int)extra - recent;
            var keep = new bool[cand.Count];
            for (int i = 0; i < recent; i++) keep[cand.Count - 1 - i] = true;
            var rest = new List<int>(); var rk = new List<float>();
            for (int i = 0; i < cand.Count - recent; i++) { rest.Add(i); rk.Add(-scores[cand[i]]); }
            var ra = rest.ToArray(); var rka = rk.ToArray();
            Array.Sort(rka, ra);
            for (int r = 0; r < heavy && r < ra.Length; r++) keep[ra[r]] = true;
            for (int i = 0; i < cand.Count; i++) if (!keep[i]) tiers[cand[i]] = KvTier.LowBit;
        }
        return Cost(tiers, grouped, c, freshRows);
    }

    /// <summary>Bytes a plan holds: Full rows (+ <paramref name="freshRows"/>) rounded up to whole row blocks + group chunks.</summary>
    public static long Cost(ReadOnlySpan<KvTier> tiers, ReadOnlySpan<bool> grouped, MixCosts c, int freshRows)
    {
        int rows = freshRows + System.Runtime.InteropServices.MemoryMarshal.Cast<KvTier, byte>(tiers).Count((byte)KvTier.Full);
        long cost = RowsBytes(rows, c);
        cost += System.Runtime.InteropServices.MemoryMarshal.Cast<bool, byte>(grouped).Count((byte)1) * c.GroupBytes;
        return cost;
    }

    // first position ≥ from holding a Full tier (vectorized search; Length when none)
    private static int NextFull(ReadOnlySpan<byte> tiers, int from)
    {
        if (from >= tiers.Length) return tiers.Length;
        int i = tiers[from..].IndexOf((byte)KvTier.Full);
        return i < 0 ? tiers.Length : from + i;
    }

    private static long RowsBytes(int rows, MixCosts c) => (long)((rows + c.RowBlock - 1) / c.RowBlock) * c.RowBlock * c.RowBytes;
}
