// Owns: the AVX-512 fast path of one attention item (a query row over a block of cached tokens) for head dims that are
// multiples of 16 — the decode-at-long-context hot loop. Same contract as AttentionJob.Range: unnormalised
// acc_h = Σ_j e^{s_hj − max_h} v_j, sum_h = Σ_j e^{s_hj − max_h}, max_h; zero visible tokens → acc 0, sum 0, max −∞.
// Layout of the work: head-major inside the block. Scores: per query head h, its hd/16 query vectors (registers) are
// dotted with each cached K row segment of its KV head (inlined FMAs, no calls); for hd = 64 four tokens' products are
// reduced together by one unpack/shuffle transpose (about 2.5 instead of ~7 reduction instructions per score).
// Values: per head, Σ p·V over the block with the accumulator in registers (hd = 64 or 128: 4 / 8 zmm), instead of one
// axpy call per (token, head) through memory. A block's K/V (≤ 512 tokens × kvDim floats) stays in L2 across heads.
// Paged caches are walked page by page (all heads per page: a scattered 16-token page stays in L1 across the heads
// of a KV group); with grouped heads the next page's K/V head segments are software-prefetched during the current page
// (hardware prefetch loses the stream at each page jump; prefetching changes no result). 4-token reductions restart
// at each page, so paged equals contiguous bitwise when every page boundary inside a block lies a multiple of 4 tokens
// from the block start (e.g. 16-token blocks at 4096 tokens; checked by `bench/Engine.Bench --cpu-ab-paged` and
// tests/Engine.Runtime.Tests/PagedKvStoreTests.cs).
// Results equal the generic path's within float32 rounding (different summation order), as the backend contract allows.
// Dot64, Reduce4 and Accumulate4/8 are shared with AttentionRangeQuant (quantized tiers run the same inner loops).
namespace Engine.Kernels;

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

public static unsafe class AttentionRange512
{
    /// <summary>True when the fast path applies: on in <paramref name="options"/> (<see cref="CpuKernelOptions.Attention512"/>),
    /// AVX-512 present and allowed by <paramref name="isa"/>, head dim a multiple of 16, at most 256.</summary>
    internal static bool Applies(CpuKernelOptions options, SimdWidth isa, int headDim) =>
        options.Attention512 && isa.Use512 && headDim % 16 == 0 && headDim <= 256;

    /// <param name="q">[heads, hd] query row.</param>
    /// <param name="scores">[heads, bt] scratch.</param>
    /// <param name="acc">[heads] rows of <paramref name="accStride"/> floats.</param>
    internal static void Run(CpuKernelOptions options, SimdWidth isa, float* q, KvPage* pages, int* pageStart, int pageCount, int lo, int hi, int qpos,
        AttentionParams p, float* scores, int bt, float* max, float* sum, float* acc, int accStride)
    {
        int heads = p.HeadCount, hd = p.HeadDim, group = p.HeadCount / p.KvHeadCount, hv = hd / 16;
        float scale = p.Scale;
        // Next-page prefetch pays where query heads share a KV head (group > 1: the page's rows are re-read from L1 by
        // the group, so the cold misses at each page jump dominate); with group 1 it measured a loss (CPU-time A/B,
        // bench/Engine.Bench --cpu-ab-paged).
        bool prefetch = options.AttentionPagePrefetch && group > 1;

        // Scores, page by page (c = logical index inside the block).
        int c0 = 0;
        for (int pi = 0; pi < pageCount; pi++)
        {
            var pg = pages[pi];
            int j0 = Math.Max(0, lo - pageStart[pi]);
            int j1 = Math.Min(Math.Min(pg.TokenCount, hi - pageStart[pi]), qpos - pg.StartPosition + 1);
            if (j1 <= j0) continue;
            // The next page of the block: its K rows are prefetched head segment by head segment while this page is
            // scored (the hardware prefetchers lose the stream at every jump to a scattered page).
            float* nextK = null;
            int nextRows = 0, nextStride = 0;
            if (prefetch && pi + 1 < pageCount && pageStart[pi + 1] < hi)
            {
                var np = pages[pi + 1];
                nextRows = Math.Min(Math.Min(np.TokenCount, hi - pageStart[pi + 1]), qpos - np.StartPosition + 1);
                nextK = (float*)np.K; nextStride = np.RowStride;
            }
            for (int h = 0; h < heads; h++)
            {
                if (h % group == 0 && nextRows > 0) PrefetchSegment(nextK + (long)(h / group) * hd, nextStride, nextRows, hd);
                float* qh = q + (long)h * hd;
                float* k = (float*)pg.K + (long)j0 * pg.RowStride + (long)(h / group) * hd;
                float* sc = scores + (long)h * bt + c0;
                ScoreRows(qh, k, pg.RowStride, j1 - j0, hv, scale, sc);
            }
            c0 += j1 - j0;
        }
        int count = c0;

        ExpScores(isa, scores, bt, heads, count, hd, max, sum, acc, accStride);
        if (count == 0) return;

        // Σ p·V per head with register accumulators.
        c0 = 0;
        for (int pi = 0; pi < pageCount; pi++)
        {
            var pg = pages[pi];
            int j0 = Math.Max(0, lo - pageStart[pi]);
            int j1 = Math.Min(Math.Min(pg.TokenCount, hi - pageStart[pi]), qpos - pg.StartPosition + 1);
            if (j1 <= j0) continue;
            int n = j1 - j0;
            float* nextV = null;
            int nextRows = 0, nextStride = 0;
            if (prefetch && pi + 1 < pageCount && pageStart[pi + 1] < hi)
            {
                var np = pages[pi + 1];
                nextRows = Math.Min(Math.Min(np.TokenCount, hi - pageStart[pi + 1]), qpos - np.StartPosition + 1);
                nextV = (float*)np.V; nextStride = np.RowStride;
            }
            for (int h = 0; h < heads; h++)
            {
                if (h % group == 0 && nextRows > 0) PrefetchSegment(nextV + (long)(h / group) * hd, nextStride, nextRows, hd);
                float* v = (float*)pg.V + (long)j0 * pg.RowStride + (long)(h / group) * hd;
                float* pr = scores + (long)h * bt + c0;
                float* a = acc + (long)h * accStride;
                AccumulateRows(isa, pr, v, pg.RowStride, n, hd, a);
            }
            c0 += n;
        }
    }

    /// <summary>Prefetch (into all cache levels) the <paramref name="hd"/>-float segment at <paramref name="p"/> of
    /// <paramref name="rows"/> rows <paramref name="stride"/> floats apart. Only a hint: never faults, changes no result.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void PrefetchSegment(float* p, int stride, int rows, int hd)
    {
        for (int r = 0; r < rows; r++, p += stride)
            for (int f = 0; f < hd; f += 16) Sse.Prefetch0(p + f);
    }

    /// <summary>Lane-wise partial products of a 64-float query (q0..q3) with the 64 floats at k (sum them for the dot).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> Dot64(Vector512<float> q0, Vector512<float> q1, Vector512<float> q2, Vector512<float> q3, float* k)
    {
        var a = Vector512.FusedMultiplyAdd(q1, Vector512.Load(k + 16), q0 * Vector512.Load(k));
        var b = Vector512.FusedMultiplyAdd(q3, Vector512.Load(k + 48), q2 * Vector512.Load(k + 32));
        return a + b;
    }

    /// <summary>[Σa, Σb, Σc, Σd] of four vectors: pairwise unpack/shuffle adds inside each 128-bit lane, then the lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<float> Reduce4(Vector512<float> a, Vector512<float> b, Vector512<float> c, Vector512<float> d)
    {
        var ab = Avx512F.UnpackLow(a, b) + Avx512F.UnpackHigh(a, b);     // per lane [a, b, a, b] partials
        var cd = Avx512F.UnpackLow(c, d) + Avx512F.UnpackHigh(c, d);     // per lane [c, d, c, d]
        var v = Avx512F.Shuffle(ab, cd, 0x44) + Avx512F.Shuffle(ab, cd, 0xEE);   // per lane [a, b, c, d]
        var w = v.GetLower() + v.GetUpper();
        return w.GetLower() + w.GetUpper();
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Accumulate4(float* p, float* v, int stride, int n, float* acc)
    {
        var a0 = Vector512.Load(acc); var a1 = Vector512.Load(acc + 16);
        var a2 = Vector512.Load(acc + 32); var a3 = Vector512.Load(acc + 48);
        for (int j = 0; j < n; j++, v += stride)
        {
            var w = Vector512.Create(p[j]);
            a0 = Vector512.FusedMultiplyAdd(w, Vector512.Load(v), a0);
            a1 = Vector512.FusedMultiplyAdd(w, Vector512.Load(v + 16), a1);
            a2 = Vector512.FusedMultiplyAdd(w, Vector512.Load(v + 32), a2);
            a3 = Vector512.FusedMultiplyAdd(w, Vector512.Load(v + 48), a3);
        }
        a0.Store(acc); a1.Store(acc + 16); a2.Store(acc + 32); a3.Store(acc + 48);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Accumulate8(float* p, float* v, int stride, int n, float* acc)
    {
        var a0 = Vector512.Load(acc); var a1 = Vector512.Load(acc + 16);
        var a2 = Vector512.Load(acc + 32); var a3 = Vector512.Load(acc + 48);
        var a4 = Vector512.Load(acc + 64); var a5 = Vector512.Load(acc + 80);
        var a6 = Vector512.Load(acc + 96); var a7 = Vector512.Load(acc + 112);
        for (int j = 0; j < n; j++, v += stride)
        {
            var w = Vector512.Create(p[j]);
            a0 = Vector512.FusedMultiplyAdd(w, Vector512.Load(v), a0);
            a1 = Vector512.FusedMultiplyAdd(w, Vector512.Load(v + 16), a1);
            a2 = Vector512.FusedMultiplyAdd(w, Vector512.Load(v + 32), a2);
            a3 = Vector512.FusedMultiplyAdd(w, Vector512.Load(v + 48), a3);
            a4 = Vector512.FusedMultiplyAdd(w, Vector512.Load(v + 64), a4);
            a5 = Vector512.FusedMultiplyAdd(w, Vector512.Load(v + 80), a5);
            a6 = Vector512.FusedMultiplyAdd(w, Vector512.Load(v + 96), a6);
            a7 = Vector512.FusedMultiplyAdd(w, Vector512.Load(v + 112), a7);
        }
        a0.Store(acc); a1.Store(acc + 16); a2.Store(acc + 32); a3.Store(acc + 48);
        a4.Store(acc + 64); a5.Store(acc + 80); a6.Store(acc + 96); a7.Store(acc + 112);
    }

    /// <summary>Per head h: max[h] = max of its scores [0, count), the scores become exp(s − max), sum[h] = their sum, and
    /// the head's accumulator row (acc + h·accStride, hd floats) is zeroed (count 0: max −∞, sum 0). Shared by the F32,
    /// F32-walk and quantized-tier attention paths. scores: [heads, bt].</summary>
    internal static void ExpScores(SimdWidth isa, float* scores, int bt, int heads, int count, int hd, float* max, float* sum, float* acc, int accStride)
    {
        for (int h = 0; h < heads; h++)
        {
            float* a = acc + (long)h * accStride;
            new Span<float>(a, hd).Clear();
            if (count == 0) { max[h] = float.NegativeInfinity; sum[h] = 0; continue; }
            float* sh = scores + (long)h * bt;
            float m = Simd.Reduce(isa, new IdentityOp(), new MaxOp(), sh, count, float.NegativeInfinity);
            max[h] = m;
            Simd.Map(isa, new ExpSubOp(m), sh, sh, count);
            sum[h] = Simd.Reduce(isa, new IdentityOp(), new AddOp(), sh, count, 0f);
        }
    }

    /// <summary>sc[j] = scale · (q · k_j) for the n rows k_j = k + j·rs (hd = 16·hv floats each): four rows at a time
    /// with one transpose-reduce for hd 64, two accumulators per row otherwise. Shared by the F32 walks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void ScoreRows(float* qh, float* k, int rs, int n, int hv, float scale, float* sc)
    {
        if (hv == 4)
        {
            var q0 = Vector512.Load(qh); var q1 = Vector512.Load(qh + 16);
            var q2 = Vector512.Load(qh + 32); var q3 = Vector512.Load(qh + 48);
            var vscale = Vector128.Create(scale);
            int j = 0;
            for (; j <= n - 4; j += 4, k += 4 * rs)
            {
                // four tokens' products, then one transpose-reduce for their four sums
                var a0 = Dot64(q0, q1, q2, q3, k);
                var a1 = Dot64(q0, q1, q2, q3, k + rs);
                var a2 = Dot64(q0, q1, q2, q3, k + 2 * rs);
                var a3 = Dot64(q0, q1, q2, q3, k + 3 * rs);
                (Reduce4(a0, a1, a2, a3) * vscale).Store(sc + j);
            }
            for (; j < n; j++, k += rs) sc[j] = Vector512.Sum(Dot64(q0, q1, q2, q3, k)) * scale;
            return;
        }
        for (int j = 0; j < n; j++, k += rs)
        {
            var a = Vector512.Load(qh) * Vector512.Load(k);
            var b = Vector512<float>.Zero;
            int v = 1;
            for (; v + 1 < hv; v += 2)
            {
                a = Vector512.FusedMultiplyAdd(Vector512.Load(qh + 16 * v), Vector512.Load(k + 16 * v), a);
                b = Vector512.FusedMultiplyAdd(Vector512.Load(qh + 16 * v + 16), Vector512.Load(k + 16 * v + 16), b);
            }
            if (v < hv) a = Vector512.FusedMultiplyAdd(Vector512.Load(qh + 16 * v), Vector512.Load(k + 16 * v), a);
            sc[j] = Vector512.Sum(a + b) * scale;
        }
    }

    /// <summary>acc[c] += Σ_j p[j] · v[j·rs + c] for j &lt; n, c &lt; hd: register accumulators for hd 64 / 128, Axpy otherwise.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void AccumulateRows(SimdWidth isa, float* p, float* v, int rs, int n, int hd, float* acc)
    {
        if (hd == 64) Accumulate4(p, v, rs, n, acc);
        else if (hd == 128) Accumulate8(p, v, rs, n, acc);
        else
            for (int j = 0; j < n; j++) Simd.Axpy(isa, p[j], v + (long)j * rs, acc, hd);
    }
}
