// Owns: the pure decision functions of the retention and selection policies — given a sequence length, a budget and
// per-token / per-block scores, which tokens are kept and at what tier, which blocks a query reads. No storage here:
// PolicyKvStore applies the decisions. Tiers only move down (Full → Int8/Int4 → Evicted): a dropped precision or an
// evicted token never comes back.
// Sources: StreamingLLM (Xiao et al., 2023) sinks + window; H2O (Zhang et al., 2023) heavy hitters + recent window;
// SnapKV (Li et al., 2024) pooled observation-window scores; ARKV (adaptive Original/Quantized/Evicted by heavy-hitter
// score); Quest (Tang et al., 2024) Σ max(q·min, q·max) block bound; MSA-style mean-pooled chunk routing keys.
namespace Engine.Memory.Policies;

/// <summary>Per-token storage tier decided by a policy. LowBit: the 2/3/4-bit KIVI group chunk (kivi2/kivi3, mix*, auto; MixPlanner).</summary>
public enum KvTier : byte { Full = 0, Int8 = 1, Int4 = 2, Evicted = 3, LowBit = 4 }

public static class Planners
{
    /// <summary>Token budget for a length: ceil(budget · length), at least 1.</summary>
    public static int TokenBudget(double budget, int length) => Math.Max(1, (int)Math.Ceiling(budget * length - 1e-9));

    /// <summary>StreamingLLM: keep [0, S) and the most recent B − S tokens; evict the rest.</summary>
    public static void Sinks(Span<KvTier> tiers, int budgetTokens, int sinkTokens)
    {
        int len = tiers.Length, s = Math.Min(sinkTokens, budgetTokens), recent = budgetTokens - s;
        for (int i = s; i < len - recent; i++) tiers[i] = KvTier.Evicted;
    }

    /// <summary>
    /// Heavy hitters (H2O, SnapKV): the most recent ⌈B/2⌉ tokens are kept, and of the older non-evicted tokens the B − ⌈B/2⌉
    /// with the largest score; every other token is evicted. Ties keep the earlier token.
    /// </summary>
    public static void HeavyHitters(Span<KvTier> tiers, ReadOnlySpan<float> scores, int budgetTokens)
    {
        int len = tiers.Length;
        if (CountKept(tiers) <= budgetTokens) return;
        int recent = Math.Min(len, (budgetTokens + 1) / 2);
        int heavy = budgetTokens - recent;
        var order = Candidates(tiers[..(len - recent)], scores);
        for (int r = heavy; r < order.Length; r++) tiers[order[r]] = KvTier.Evicted;
    }

    /// <summary>
    /// ARKV (only under memory pressure — while every token fits at full precision nothing changes): of the non-evicted tokens ranked by score (the recent ⌈B/4⌉ first), the top <c>fullShare · B</c> stay Full;
    /// the remaining memory (B − full) holds tokens at Int8 costing <paramref name="quantCost"/> float32-token units each;
    /// everything after is evicted. A Full token may drop to Int8; an Int8 token may only be evicted.
    /// </summary>
    public static void Arkv(Span<KvTier> tiers, ReadOnlySpan<float> scores, int budgetTokens, double fullShare, double quantCost)
    {
        int len = tiers.Length, recent = Math.Min(len, (budgetTokens + 3) / 4);
        if (CountKept(tiers) <= budgetTokens && !tiers.Contains(KvTier.Int8)) return;   // no memory pressure: all Original
        int full = Math.Max(recent, (int)Math.Round(Math.Clamp(fullShare, 0, 1) * budgetTokens));
        full = Math.Min(full, budgetTokens);
        int quant = (int)Math.Floor((budgetTokens - full) / quantCost);
        var order = Candidates(tiers[..(len - recent)], scores);
        // Full slots: recent tokens + the best older Full tokens. Quantized slots follow in score order.
        int fullLeft = full - recent, quantLeft = quant;
        foreach (int i in order)
        {
            if (tiers[i] == KvTier.Full && fullLeft > 0) { fullLeft--; continue; }
            if (quantLeft > 0) { quantLeft--; if (tiers[i] == KvTier.Full) tiers[i] = KvTier.Int8; continue; }
            tiers[i] = KvTier.Evicted;
        }
    }

    /// <summary>Indices of non-evicted tokens of <paramref name="tiers"/>, best score first (stable: ties → earlier token).</summary>
    private static int[] Candidates(ReadOnlySpan<KvTier> tiers, ReadOnlySpan<float> scores)
    {
        var idx = new List<int>(tiers.Length);
        for (int i = 0; i < tiers.Length; i++) if (tiers[i] != KvTier.Evicted) idx.Add(i);
        var arr = idx.ToArray();
        var sc = scores;
        var keys = new float[arr.Length];
        for (int i = 0; i < arr.Length; i++) keys[i] = -sc[arr[i]];
        Array.Sort(keys, arr);                                        // ascending −score; not stable → fix ties below
        // restore "earlier first" among equal scores
        for (int i = 0; i < arr.Length;)
        {
            int j = i;
            while (j < arr.Length && keys[j] == keys[i]) j++;
            Array.Sort(arr, i, j - i);
            i = j;
        }
        return arr;
    }

    public static int CountKept(ReadOnlySpan<KvTier> tiers)
    {
        int n = 0;
        foreach (var t in tiers) if (t != KvTier.Evicted) n++;
        return n;
    }

    /// <summary>SnapKV pooling: out[i] = max of scores over [i − k/2, i + k/2] (1-D max pool, same length).</summary>
    public static void MaxPool(ReadOnlySpan<float> scores, int kernel, Span<float> pooled)
    {
        int r = kernel / 2;
        for (int i = 0; i < scores.Length; i++)
        {
            float m = float.NegativeInfinity;
            for (int j = Math.Max(0, i - r); j <= Math.Min(scores.Length - 1, i + r); j++) m = MathF.Max(m, scores[j]);
            pooled[i] = m;
        }
    }

    /// <summary>Normalised Shannon entropy H(p)/log(n) of a non-negative mass vector (0 for n ≤ 1 or zero mass).</summary>
    public static double NormalizedEntropy(ReadOnlySpan<float> mass)
    {
        double sum = 0;
        foreach (float m in mass) sum += m;
        if (mass.Length <= 1 || sum <= 0) return 0;
        double h = 0;
        foreach (float m in mass) if (m > 0) { double p = m / sum; h -= p * Math.Log(p); }
        return h / Math.Log(mass.Length);
    }

    /// <summary>Quest upper bound of q·k over a block: Σ_i max(q_i·min_i, q_i·max_i).</summary>
    public static float QuestBound(ReadOnlySpan<float> q, ReadOnlySpan<float> min, ReadOnlySpan<float> max)
    {
        float s = 0;
        for (int i = 0; i < q.Length; i++) s += MathF.Max(q[i] * min[i], q[i] * max[i]);
        return s;
    }

    /// <summary>
    /// Marks the blocks a query reads: the <paramref name="topK"/> best-scoring blocks plus the always-read ones
    /// (<paramref name="always"/> true). Ties pick the earlier block; NaN scores are never picked. selected: [blocks].
    /// </summary>
    public static void TopBlocks(ReadOnlySpan<float> scores, ReadOnlySpan<bool> always, int topK, Span<bool> selected)
    {
        var masked = scores.ToArray();
        for (int b = 0; b < masked.Length; b++) { selected[b] = always[b]; if (always[b]) masked[b] = float.NaN; }
        var chosen = new int[Math.Max(0, Math.Min(topK, masked.Length))];
        int n = TopK(masked, chosen);
        for (int r = 0; r < n; r++) selected[chosen[r]] = true;
    }

    /// <summary>
    /// Partial selection: writes to <paramref name="chosen"/> the indices of the <c>chosen.Length</c> largest scores (NaN
    /// scores are skipped; ties keep the earlier index), in no particular order, and returns how many were found.
    /// Quickselect (Hoare partition, median-of-three pivot) over the candidate indices in <paramref name="scratch"/>
    /// (length ≥ scores.Length): expected O(n), no allocation.
    /// </summary>
    public static int TopK(ReadOnlySpan<float> scores, Span<int> chosen, Span<int> scratch)
    {
        int k = chosen.Length, n = 0;
        for (int i = 0; i < scores.Length; i++) if (!float.IsNaN(scores[i])) scratch[n++] = i;
        if (n <= k) { scratch[..n].CopyTo(chosen); return n; }
        if (k == 0) return 0;
        var idx = scratch[..n];
        int lo = 0, hi = n - 1;
        while (lo < hi)
        {
            // median of three as the pivot, then Hoare partition: better-than-pivot left, worse right
            int mid = lo + (hi - lo) / 2;
            if (Better(scores, idx[mid], idx[lo])) (idx[mid], idx[lo]) = (idx[lo], idx[mid]);
            if (Better(scores, idx[hi], idx[lo])) (idx[hi], idx[lo]) = (idx[lo], idx[hi]);
            if (Better(scores, idx[hi], idx[mid])) (idx[hi], idx[mid]) = (idx[mid], idx[hi]);
            int pivot = idx[mid];
            int i = lo, j = hi;
            while (i <= j)
            {
                while (Better(scores, idx[i], pivot)) i++;
                while (Better(scores, pivot, idx[j])) j--;
                if (i <= j) { (idx[i], idx[j]) = (idx[j], idx[i]); i++; j--; }
            }
            // [lo, j] ≥ pivot ≥ [i, hi]; keep the side holding position k − 1
            if (k - 1 <= j) hi = j;
            else if (k - 1 >= i) lo = i;
            else break;
        }
        idx[..k].CopyTo(chosen);
        return k;

        static bool Better(ReadOnlySpan<float> sc, int a, int b) => sc[a] > sc[b] || (sc[a] == sc[b] && a < b);
    }

    /// <summary><see cref="TopK(ReadOnlySpan{float}, Span{int}, Span{int})"/> with its own scratch (allocates).</summary>
    public static int TopK(ReadOnlySpan<float> scores, Span<int> chosen) => TopK(scores, chosen, new int[scores.Length]);
}
