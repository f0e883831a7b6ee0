// Owns: an alternative walk of the float32 AVX-512 attention item (AttentionRange512's contract: one query row over a
// block of cached tokens; unnormalised acc_h = Σ_j e^{s_hj − max_h} v_j, sum_h, max_h; zero visible tokens → acc 0,
// sum 0, max −∞) for grouped heads (query heads per KV head > 1): the per-KV-head chunked walk of AttentionRangeQuant
// without the unpack. Per page, per chunk of ChunkTokens (8) tokens, per KV head: the group's query heads score the chunk's K
// rows in place (stride kvDim floats; the chunk's 8 head segments of hd floats stay in L1 across the group), and the same
// KV head's rows of the next chunk (or of the next page's first chunk) are software-prefetched; then the same walk for
// Σ p·V. AttentionRange512 instead walks each query head over the whole page (a 16-token page stays in L1, a contiguous
// block of up to thousands of tokens is re-read by each query head of the group from L2/L3).
// Invariant: results are bitwise equal to AttentionRange512.Run on the same inputs — the same inner loops (Dot64 +
// Reduce4 four tokens at a time from each page's first visible token, chunks are multiples of 4; register accumulators
// for Σ p·V, stored and reloaded between chunks, same order) and the same softmax; only the memory walk differs.
// On by default (CpuKernelOptions.AttentionF32Walk for A/B): CPU-time A/B `bench/Engine.Bench --cpu-ab-f32walk` (bench/RESULTS.md), llama-1b
// shape, 1 thread: walk/off 0.37–0.53 contiguous decode at 4K–64K, 0.76–0.92 paged (16-token blocks), prefill 0.42–0.90.
// Group 1 (no shared KV head) keeps AttentionRange512: the walk's gain is the group's L1 reuse.
// Source: the chunked GQA walk of AttentionRangeQuant (this repository), software prefetch as in AttentionRange512.
namespace Engine.Kernels;

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

public static unsafe class AttentionRangeF32Walk
{
    /// <summary>True when this walk handles the item: on in <paramref name="options"/> (<see cref="CpuKernelOptions.AttentionF32Walk"/>),
    /// AttentionRange512 applies and heads are grouped.</summary>
    internal static bool Applies(CpuKernelOptions options, SimdWidth isa, in AttentionParams p) =>
        options.AttentionF32Walk && AttentionRange512.Applies(options, isa, p.HeadDim) && p.KvHeadCount > 0 && p.HeadCount / p.KvHeadCount > 1;

    /// <summary>Tokens per chunk, a multiple of 4: 8. Rows read in place are kvDim floats apart (2 KiB for 8 × 64), so a
    /// chunk's head segments fall into few L1 sets (8-way 32 KiB L1: at most ~16 rows of 4 lines stay); the group's
    /// re-reads must hit L1. Measured (bench --cpu-ab-f32walk, llama-1b shape): 8 beat 4/16/32/64 at every context.</summary>
    internal static int ChunkTokens(CpuKernelOptions options, int hd) =>
        options.AttentionF32WalkChunk > 0 ? Math.Max(4, options.AttentionF32WalkChunk & ~3) : 8;

    /// <param name="q">[heads, hd] query row.</param>
    /// <param name="scores">[heads, bt] scratch.</param>
    /// <param name="acc">[heads] rows of <paramref name="accStride"/> floats.</param>
    internal static void Run(CpuKernelOptions options, SimdWidth isa, float* q, KvPage* pages, int* pageStart, int pageCount, int lo, int hi, int qpos,
        AttentionParams p, float* scores, int bt, float* max, float* sum, float* acc, int accStride)
    {
        int heads = p.HeadCount, hd = p.HeadDim, kvHeads = p.KvHeadCount, group = heads / kvHeads, hv = hd / 16;
        int chunk = ChunkTokens(options, hd);
        float scale = p.Scale;
        bool prefetch = options.AttentionF32WalkPrefetch && Sse.IsSupported;

        // Scores (c0 = logical index inside the block of the page's first visible token).
        int c0 = 0;
        for (int pi = 0; pi < pageCount; pi++)
        {
            var pg = pages[pi];
            int j0 = Math.Max(0, lo - pageStart[pi]);
            int j1 = Math.Min(Math.Min(pg.TokenCount, hi - pageStart[pi]), qpos - pg.StartPosition + 1);
            if (j1 <= j0) continue;
            int rs = pg.RowStride;
            for (int a = j0; a < j1; a += chunk)
            {
                int m = Math.Min(chunk, j1 - a);
                NextChunk(pages, pageStart, pageCount, pi, a + m, j1, lo, hi, qpos, chunk, key: true, out float* nk, out int nRows, out int nStride);
                for (int kh = 0; kh < kvHeads; kh++)
                {
                    if (prefetch && nRows > 0) AttentionRange512.PrefetchSegment(nk + (long)kh * hd, nStride, nRows, hd);
                    float* kBase = (float*)pg.K + (long)a * rs + (long)kh * hd;
                    for (int h = kh * group; h < (kh + 1) * group; h++)
                    {
                        float* qh = q + (long)h * hd;
                        float* sc = scores + (long)h * bt + c0 + (a - j0);
                        AttentionRange512.ScoreRows(qh, kBase, rs, m, hv, scale, sc);
                    }
                }
            }
            c0 += j1 - j0;
        }
        int count = c0;

        AttentionRange512.ExpScores(isa, scores, bt, heads, count, hd, max, sum, acc, accStride);
        if (count == 0) return;

        // Σ p·V, same walk.
        c0 = 0;
        for (int pi = 0; pi < pageCount; pi++)
        {
            var pg = pages[pi];
            int j0 = Math.Max(0, lo - pageStart[pi]);
            int j1 = Math.Min(Math.Min(pg.TokenCount, hi - pageStart[pi]), qpos - pg.StartPosition + 1);
            if (j1 <= j0) continue;
            int rs = pg.RowStride;
            for (int a = j0; a < j1; a += chunk)
            {
                int m = Math.Min(chunk, j1 - a);
                NextChunk(pages, pageStart, pageCount, pi, a + m, j1, lo, hi, qpos, chunk, key: false, out float* nv, out int nRows, out int nStride);
                for (int kh = 0; kh < kvHeads; kh++)
                {
                    if (prefetch && nRows > 0) AttentionRange512.PrefetchSegment(nv + (long)kh * hd, nStride, nRows, hd);
                    float* v = (float*)pg.V + (long)a * rs + (long)kh * hd;
                    for (int h = kh * group; h < (kh + 1) * group; h++)
                    {
                        float* pr = scores + (long)h * bt + c0 + (a - j0);
                        float* ah = acc + (long)h * accStride;
                        AttentionRange512.AccumulateRows(isa, pr, v, rs, m, hd, ah);
                    }
                }
            }
            c0 += j1 - j0;
        }
    }

    /// <summary>The rows after the current chunk: the rest of this page from <paramref name="next"/> (up to a chunk), or
    /// else the first chunk of the next page's visible rows; none (rows 0) at the end of the block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void NextChunk(KvPage* pages, int* pageStart, int pageCount, int pi, int next, int j1, int lo, int hi, int qpos,
        int chunk, bool key, out float* rows, out int count, out int stride)
    {
        if (next < j1)
        {
            var pg = pages[pi];
            rows = (float*)(key ? pg.K : pg.V) + (long)next * pg.RowStride; count = Math.Min(chunk, j1 - next); stride = pg.RowStride;
            return;
        }
        rows = null; count = 0; stride = 0;
        if (pi + 1 >= pageCount) return;
        var np = pages[pi + 1];
        int n0 = Math.Max(0, lo - pageStart[pi + 1]);
        int n1 = Math.Min(Math.Min(np.TokenCount, hi - pageStart[pi + 1]), qpos - np.StartPosition + 1);
        if (n1 <= n0) return;
        rows = (float*)(key ? np.K : np.V) + (long)n0 * np.RowStride; count = Math.Min(chunk, n1 - n0); stride = np.RowStride;
    }
}
