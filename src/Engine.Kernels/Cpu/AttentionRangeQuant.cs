// Owns: the vectorized attention item (one query row over a block of cached tokens) for page lists that hold Int8 and/or
// Int4 (KIVI) pages (and F16 pages), possibly mixed with F32 pages. Same contract as AttentionJob.Range: unnormalised
// acc_h = Σ_j e^{s_hj − max_h} v_j, sum_h = Σ_j e^{s_hj − max_h}, max_h; zero visible tokens → acc 0, sum 0, max −∞.
// Algorithm: quantized rows are dequantized a chunk of tokens × one KV head's segment at a time into an L1-sized float
// buffer (amortised over the query heads of the KV group), which the float32 inner loops then read as an F32 page would
// (AVX-512 hd = 64: four tokens' dots reduced together; hd = 64/128: register accumulators for Σ p·V; AVX2: four rows
// per dot loop, 32-channel slabs of register accumulators).
// Int8 (x = q8 · s per token × channel group): the chunk holds q8 · s, the same float products KvDecode gives. F16 pages
// take the same route (the chunk holds the exact floats of the halves).
// Int4 keys (x = k4 · s_c + m_c, scale/min per channel shared by a group of G tokens) use q·k = Σ (q_c s_c) k4_c + Σ q_c m_c:
// per token group and query head, q∘s and q·m are precomputed once, and the chunk holds the raw nibbles 0..15 as floats
// (no per-element scaling in the token loop). Int4 values: the chunk holds v4 · s + m (per token × channel group).
// Nibbles are unpacked to channel order with byte ops (and, shift, unpack-interleave) then zero-extended to int32;
// AVX-512 Int4 keys with hd % 32 == 0 skip the interleave: [16 low, 16 high] nibbles against q∘s stored in that order.
// While a chunk is processed, the next chunk's rows of the same KV head are software-prefetched: the per-head strided
// walk restarts every chunk, which the hardware prefetchers lose (measured: Int8 decode at 16K tokens 1.11× → 0.45× of
// F32, bench/Engine.Bench --cpu-ab-kvtier; prefetching changes no result).
// Widths: AVX-512 (isa.Use512), AVX2 (isa.Use256), scalar — chosen per call by the SimdWidth argument (CpuKernelOptions.MaxVectorBits), each exact to the
// same formulas; results equal the reference within float32 rounding (different summation order), as the contract allows.
// Applies when every page is F32/F16/Int8/Int4 (at least one not F32), the head dim is a multiple of 16 and every
// Int8/Int4 page's group size is a multiple of 16 (each 16-channel vector lies inside one scale group); other lists use
// AttentionJob.RangeGeneral.
// Source: KIVI (Liu et al., 2024) for the int4 layout; the q∘s / q·m factoring is the usual asymmetric-dequant identity.
namespace Engine.Kernels;

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

public static unsafe class AttentionRangeQuant
{
    /// <summary>True when this path handles the page list (see the file header) and it is on in <paramref name="options"/>
    /// (<see cref="CpuKernelOptions.AttentionQuant"/>).</summary>
    internal static bool Applies(CpuKernelOptions options, KvPage* pages, int count, int headDim)
    {
        if (!options.AttentionQuant || headDim % 16 != 0) return false;
        bool quantized = false;
        for (int i = 0; i < count; i++)
        {
            var t = pages[i].Type;
            if (t == KvElementType.F32) continue;
            if (t == KvElementType.F16) { quantized = true; continue; }
            if (t != KvElementType.Int8 && t != KvElementType.Int4) return false;
            if (pages[i].GroupSize <= 0 || pages[i].GroupSize % 16 != 0) return false;
            quantized = true;
        }
        return quantized;
    }

    /// <summary>Tokens per dequantized chunk: ≈ 16 KiB of floats (stays in L1), a multiple of 4.</summary>
    private static int ChunkTokens(int hd) => Math.Clamp((4096 / hd) & ~3, 4, 64);

    /// <summary>Per-thread work floats <see cref="Run"/> needs beside the scores: chunk, q∘s, q·m, s, m.</summary>
    internal static long WorkFloats(AttentionParams p) => (long)ChunkTokens(p.HeadDim) * p.HeadDim + (long)p.HeadCount * p.HeadDim + 3L * p.HeadDim + p.HeadCount + 64;

    /// <param name="q">[heads, hd] query row.</param>
    /// <param name="scores">[heads, bt] scratch.</param>
    /// <param name="acc">[heads] rows of <paramref name="accStride"/> floats.</param>
    /// <param name="work">64-byte aligned, <see cref="WorkFloats"/> floats.</param>
    /// <param name="mass">null, or [KvHeadCount, totalTokens] to add softmax weights to (one block per row only).</param>
    internal static void Run(SimdWidth isa, float* q, KvPage* pages, int* pageStart, int pageCount, int lo, int hi, int qpos,
        AttentionParams p, float* scores, int bt, float* max, float* sum, float* acc, int accStride, float* work, float* mass, int totalTokens)
    {
        int heads = p.HeadCount, hd = p.HeadDim, group = p.HeadCount / p.KvHeadCount, kvHeads = p.KvHeadCount;
        int chunk = ChunkTokens(hd);
        float scale = p.Scale;
        float* tmp = work;                                   // [chunk, hd] dequantized rows of one KV head
        float* qs = tmp + (long)chunk * hd;                  // [heads, hd] q∘s (Int4 keys, current token group)
        float* sv = qs + (long)heads * hd;                   // [hd] per-channel scales of one KV head
        float* mv = sv + hd;                                 // [hd] per-channel mins
        float* qm = mv + hd;                                 // [heads] q·m
        // AVX-512, hd % 32 == 0: Int4 key rows are unpacked per 32 channels as [16 even channels, 16 odd channels] (no
        // interleave shuffles in the token loop) and q∘s is stored in the same order once per token group.
        bool split = isa.Use512 && hd % 32 == 0;

        // Scores, page by page (c0 = logical index inside the block).
        int c0 = 0;
        for (int pi = 0; pi < pageCount; pi++)
        {
            var pg = pages[pi];
            int j0 = Math.Max(0, lo - pageStart[pi]);
            int j1 = Math.Min(Math.Min(pg.TokenCount, hi - pageStart[pi]), qpos - pg.StartPosition + 1);
            if (j1 <= j0) continue;
            long stride = pg.RowStride;
            switch (pg.Type)
            {
                case KvElementType.F32:
                    for (int h = 0; h < heads; h++)
                        ScoreRows(isa, q + (long)h * hd, (float*)pg.K + j0 * stride + (long)(h / group) * hd, (int)stride, j1 - j0, hd, 0f, scale,
                            scores + (long)h * bt + c0);
                    break;
                case KvElementType.Int8:
                case KvElementType.F16:
                    for (int a = j0; a < j1; a += chunk)
                    {
                        int m = Math.Min(chunk, j1 - a);
                        int next = Math.Min(chunk, j1 - a - m);        // rows of the next chunk, prefetched head segment by segment
                        int es = pg.Type == KvElementType.F16 ? 2 : 1;    // bytes per element
                        for (int kh = 0; kh < kvHeads; kh++)
                        {
                            if (next > 0) Prefetch((byte*)pg.K + ((a + m) * stride + kh * hd) * es, stride * es, next, hd * es);
                            if (es == 2) DequantF16(isa, pg, true, a, m, kh * hd, hd, tmp);
                            else DequantInt8(isa, pg, true, a, m, kh * hd, hd, tmp);
                            for (int h = kh * group; h < (kh + 1) * group; h++)
                                ScoreRows(isa, q + (long)h * hd, tmp, hd, m, hd, 0f, scale, scores + (long)h * bt + c0 + (a - j0));
                        }
                    }
                    break;
                default:                                      // Int4
                {
                    int g = pg.GroupSize;
                    for (int a = j0; a < j1;)
                    {
                        int gi = a / g, end = Math.Min(j1, (gi + 1) * g);
                        for (int kh = 0; kh < kvHeads; kh++)
                        {
                            KeyParams(isa, (float*)pg.KScale + (long)gi * stride * 2 + (long)kh * hd * 2, hd, sv, mv);
                            for (int h = kh * group; h < (kh + 1) * group; h++)
                            {
                                Simd.Map(isa, new MulScaleOp(1f), q + (long)h * hd, sv, qs + (long)h * hd, hd);
                                qm[h] = Simd.Dot(isa, q + (long)h * hd, mv, hd);
                                if (split) Deinterleave32(qs + (long)h * hd, hd);
                            }
                        }
                        for (int b = a; b < end; b += chunk)
                        {
                            int m = Math.Min(chunk, end - b), next = Math.Min(m, j1 - b - m);
                            for (int kh = 0; kh < kvHeads; kh++)
                            {
                                if (next > 0) Prefetch((byte*)pg.K + (b + m) * (stride / 2) + kh * hd / 2, stride / 2, next, hd / 2);
                                if (split) UnpackInt4Split(isa, (byte*)pg.K + b * (stride / 2) + kh * hd / 2, stride / 2, m, hd, tmp);
                                else UnpackInt4(isa, (byte*)pg.K + b * (stride / 2) + kh * hd / 2, stride / 2, m, hd, tmp);
                                for (int h = kh * group; h < (kh + 1) * group; h++)
                                    ScoreRows(isa, qs + (long)h * hd, tmp, hd, m, hd, qm[h], scale, scores + (long)h * bt + c0 + (b - j0));
                            }
                        }
                        a = end;
                    }
                    break;
                }
            }
            c0 += j1 - j0;
        }
        int count = c0;

        AttentionRange512.ExpScores(isa, scores, bt, heads, count, hd, max, sum, acc, accStride);
        if (count == 0) return;

        // Σ p·V per head.
        c0 = 0;
        for (int pi = 0; pi < pageCount; pi++)
        {
            var pg = pages[pi];
            int j0 = Math.Max(0, lo - pageStart[pi]);
            int j1 = Math.Min(Math.Min(pg.TokenCount, hi - pageStart[pi]), qpos - pg.StartPosition + 1);
            if (j1 <= j0) continue;
            long stride = pg.RowStride;
            if (pg.Type == KvElementType.F32)
                for (int h = 0; h < heads; h++)
                    AccumulateRows(isa, scores + (long)h * bt + c0, (float*)pg.V + j0 * stride + (long)(h / group) * hd, (int)stride, j1 - j0, hd, acc + (long)h * accStride);
            else
                for (int a = j0; a < j1; a += chunk)
                {
                    int m = Math.Min(chunk, j1 - a), next = Math.Min(chunk, j1 - a - m);
                    int rowBytes = pg.Type switch { KvElementType.Int8 => (int)stride, KvElementType.F16 => 2 * (int)stride, _ => (int)stride / 2 };
                    int segBytes = pg.Type switch { KvElementType.Int8 => hd, KvElementType.F16 => 2 * hd, _ => hd / 2 };
                    for (int kh = 0; kh < kvHeads; kh++)
                    {
                        if (next > 0) Prefetch((byte*)pg.V + (long)(a + m) * rowBytes + (long)kh * segBytes, rowBytes, next, segBytes);
                        if (pg.Type == KvElementType.Int8) DequantInt8(isa, pg, false, a, m, kh * hd, hd, tmp);
                        else if (pg.Type == KvElementType.F16) DequantF16(isa, pg, false, a, m, kh * hd, hd, tmp);
                        else DequantInt4Values(isa, pg, a, m, kh * hd, hd, tmp);
                        for (int h = kh * group; h < (kh + 1) * group; h++)
                            AccumulateRows(isa, scores + (long)h * bt + c0 + (a - j0), tmp, hd, m, hd, acc + (long)h * accStride);
                    }
                }
            c0 += j1 - j0;
        }

        if (mass == null) return;
        c0 = 0;
        for (int pi = 0; pi < pageCount; pi++)
        {
            var pg = pages[pi];
            int j0 = Math.Max(0, lo - pageStart[pi]);
            int j1 = Math.Min(Math.Min(pg.TokenCount, hi - pageStart[pi]), qpos - pg.StartPosition + 1);
            for (int j = j0; j < j1; j++, c0++)
                for (int h = 0; h < heads; h++)
                    mass[(long)(h / group) * totalTokens + pageStart[pi] + j] += scores[(long)h * bt + c0] / sum[h];
        }
    }

    /// <summary>Prefetch hint (all cache levels) for <paramref name="rows"/> segments of <paramref name="bytes"/> bytes,
    /// <paramref name="stride"/> bytes apart: the hardware prefetchers lose a strided walk that restarts per KV head.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Prefetch(byte* p, long stride, int rows, int bytes)
    {
        if (!Sse.IsSupported) return;
        for (int r = 0; r < rows; r++, p += stride)
            for (int f = 0; f < bytes; f += 64) Sse.Prefetch0(p + f);
    }

    /// <summary>sc[j] = (Σ_c qv[c] · k[j·stride + c] + bias) · scale for j &lt; n.</summary>
    private static void ScoreRows(SimdWidth isa, float* qv, float* k, int stride, int n, int hd, float bias, float scale, float* sc)
    {
        if (isa.Use512 && hd == 64)
        {
            var q0 = Vector512.Load(qv); var q1 = Vector512.Load(qv + 16);
            var q2 = Vector512.Load(qv + 32); var q3 = Vector512.Load(qv + 48);
            var vbias = Vector128.Create(bias); var vscale = Vector128.Create(scale);
            int j = 0;
            for (; j <= n - 4; j += 4, k += 4 * stride)
            {
                var a0 = AttentionRange512.Dot64(q0, q1, q2, q3, k);
                var a1 = AttentionRange512.Dot64(q0, q1, q2, q3, k + stride);
                var a2 = AttentionRange512.Dot64(q0, q1, q2, q3, k + 2 * stride);
                var a3 = AttentionRange512.Dot64(q0, q1, q2, q3, k + 3 * stride);
                ((AttentionRange512.Reduce4(a0, a1, a2, a3) + vbias) * vscale).Store(sc + j);
            }
            for (; j < n; j++, k += stride) sc[j] = (Vector512.Sum(AttentionRange512.Dot64(q0, q1, q2, q3, k)) + bias) * scale;
            return;
        }
        if (isa.Use256 && !isa.Use512 && Fma.IsSupported)
        {
            // AVX2: four rows at a time, eight lanes per step, one horizontal sum per row
            int j = 0;
            for (; j <= n - 4; j += 4, k += 4 * stride)
            {
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
                for (int c = 0; c < hd; c += 8)
                {
                    var x = Vector256.Load(qv + c);
                    a0 = Vector256.FusedMultiplyAdd(x, Vector256.Load(k + c), a0);
                    a1 = Vector256.FusedMultiplyAdd(x, Vector256.Load(k + stride + c), a1);
                    a2 = Vector256.FusedMultiplyAdd(x, Vector256.Load(k + 2 * stride + c), a2);
                    a3 = Vector256.FusedMultiplyAdd(x, Vector256.Load(k + 3 * stride + c), a3);
                }
                sc[j] = (Vector256.Sum(a0) + bias) * scale;
                sc[j + 1] = (Vector256.Sum(a1) + bias) * scale;
                sc[j + 2] = (Vector256.Sum(a2) + bias) * scale;
                sc[j + 3] = (Vector256.Sum(a3) + bias) * scale;
            }
            for (; j < n; j++, k += stride) sc[j] = (Simd.Dot(isa, qv, k, hd) + bias) * scale;
            return;
        }
        for (int j = 0; j < n; j++, k += stride) sc[j] = (Simd.Dot(isa, qv, k, hd) + bias) * scale;
    }

    /// <summary>acc[c] += Σ_j p[j] · v[j·stride + c] for j &lt; n.</summary>
    private static void AccumulateRows(SimdWidth isa, float* pr, float* v, int stride, int n, int hd, float* acc)
    {
        if (isa.Use512 && hd == 64) { AttentionRange512.Accumulate4(pr, v, stride, n, acc); return; }
        if (isa.Use512 && hd == 128) { AttentionRange512.Accumulate8(pr, v, stride, n, acc); return; }
        if (isa.Use256 && !isa.Use512 && Fma.IsSupported && hd % 32 == 0)
        {
            // AVX2: 32-channel slabs with the four accumulators in registers
            for (int c = 0; c < hd; c += 32)
            {
                var a0 = Vector256.Load(acc + c); var a1 = Vector256.Load(acc + c + 8);
                var a2 = Vector256.Load(acc + c + 16); var a3 = Vector256.Load(acc + c + 24);
                float* x = v + c;
                for (int j = 0; j < n; j++, x += stride)
                {
                    var w = Vector256.Create(pr[j]);
                    a0 = Vector256.FusedMultiplyAdd(w, Vector256.Load(x), a0);
                    a1 = Vector256.FusedMultiplyAdd(w, Vector256.Load(x + 8), a1);
                    a2 = Vector256.FusedMultiplyAdd(w, Vector256.Load(x + 16), a2);
                    a3 = Vector256.FusedMultiplyAdd(w, Vector256.Load(x + 24), a3);
                }
                a0.Store(acc + c); a1.Store(acc + c + 8); a2.Store(acc + c + 16); a3.Store(acc + c + 24);
            }
            return;
        }
        for (int j = 0; j < n; j++) Simd.Axpy(isa, pr[j], v + (long)j * stride, acc, hd);
    }

    /// <summary>dst[r, c] = q8[a + r, c0 + c] · s[a + r, (c0 + c) / G] for r &lt; m, c &lt; hd (the products KvDecode gives).</summary>
    private static void DequantInt8(SimdWidth isa, in KvPage pg, bool key, int a, int m, int c0, int hd, float* dst)
    {
        long stride = pg.RowStride;
        int g = pg.GroupSize, groups = (int)(stride / g);
        sbyte* data = (sbyte*)(key ? pg.K : pg.V);
        float* scales = (float*)(key ? pg.KScale : pg.VScale);
        int gFirst = c0 / g, gLeft = g - c0 % g;                  // group of channel c0; its channels from c0 on
        for (int r = 0; r < m; r++, dst += hd)
        {
            sbyte* row = data + (a + r) * stride + c0;
            float* sc = scales + (long)(a + r) * groups;
            int c = 0;
            if (isa.Use512)
                for (int gi = gFirst, left = gLeft; c < hd; c += 16, left -= 16)
                {
                    if (left == 0) { gi++; left = g; }                // g % 16 == 0: a vector never straddles groups
                    var x = Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load(row + c)));
                    (x * Vector512.Create(sc[gi])).Store(dst + c);
                }
            else if (isa.Use256 && Avx2.IsSupported)
                for (int gi = gFirst, left = gLeft; c < hd; c += 8, left -= 8)
                {
                    if (left == 0) { gi++; left = g; }
                    var x = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(row + c));
                    (x * Vector256.Create(sc[gi])).Store(dst + c);
                }
            for (; c < hd; c++) dst[c] = row[c] * sc[(c0 + c) / g];
        }
    }

    /// <summary>dst[r, c] = half K or V element [a + r, c0 + c] as a float (exact), r &lt; m, c &lt; hd.</summary>
    private static void DequantF16(SimdWidth isa, in KvPage pg, bool key, int a, int m, int c0, int hd, float* dst)
    {
        ushort* row = (ushort*)(key ? pg.K : pg.V) + (a * (long)pg.RowStride + c0);
        for (int r = 0; r < m; r++, row += pg.RowStride, dst += hd) HalfConvert.F16ToFloat(isa, row, dst, hd);
    }

    /// <summary>dst[r, c] = v4[a + r, c0 + c] · s + m with (s, m) of (token a + r, channel group (c0 + c) / G).</summary>
    private static void DequantInt4Values(SimdWidth isa, in KvPage pg, int a, int m, int c0, int hd, float* dst)
    {
        long stride = pg.RowStride;
        int g = pg.GroupSize, groups = (int)(stride / g);
        int gFirst = c0 / g, gLeft = g - c0 % g;
        for (int r = 0; r < m; r++, dst += hd)
        {
            byte* row = (byte*)pg.V + (a + r) * (stride / 2) + c0 / 2;
            float* prm = (float*)pg.VScale + (long)(a + r) * groups * 2;
            int c = 0;
            if (isa.Use512)
                for (int gi = gFirst, left = gLeft; c < hd; c += 16, left -= 16)
                {
                    if (left == 0) { gi++; left = g; }
                    (Nibbles16(row + c / 2) * Vector512.Create(prm[2 * gi]) + Vector512.Create(prm[2 * gi + 1])).Store(dst + c);
                }
            else
            {
                Unpack16(isa, row, hd, dst);
                if (isa.Use256)
                    for (int gi = gFirst, left = gLeft; c < hd; c += 8, left -= 8)
                    {
                        if (left == 0) { gi++; left = g; }
                        (Vector256.Load(dst + c) * Vector256.Create(prm[2 * gi]) + Vector256.Create(prm[2 * gi + 1])).Store(dst + c);
                    }
            }
            for (; c < hd; c++)
            {
                int gi = (c0 + c) / g;
                dst[c] = dst[c] * prm[2 * gi] + prm[2 * gi + 1];
            }
        }
    }

    /// <summary>dst[r, c] = nibble c of row r (rows <paramref name="rowBytes"/> apart) as a float 0..15, r &lt; m, c &lt; hd.</summary>
    private static void UnpackInt4(SimdWidth isa, byte* src, long rowBytes, int m, int hd, float* dst)
    {
        for (int r = 0; r < m; r++, src += rowBytes, dst += hd) Unpack16(isa, src, hd, dst);
    }

    /// <summary>dst[c] = nibble c of <paramref name="src"/> (even channel in the low nibble) as a float, c &lt; hd (a multiple of 16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Unpack16(SimdWidth isa, byte* src, int hd, float* dst)
    {
        int c = 0;
        if (isa.Use512 || (isa.Use256 && Avx2.IsSupported))
        {
            var mask = Vector128.Create((byte)15);
            for (; c < hd; c += 16)
            {
                var b = Vector128.CreateScalar(*(ulong*)(src + c / 2)).AsByte();          // 8 bytes = channels c..c+15
                var lo = b & mask;
                var hi = Sse2.ShiftRightLogical(b.AsUInt16(), 4).AsByte() & mask;
                var x = Sse2.UnpackLow(lo, hi);                                           // channel order
                if (isa.Use512)
                    Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(x)).Store(dst + c);
                else
                {
                    Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(x)).Store(dst + c);
                    Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(x, 8))).Store(dst + c + 8);
                }
            }
        }
        for (; c < hd; c++) dst[c] = (src[c >> 1] >> ((c & 1) * 4)) & 15;
    }

    /// <summary>Per 32 floats of x[hd]: [x0, x1, …, x31] → [x0, x2, …, x30, x1, x3, …, x31] (AVX-512, hd % 32 == 0).</summary>
    private static void Deinterleave32(float* x, int hd)
    {
        var even = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        var odd = even + Vector512<int>.One;
        for (int c = 0; c < hd; c += 32)
        {
            var a = Vector512.Load(x + c); var b = Vector512.Load(x + c + 16);
            Avx512F.PermuteVar16x32x2(a, even, b).Store(x + c);
            Avx512F.PermuteVar16x32x2(a, odd, b).Store(x + c + 16);
        }
    }

    /// <summary>Int4 rows as floats 0..15 in the split order of <see cref="Deinterleave32"/>: per 32 channels the 16 low
    /// nibbles (even channels) then the 16 high nibbles (AVX-512, hd % 32 == 0).</summary>
    private static void UnpackInt4Split(SimdWidth isa, byte* src, long rowBytes, int m, int hd, float* dst)
    {
        var mask = Vector512.Create(15);
        for (int r = 0; r < m; r++, src += rowBytes, dst += hd)
            for (int c = 0; c < hd; c += 32)
            {
                var x = Avx512F.ConvertToVector512Int32(Vector128.Load(src + c / 2));     // 16 bytes, zero-extended
                Avx512F.ConvertToVector512Single(x & mask).Store(dst + c);
                Avx512F.ConvertToVector512Single(Avx512F.ShiftRightLogical(x, 4)).Store(dst + c + 16);
            }
    }

    /// <summary>The 16 nibbles of 8 bytes at <paramref name="src"/> in channel order (even channel = low nibble) as floats (AVX-512).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Nibbles16(byte* src)
    {
        var b = Vector128.CreateScalar(*(ulong*)src).AsByte();
        var mask = Vector128.Create((byte)15);
        var x = Sse2.UnpackLow(b & mask, Sse2.ShiftRightLogical(b.AsUInt16(), 4).AsByte() & mask);
        return Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(x));
    }

    /// <summary>Int4 key parameters of one KV head and token group: prm = [hd, (scale, min)] → sv[hd], mv[hd].</summary>
    private static void KeyParams(SimdWidth isa, float* prm, int hd, float* sv, float* mv)
    {
        int c = 0;
        if (isa.Use512)
        {
            var even = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            var odd = even + Vector512<int>.One;
            for (; c < hd; c += 16)
            {
                var x0 = Vector512.Load(prm + 2 * c); var x1 = Vector512.Load(prm + 2 * c + 16);
                Avx512F.PermuteVar16x32x2(x0, even, x1).Store(sv + c);
                Avx512F.PermuteVar16x32x2(x0, odd, x1).Store(mv + c);
            }
        }
        for (; c < hd; c++) { sv[c] = prm[2 * c]; mv[c] = prm[2 * c + 1]; }
    }
}
