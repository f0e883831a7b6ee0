// Owns: reference quantizers for the K-quant super-blocks (Q2_K..Q6_K) and the activation type Q8_K.
// Invariants: always produce valid blocks (scales in range, quants clamped); not bit-identical to llama-quantize —
// Q2_K..Q6_K use round-to-nearest with a per-sub-block least-squares refit (asymmetric types: scale + min,
// symmetric types: scale), then the sub-block scales are quantized against one super-block scale. Q8_K follows
// ggml's reference rule exactly (d = −absmax/127 with sign, bsums = sums of 16 quants) because it is an activation type.
// Source: block layouts in ggml-common.h; Q8_K rule from quantize_row_q8_K_ref (ggml-quants.c); the K-quant search is ours.
using System.Buffers.Binary;

namespace Engine.Tensors.Quants;

public static partial class Quantize
{
    // Fits x ≈ scale·q − min (q in 0..nmax, min ≥ 0) for one sub-block: start from the range, then alternate
    // rounding and a least-squares fit of (scale, offset) a few times, keeping the best squared error.
    private static void FitAsymmetric(ReadOnlySpan<float> x, int nmax, out float scale, out float min)
    {
        float lo = 0, hi = 0;
        foreach (float f in x) { lo = MathF.Min(lo, f); hi = MathF.Max(hi, f); }
        scale = (hi - lo) / nmax; min = -lo;
        if (scale == 0) { min = -lo; return; }
        float bestErr = AsymError(x, nmax, scale, min);
        float s = scale, m = min;
        for (int it = 0; it < 4; it++)
        {
            // least squares of x = s·q + off over the current rounding (off = −m), with off ≤ 0
            double sq = 0, sqq = 0, sx = 0, sxq = 0; int n = x.Length;
            foreach (float f in x)
            {
                int q = Math.Clamp(Nearest((f + m) / s), 0, nmax);
                sq += q; sqq += (double)q * q; sx += f; sxq += (double)f * q;
            }
            double det = n * sqq - sq * sq;
            if (det <= 0) break;
            double ns = (n * sxq - sq * sx) / det, off = (sx - ns * sq) / n;
            if (off > 0) { off = 0; ns = sqq > 0 ? sxq / sqq : 0; }
            if (ns <= 0) break;
            s = (float)ns; m = (float)-off;
            float err = AsymError(x, nmax, s, m);
            if (err < bestErr) { bestErr = err; scale = s; min = m; } else break;
        }
    }

    private static float AsymError(ReadOnlySpan<float> x, int nmax, float s, float m)
    {
        float e = 0;
        foreach (float f in x) { int q = Math.Clamp(Nearest((f + m) / s), 0, nmax); float r = s * q - m - f; e += r * r; }
        return e;
    }

    // Fits x ≈ scale·q (q in −(nmax+1)..nmax) for one sub-block: the extreme maps to −(nmax+1), then one
    // least-squares refit of the scale over that rounding if it lowers the error.
    private static float FitSymmetric(ReadOnlySpan<float> x, int nmax)
    {
        float max = SignedAbsMax(x);
        if (max == 0) return 0;
        float scale = max / -(nmax + 1);
        float err = SymError(x, nmax, scale);
        double sxq = 0, sqq = 0;
        foreach (float f in x) { int q = Math.Clamp(Nearest(f / scale), -(nmax + 1), nmax); sxq += (double)f * q; sqq += (double)q * q; }
        if (sqq > 0)
        {
            float s2 = (float)(sxq / sqq);
            if (s2 != 0 && SymError(x, nmax, s2) < err) scale = s2;
        }
        return scale;
    }

    private static float SymError(ReadOnlySpan<float> x, int nmax, float s)
    {
        float e = 0;
        foreach (float f in x) { int q = Math.Clamp(Nearest(f / s), -(nmax + 1), nmax); float r = s * q - f; e += r * r; }
        return e;
    }

    // Quantizes per-sub-block (scale, min) pairs to `levels`-level unsigned codes against super-block d / dmin.
    private static void QuantizeScaleMins(ReadOnlySpan<float> scales, ReadOnlySpan<float> mins, int levels,
        Span<int> sc, Span<int> mn, out float d, out float dmin)
    {
        float maxS = 0, maxM = 0;
        for (int j = 0; j < scales.Length; j++) { maxS = MathF.Max(maxS, scales[j]); maxM = MathF.Max(maxM, mins[j]); }
        // Round through float16 first: the stored d is what dequantization uses.
        d = Dequant.HalfToFloat(Dequant.FloatToHalf(maxS / levels));
        dmin = Dequant.HalfToFloat(Dequant.FloatToHalf(maxM / levels));
        for (int j = 0; j < scales.Length; j++)
        {
            sc[j] = d > 0 ? Math.Clamp(Nearest(scales[j] / d), 0, levels) : 0;
            mn[j] = dmin > 0 ? Math.Clamp(Nearest(mins[j] / dmin), 0, levels) : 0;
        }
    }

    // Asymmetric quant of one element against effective scale ds and offset dm: q = clamp(round((x + dm)/ds)).
    private static int QAsym(float x, float ds, float dm, int nmax) => ds > 0 ? Math.Clamp(Nearest((x + dm) / ds), 0, nmax) : 0;

    // Q2_K: 16 sub-blocks of 16, 4-bit scale and min, 2-bit quants. Layout: scales[16] (scale | min << 4), qs[64], d, dmin.
    private static void BlockQ2_K(ReadOnlySpan<float> v, Span<byte> o)
    {
        Span<float> scales = stackalloc float[16], mins = stackalloc float[16];
        Span<int> sc = stackalloc int[16], mn = stackalloc int[16];
        for (int i = 0; i < 16; i++) FitAsymmetric(v.Slice(16 * i, 16), 3, out scales[i], out mins[i]);
        QuantizeScaleMins(scales, mins, 15, sc, mn, out float d, out float dmin);
        o.Clear();
        for (int i = 0; i < 16; i++) o[i] = (byte)(sc[i] | (mn[i] << 4));
        for (int e = 0; e < 256; e++)
        {
            int i = e / 16, h = e / 128, k = (e % 128) / 32, l = e % 32;
            int q = QAsym(v[e], d * sc[i], dmin * mn[i], 3);
            o[16 + 32 * h + l] |= (byte)(q << (2 * k));
        }
        WriteHalf(o, 80, d); WriteHalf(o, 82, dmin);
    }

    // Q3_K: 16 sub-blocks of 16, signed 6-bit scales, quants −4..3 (low 2 bits in qs, bit 2 in hmask).
    private static void BlockQ3_K(ReadOnlySpan<float> v, Span<byte> o)
    {
        Span<float> scales = stackalloc float[16];
        Span<int> sc = stackalloc int[16];
        float maxAbs = 0;
        for (int i = 0; i < 16; i++) { scales[i] = FitSymmetric(v.Slice(16 * i, 16), 3); maxAbs = MathF.Max(maxAbs, MathF.Abs(scales[i])); }
        float d = Dequant.HalfToFloat(Dequant.FloatToHalf(maxAbs / 31));
        for (int i = 0; i < 16; i++) sc[i] = d > 0 ? Math.Clamp(Nearest(scales[i] / d), -32, 31) : 0;
        o.Clear();
        KScales.PackScaleQ3K(sc, o.Slice(96, 12));
        for (int e = 0; e < 256; e++)
        {
            float ds = d * sc[e / 16];
            int q = ds != 0 ? Math.Clamp(Nearest(v[e] / ds), -4, 3) : 0;
            int u = q + 4, h = e / 128, k = (e % 128) / 32, l = e % 32;
            o[32 + 32 * h + l] |= (byte)((u & 3) << (2 * k));
            if ((u & 4) != 0) o[l] |= (byte)(1 << (4 * h + k));
        }
        WriteHalf(o, 108, d);
    }

    // Q4_K / Q5_K share the 8 × 32 sub-block structure with 6-bit scales and mins.
    private static void FitK4(ReadOnlySpan<float> v, int nmax, Span<int> sc, Span<int> mn, out float d, out float dmin)
    {
        Span<float> scales = stackalloc float[8], mins = stackalloc float[8];
        for (int j = 0; j < 8; j++) FitAsymmetric(v.Slice(32 * j, 32), nmax, out scales[j], out mins[j]);
        QuantizeScaleMins(scales, mins, 63, sc, mn, out d, out dmin);
    }

    private static void BlockQ4_K(ReadOnlySpan<float> v, Span<byte> o)
    {
        Span<int> sc = stackalloc int[8], mn = stackalloc int[8];
        FitK4(v, 15, sc, mn, out float d, out float dmin);
        o.Clear();
        WriteHalf(o, 0, d); WriteHalf(o, 2, dmin);
        KScales.PackScaleMinK4(sc, mn, o.Slice(4, 12));
        for (int e = 0; e < 256; e++)
        {
            int j = e / 32, g = e / 64, l = e % 32;
            int q = QAsym(v[e], d * sc[j], dmin * mn[j], 15);
            o[16 + 32 * g + l] |= (byte)(q << (j % 2 == 0 ? 0 : 4));
        }
    }

    private static void BlockQ5_K(ReadOnlySpan<float> v, Span<byte> o)
    {
        Span<int> sc = stackalloc int[8], mn = stackalloc int[8];
        FitK4(v, 31, sc, mn, out float d, out float dmin);
        o.Clear();
        WriteHalf(o, 0, d); WriteHalf(o, 2, dmin);
        KScales.PackScaleMinK4(sc, mn, o.Slice(4, 12));
        for (int e = 0; e < 256; e++)
        {
            int j = e / 32, g = e / 64, l = e % 32;
            int q = QAsym(v[e], d * sc[j], dmin * mn[j], 31);
            o[48 + 32 * g + l] |= (byte)((q & 0xF) << (j % 2 == 0 ? 0 : 4));
            if ((q & 16) != 0) o[16 + l] |= (byte)(1 << j);
        }
    }

    // Q6_K: 16 sub-blocks of 16, int8 scales, quants −32..31 (low 4 bits in ql, high 2 bits in qh).
    private static void BlockQ6_K(ReadOnlySpan<float> v, Span<byte> o)
    {
        Span<float> scales = stackalloc float[16];
        Span<int> sc = stackalloc int[16];
        float maxAbs = 0;
        for (int i = 0; i < 16; i++) { scales[i] = FitSymmetric(v.Slice(16 * i, 16), 31); maxAbs = MathF.Max(maxAbs, MathF.Abs(scales[i])); }
        float d = Dequant.HalfToFloat(Dequant.FloatToHalf(maxAbs / 127));
        for (int i = 0; i < 16; i++) sc[i] = d > 0 ? Math.Clamp(Nearest(scales[i] / d), -128, 127) : 0;
        o.Clear();
        for (int e = 0; e < 256; e++)
        {
            float ds = d * sc[e / 16];
            int q = (ds != 0 ? Math.Clamp(Nearest(v[e] / ds), -32, 31) : 0) + 32;
            int h = e / 128, quarter = (e % 128) / 32, l = e % 32;
            o[64 * h + l + (quarter % 2 == 1 ? 32 : 0)] |= (byte)((q & 0xF) << (quarter >= 2 ? 4 : 0));
            o[128 + 32 * h + l] |= (byte)((q >> 4) << (2 * quarter));
        }
        for (int i = 0; i < 16; i++) o[192 + i] = (byte)(sbyte)sc[i];
        WriteHalf(o, 208, d);
    }

    // Q8_K (activation type): iscale = −127/signed-absmax, q = min(127, nearest(iscale·x)), d = 1/iscale (float32),
    // bsums[i] = Σ q[16i .. 16i+16).
    private static void BlockQ8_K(ReadOnlySpan<float> v, Span<byte> o)
    {
        float max = SignedAbsMax(v);
        o.Clear();
        if (max == 0) return; // d = 0, all quants 0, bsums 0
        float iscale = -127f / max;
        for (int i = 0; i < 16; i++)
        {
            int sum = 0;
            for (int l = 0; l < 16; l++)
            {
                int q = Math.Min(127, Nearest(iscale * v[16 * i + l]));
                o[4 + 16 * i + l] = (byte)(sbyte)q;
                sum += q;
            }
            BinaryPrimitives.WriteInt16LittleEndian(o.Slice(260 + 2 * i, 2), (short)sum);
        }
        BinaryPrimitives.WriteSingleLittleEndian(o, 1 / iscale);
    }
}
