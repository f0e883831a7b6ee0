// Owns: quantization of float32 activation rows to Q8_0 / Q8_1 / Q8_K for the quantized dot products.
// Invariants: output is bit-identical to the reference Quantize.Row for the same type (tests check it, including
// rounding ties): Q8_0/Q8_1 round half away from zero (C roundf), Q8_K rounds half to even (ggml nearest_int);
// no allocation. The AVX2 path vectorises the per-block max, scaling, rounding and narrowing; other machines use
// the reference quantizer.
// Source: ggml's quantize_row_q8_0 / q8_1 / q8_K reference rules (see Engine.Tensors.Quants.Quantize).
using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Engine.Tensors;
using Engine.Tensors.Quants;

namespace Engine.Kernels.Quant;

internal static unsafe class ActivationQuantizer
{
    public static void Row(DType activationType, ReadOnlySpan<float> x, Span<byte> dst) =>
        Row(activationType, x, dst, QuantDot.BestPath);

    public static void Row(DType activationType, ReadOnlySpan<float> x, Span<byte> dst, QuantKernelPath path)
    {
        if (path == QuantKernelPath.Scalar || !Avx2.IsSupported) { Quantize.Row(activationType, x, dst); return; }
        fixed (float* px = x)
        fixed (byte* pd = dst)
        {
            switch (activationType)
            {
                case DType.Q8_0: for (int b = 0; b < x.Length / 32; b++) Q8Block(px + 32 * b, pd + 34 * b, withSum: false); break;
                case DType.Q8_1: for (int b = 0; b < x.Length / 32; b++) Q8Block(px + 32 * b, pd + 36 * b, withSum: true); break;
                case DType.Q8_K: for (int b = 0; b < x.Length / 256; b++) Q8KBlock(px + 256 * b, pd + 292 * b); break;
                default: Quantize.Row(activationType, x, dst); break;
            }
        }
    }

    private static readonly Vector256<float> AbsMask = Vector256.Create(0x7fffffff).AsSingle();

    /// <summary>C roundf: round half away from zero, exactly (trunc, then add ±1 when the dropped part is ≥ 0.5).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> RoundAway(Vector256<float> v)
    {
        Vector256<float> t = Avx.RoundToZero(v);
        Vector256<float> frac = Avx.And(v - t, AbsMask);
        Vector256<float> one = Avx.Or(Vector256.Create(1f), Avx.AndNot(AbsMask, v)); // ±1 with v's sign
        Vector256<float> bump = Avx.And(Avx.CompareGreaterThanOrEqual(frac, Vector256.Create(0.5f)), one);
        return Avx.ConvertToVector256Int32WithTruncation(t + bump);
    }

    // Q8_0 (34 B: half d, i8 qs[32]) or Q8_1 (36 B: half d, half s, i8 qs[32]).
    private static void Q8Block(float* x, byte* o, bool withSum)
    {
        Vector256<float> v0 = Vector256.Load(x), v1 = Vector256.Load(x + 8), v2 = Vector256.Load(x + 16), v3 = Vector256.Load(x + 24);
        Vector256<float> m = Avx.Max(Avx.Max(Avx.And(v0, AbsMask), Avx.And(v1, AbsMask)), Avx.Max(Avx.And(v2, AbsMask), Avx.And(v3, AbsMask)));
        Vector128<float> m128 = Sse.Max(m.GetLower(), m.GetUpper());
        m128 = Sse.Max(m128, Sse.Shuffle(m128, m128, 0b01_00_11_10));
        m128 = Sse.Max(m128, Sse.Shuffle(m128, m128, 0b10_11_00_01));
        float amax = m128.ToScalar();
        float d = amax / 127, id = d != 0 ? 1 / d : 0;
        Vector256<float> vid = Vector256.Create(id);
        Vector256<int> q0 = RoundAway(v0 * vid), q1 = RoundAway(v1 * vid), q2 = RoundAway(v2 * vid), q3 = RoundAway(v3 * vid);
        Vector256<sbyte> q = Vector256.Narrow(Vector256.Narrow(q0, q1), Vector256.Narrow(q2, q3));
        BinaryPrimitives.WriteUInt16LittleEndian(new Span<byte>(o, 2), Dequant.FloatToHalf(d));
        if (withSum)
        {
            int sum = Vector256.Sum(q0 + q1 + q2 + q3);
            BinaryPrimitives.WriteUInt16LittleEndian(new Span<byte>(o + 2, 2), Dequant.FloatToHalf(sum * d));
            q.Store((sbyte*)(o + 4));
        }
        else q.Store((sbyte*)(o + 2));
    }

    // Q8_K (292 B: float d, i8 qs[256], i16 bsums[16]).
    private static void Q8KBlock(float* x, byte* o)
    {
        Vector256<float> m = Vector256<float>.Zero;
        for (int i = 0; i < 256; i += 8) m = Avx.Max(m, Avx.And(Vector256.Load(x + i), AbsMask));
        Vector128<float> m128 = Sse.Max(m.GetLower(), m.GetUpper());
        m128 = Sse.Max(m128, Sse.Shuffle(m128, m128, 0b01_00_11_10));
        m128 = Sse.Max(m128, Sse.Shuffle(m128, m128, 0b10_11_00_01));
        float amax = m128.ToScalar();
        if (amax == 0) { new Span<byte>(o, 292).Clear(); return; }
        // The reference keeps the sign of the first element whose magnitude is amax.
        float max = 0;
        Vector256<float> va = Vector256.Create(amax);
        for (int i = 0; i < 256; i += 8)
        {
            uint hits = Vector256.ExtractMostSignificantBits(Avx.CompareEqual(Avx.And(Vector256.Load(x + i), AbsMask), va));
            if (hits != 0) { max = x[i + System.Numerics.BitOperations.TrailingZeroCount(hits)]; break; }
        }
        float iscale = -127f / max;
        Vector256<float> vs = Vector256.Create(iscale);
        Vector256<int> lim = Vector256.Create(127);
        short* bsums = (short*)(o + 260);
        for (int i = 0; i < 256; i += 16)
        {
            Vector256<int> a = Avx2.Min(Avx.ConvertToVector256Int32(Avx.RoundToNearestInteger(Vector256.Load(x + i) * vs)), lim);
            Vector256<int> b = Avx2.Min(Avx.ConvertToVector256Int32(Avx.RoundToNearestInteger(Vector256.Load(x + i + 8) * vs)), lim);
            Vector128<sbyte> q = Vector128.Narrow(Vector256.Narrow(a, b).GetLower(), Vector256.Narrow(a, b).GetUpper());
            q.Store((sbyte*)(o + 4 + i));
            bsums[i / 16] = (short)Vector256.Sum(a + b);
        }
        *(float*)o = 1 / iscale;
    }
}
