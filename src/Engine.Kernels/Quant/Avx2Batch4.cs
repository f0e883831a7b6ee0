// Owns: AVX2 kernels that dot ONE weight row with FOUR activation rows at once (the prefill / batched path):
// the weight block is decoded once and reused for the four activations. Types: Q4_0, Q8_0 (× Q8_0), Q2_K..Q6_K (× Q8_K).
// Invariants: per (row, token) the block sums and their float scaling are exactly those of the single-row kernels
// (Avx2Legacy / Avx2KQuants), so results match them up to float summation order.
// Source: same vec_dot scheme as the single-row kernels; the multi-activation tiling is ours.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Engine.Kernels.Quant;

internal static unsafe class Avx2Batch4
{
    private const int Q8KBytes = 292;

    /// <summary>The 4-activation kernel for a weight type, or null.</summary>
    public static delegate*<byte*, byte*, long, int, float*, void> For(Engine.Tensors.DType t, bool vnni) => t switch
    {
        Engine.Tensors.DType.Q4_0 => vnni ? &Q4_0<VnniDot> : &Q4_0<MaddDot>,
        Engine.Tensors.DType.Q8_0 => vnni ? &Q8_0<VnniDot> : &Q8_0<MaddDot>,
        Engine.Tensors.DType.Q4_K => &Q4_K,
        Engine.Tensors.DType.Q6_K => &Q6_K,
        Engine.Tensors.DType.Q5_K => &Q5_K,
        Engine.Tensors.DType.Q3_K => &Q3_K,
        Engine.Tensors.DType.Q2_K => &Q2_K,
        _ => null,
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Acc(Vector256<float> acc, float scale, Vector256<int> isum) =>
        Fma.MultiplyAdd(Vector256.Create(scale), Avx.ConvertToVector256Single(isum), acc);

    // out[t] = w · y_t for t < 4, y_t = y + t·ys (Q8_0 rows).
    // Summation order is exactly Avx2Legacy.Q4_0 / Q8_0's (even blocks into one accumulator, odd blocks into another,
    // an odd last block into the even one, then Sum(even + odd)), so a token's result is bitwise the single-row one.
    // This matters beyond float rounding: batched prefill and token-by-token decode must produce the same floats, or
    // a 1-ulp difference can flip a Q8 rounding of the next layer's activations and grow to ~0.5 % of the logits.
    public static void Q4_0<TDot>(byte* w, byte* y, long ys, int nb, float* o) where TDot : struct, IDotU8S8
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;   // even blocks
        Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default;   // odd blocks
        byte* y0 = y, y1 = y + ys, y2 = y + 2 * ys, y3 = y + 3 * ys;
        int b = 0;
        for (; b + 1 < nb; b += 2, w += 36)
        {
            long o34 = 34L * b;
            Q4_0Block<TDot>(w, y0 + o34, y1 + o34, y2 + o34, y3 + o34, ref a0, ref a1, ref a2, ref a3);
            Q4_0Block<TDot>(w + 18, y0 + o34 + 34, y1 + o34 + 34, y2 + o34 + 34, y3 + o34 + 34, ref b0, ref b1, ref b2, ref b3);
        }
        if (b < nb)
        {
            long o34 = 34L * b;
            Q4_0Block<TDot>(w, y0 + o34, y1 + o34, y2 + o34, y3 + o34, ref a0, ref a1, ref a2, ref a3);
        }
        o[0] = Vector256.Sum(a0 + b0); o[1] = Vector256.Sum(a1 + b1); o[2] = Vector256.Sum(a2 + b2); o[3] = Vector256.Sum(a3 + b3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q4_0Block<TDot>(byte* w, byte* y0, byte* y1, byte* y2, byte* y3,
        ref Vector256<float> a0, ref Vector256<float> a1, ref Vector256<float> a2, ref Vector256<float> a3) where TDot : struct, IDotU8S8
    {
        Vector256<sbyte> x = Avx2.Subtract(Avx2Legacy.Nibbles(w + 2).AsSByte(), Vector256.Create((sbyte)8));
        Vector256<byte> ax = Avx2.Abs(x);
        float dw = Fp16.Read(w);
        a0 = Acc(a0, dw * Fp16.Read(y0), TDot.Dot(ax, Avx2.Sign(Vector256.Load((sbyte*)(y0 + 2)), x)));
        a1 = Acc(a1, dw * Fp16.Read(y1), TDot.Dot(ax, Avx2.Sign(Vector256.Load((sbyte*)(y1 + 2)), x)));
        a2 = Acc(a2, dw * Fp16.Read(y2), TDot.Dot(ax, Avx2.Sign(Vector256.Load((sbyte*)(y2 + 2)), x)));
        a3 = Acc(a3, dw * Fp16.Read(y3), TDot.Dot(ax, Avx2.Sign(Vector256.Load((sbyte*)(y3 + 2)), x)));
    }

    public static void Q8_0<TDot>(byte* w, byte* y, long ys, int nb, float* o) where TDot : struct, IDotU8S8
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;   // even blocks
        Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default;   // odd blocks
        byte* y0 = y, y1 = y + ys, y2 = y + 2 * ys, y3 = y + 3 * ys;
        int b = 0;
        for (; b + 1 < nb; b += 2, w += 68)
        {
            long o34 = 34L * b;
            Q8_0Block<TDot>(w, y0 + o34, y1 + o34, y2 + o34, y3 + o34, ref a0, ref a1, ref a2, ref a3);
            Q8_0Block<TDot>(w + 34, y0 + o34 + 34, y1 + o34 + 34, y2 + o34 + 34, y3 + o34 + 34, ref b0, ref b1, ref b2, ref b3);
        }
        if (b < nb)
        {
            long o34 = 34L * b;
            Q8_0Block<TDot>(w, y0 + o34, y1 + o34, y2 + o34, y3 + o34, ref a0, ref a1, ref a2, ref a3);
        }
        o[0] = Vector256.Sum(a0 + b0); o[1] = Vector256.Sum(a1 + b1); o[2] = Vector256.Sum(a2 + b2); o[3] = Vector256.Sum(a3 + b3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q8_0Block<TDot>(byte* w, byte* y0, byte* y1, byte* y2, byte* y3,
        ref Vector256<float> a0, ref Vector256<float> a1, ref Vector256<float> a2, ref Vector256<float> a3) where TDot : struct, IDotU8S8
    {
        Vector256<sbyte> x = Vector256.Load((sbyte*)(w + 2));
        Vector256<byte> ax = Avx2.Abs(x);
        float dw = Fp16.Read(w);
        a0 = Acc(a0, dw * Fp16.Read(y0), TDot.Dot(ax, Avx2.Sign(Vector256.Load((sbyte*)(y0 + 2)), x)));
        a1 = Acc(a1, dw * Fp16.Read(y1), TDot.Dot(ax, Avx2.Sign(Vector256.Load((sbyte*)(y1 + 2)), x)));
        a2 = Acc(a2, dw * Fp16.Read(y2), TDot.Dot(ax, Avx2.Sign(Vector256.Load((sbyte*)(y2 + 2)), x)));
        a3 = Acc(a3, dw * Fp16.Read(y3), TDot.Dot(ax, Avx2.Sign(Vector256.Load((sbyte*)(y3 + 2)), x)));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Sd(Vector256<byte> u, sbyte* y, Vector256<short> scale) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, Vector256.Load(y)), scale);

    public static void Q4_K(byte* w, byte* y, long ys, int nb, float* o)
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        float m0 = 0, m1 = 0, m2 = 0, m3 = 0;
        Vector256<byte> mask4 = Vector256.Create((byte)0x0F);
        byte* y0 = y, y1 = y + ys, y2 = y + 2 * ys, y3 = y + 3 * ys;
        for (int b = 0; b < nb; b++, w += 144)
        {
            long ob = (long)Q8KBytes * b;
            KScaleWords.UnpackK4(w + 4, out uint sc03, out uint sc47, out uint mn03, out uint mn47);
            Vector128<short> mins = Sse41.ConvertToVector128Int16(Vector128.Create(mn03, mn47, 0u, 0u).AsByte());
            float d = Fp16.Read(w), dmin = Fp16.Read(w + 2);
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int g = 0; g < 4; g++)
            {
                uint word = g < 2 ? sc03 : sc47;
                int sh = 16 * (g & 1);
                Vector256<short> scLo = Vector256.Create((short)((word >> sh) & 0xFF));
                Vector256<short> scHi = Vector256.Create((short)((word >> (sh + 8)) & 0xFF));
                Vector256<byte> q = Vector256.Load(w + 16 + 32 * g);
                Vector256<byte> lo = q & mask4, hi = Vector256.ShiftRightLogical(q.AsUInt16(), 4).AsByte() & mask4;
                int e = 4 + 64 * g;
                s0 += Sd(lo, (sbyte*)(y0 + ob + e), scLo) + Sd(hi, (sbyte*)(y0 + ob + e + 32), scHi);
                s1 += Sd(lo, (sbyte*)(y1 + ob + e), scLo) + Sd(hi, (sbyte*)(y1 + ob + e + 32), scHi);
                s2 += Sd(lo, (sbyte*)(y2 + ob + e), scLo) + Sd(hi, (sbyte*)(y2 + ob + e + 32), scHi);
                s3 += Sd(lo, (sbyte*)(y3 + ob + e), scLo) + Sd(hi, (sbyte*)(y3 + ob + e + 32), scHi);
            }
            float dy0 = *(float*)(y0 + ob), dy1 = *(float*)(y1 + ob), dy2 = *(float*)(y2 + ob), dy3 = *(float*)(y3 + ob);
            a0 = Acc(a0, dy0 * d, s0); a1 = Acc(a1, dy1 * d, s1); a2 = Acc(a2, dy2 * d, s2); a3 = Acc(a3, dy3 * d, s3);
            m0 += dy0 * dmin * MinTerm(mins, (short*)(y0 + ob + 260));
            m1 += dy1 * dmin * MinTerm(mins, (short*)(y1 + ob + 260));
            m2 += dy2 * dmin * MinTerm(mins, (short*)(y2 + ob + 260));
            m3 += dy3 * dmin * MinTerm(mins, (short*)(y3 + ob + 260));
        }
        o[0] = Vector256.Sum(a0) - m0; o[1] = Vector256.Sum(a1) - m1; o[2] = Vector256.Sum(a2) - m2; o[3] = Vector256.Sum(a3) - m3;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int MinTerm(Vector128<short> mins, short* bsums) =>
        Vector128.Sum(Sse2.MultiplyAddAdjacent(mins, Ssse3.HorizontalAdd(Vector128.Load(bsums), Vector128.Load(bsums + 8))));

    public static void Q6_K(byte* w, byte* y, long ys, int nb, float* o)
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector256<byte> m4 = Vector256.Create((byte)0x0F), m30 = Vector256.Create((byte)0x30);
        Vector128<byte> pairBase = Vector128.Create(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, (byte)1);
        byte* y0 = y, y1 = y + ys, y2 = y + 2 * ys, y3 = y + 3 * ys;
        for (int b = 0; b < nb; b++, w += 210)
        {
            long ob = (long)Q8KBytes * b;
            Vector128<sbyte> scales = Vector128.Load((sbyte*)(w + 192));
            Vector256<short> sc16 = Avx2.ConvertToVector256Int16(scales);
            Vector256<int> s0 = -Bsum32(sc16, y0 + ob), s1 = -Bsum32(sc16, y1 + ob), s2 = -Bsum32(sc16, y2 + ob), s3 = -Bsum32(sc16, y3 + ob);
            for (int h = 0; h < 2; h++)
            {
                Vector256<byte> L = Vector256.Load(w + 64 * h), L2 = Vector256.Load(w + 64 * h + 32);
                Vector256<byte> H = Vector256.Load(w + 128 + 32 * h);
                for (int k = 0; k < 4; k++)
                {
                    Vector256<byte> q = k switch
                    {
                        0 => (L & m4) | (Vector256.ShiftLeft(H.AsUInt16(), 4).AsByte() & m30),
                        1 => (L2 & m4) | (Vector256.ShiftLeft(H.AsUInt16(), 2).AsByte() & m30),
                        2 => (Vector256.ShiftRightLogical(L.AsUInt16(), 4).AsByte() & m4) | (H & m30),
                        _ => (Vector256.ShiftRightLogical(L2.AsUInt16(), 4).AsByte() & m4) | (Vector256.ShiftRightLogical(H.AsUInt16(), 2).AsByte() & m30),
                    };
                    Vector128<byte> idx = pairBase + Vector128.Create((byte)(2 * (4 * h + k)));
                    Vector256<short> sc = Avx2.ConvertToVector256Int16(Ssse3.Shuffle(scales, idx.AsSByte()));
                    int e = 4 + 128 * h + 32 * k;
                    s0 += Sd(q, (sbyte*)(y0 + ob + e), sc);
                    s1 += Sd(q, (sbyte*)(y1 + ob + e), sc);
                    s2 += Sd(q, (sbyte*)(y2 + ob + e), sc);
                    s3 += Sd(q, (sbyte*)(y3 + ob + e), sc);
                }
            }
            float d = Fp16.Read(w + 208);
            a0 = Acc(a0, d * *(float*)(y0 + ob), s0); a1 = Acc(a1, d * *(float*)(y1 + ob), s1);
            a2 = Acc(a2, d * *(float*)(y2 + ob), s2); a3 = Acc(a3, d * *(float*)(y3 + ob), s3);
        }
        o[0] = Vector256.Sum(a0); o[1] = Vector256.Sum(a1); o[2] = Vector256.Sum(a2); o[3] = Vector256.Sum(a3);
    }

    /// <summary>32·(scales · bsums) as 8 int32 lanes (their sum is the Q6_K offset correction).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Bsum32(Vector256<short> sc16, byte* yBlock) =>
        Vector256.ShiftLeft(Avx2.MultiplyAddAdjacent(sc16, Vector256.Load((short*)(yBlock + 260))), 5);

    public static void Q5_K(byte* w, byte* y, long ys, int nb, float* o)
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        float m0 = 0, m1 = 0, m2 = 0, m3 = 0;
        Vector256<byte> mask4 = Vector256.Create((byte)0x0F), bit4 = Vector256.Create((byte)0x10);
        byte* y0 = y, y1 = y + ys, y2 = y + 2 * ys, y3 = y + 3 * ys;
        for (int b = 0; b < nb; b++, w += 176)
        {
            long ob = (long)Q8KBytes * b;
            KScaleWords.UnpackK4(w + 4, out uint sc03, out uint sc47, out uint mn03, out uint mn47);
            float d = Fp16.Read(w), dmin = Fp16.Read(w + 2);
            Vector256<byte> qh = Vector256.Load(w + 16);
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int g = 0; g < 4; g++)
            {
                uint word = g < 2 ? sc03 : sc47;
                int sh = 16 * (g & 1);
                Vector256<short> scLo = Vector256.Create((short)((word >> sh) & 0xFF));
                Vector256<short> scHi = Vector256.Create((short)((word >> (sh + 8)) & 0xFF));
                Vector256<byte> q = Vector256.Load(w + 48 + 32 * g);
                Vector256<byte> h0 = (2 * g <= 4 ? Avx2KQuants.Shl(qh, 4 - 2 * g) : Avx2KQuants.Shr(qh, 2 * g - 4)) & bit4;
                Vector256<byte> h1 = (2 * g + 1 <= 4 ? Avx2KQuants.Shl(qh, 3 - 2 * g) : Avx2KQuants.Shr(qh, 2 * g - 3)) & bit4;
                Vector256<byte> lo = (q & mask4) | h0, hi = (Avx2KQuants.Shr(q, 4) & mask4) | h1;
                int e = 4 + 64 * g;
                s0 += Sd(lo, (sbyte*)(y0 + ob + e), scLo) + Sd(hi, (sbyte*)(y0 + ob + e + 32), scHi);
                s1 += Sd(lo, (sbyte*)(y1 + ob + e), scLo) + Sd(hi, (sbyte*)(y1 + ob + e + 32), scHi);
                s2 += Sd(lo, (sbyte*)(y2 + ob + e), scLo) + Sd(hi, (sbyte*)(y2 + ob + e + 32), scHi);
                s3 += Sd(lo, (sbyte*)(y3 + ob + e), scLo) + Sd(hi, (sbyte*)(y3 + ob + e + 32), scHi);
            }
            float dy0 = *(float*)(y0 + ob), dy1 = *(float*)(y1 + ob), dy2 = *(float*)(y2 + ob), dy3 = *(float*)(y3 + ob);
            a0 = Acc(a0, dy0 * d, s0); a1 = Acc(a1, dy1 * d, s1); a2 = Acc(a2, dy2 * d, s2); a3 = Acc(a3, dy3 * d, s3);
            m0 += dy0 * dmin * Avx2KQuants.MinTermK4(mn03, mn47, (short*)(y0 + ob + 260));
            m1 += dy1 * dmin * Avx2KQuants.MinTermK4(mn03, mn47, (short*)(y1 + ob + 260));
            m2 += dy2 * dmin * Avx2KQuants.MinTermK4(mn03, mn47, (short*)(y2 + ob + 260));
            m3 += dy3 * dmin * Avx2KQuants.MinTermK4(mn03, mn47, (short*)(y3 + ob + 260));
        }
        o[0] = Vector256.Sum(a0) - m0; o[1] = Vector256.Sum(a1) - m1; o[2] = Vector256.Sum(a2) - m2; o[3] = Vector256.Sum(a3) - m3;
    }

    public static void Q2_K(byte* w, byte* y, long ys, int nb, float* o)
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        float m0 = 0, m1 = 0, m2 = 0, m3 = 0;
        Vector256<byte> mask3 = Vector256.Create((byte)3);
        byte* y0 = y, y1 = y + ys, y2 = y + 2 * ys, y3 = y + 3 * ys;
        for (int b = 0; b < nb; b++, w += 84)
        {
            long ob = (long)Q8KBytes * b;
            Vector128<byte> packed = Vector128.Load(w);
            Vector128<sbyte> scales = (packed & Vector128.Create((byte)0x0F)).AsSByte();
            Vector128<sbyte> mins = (Vector128.ShiftRightLogical(packed.AsUInt16(), 4).AsByte() & Vector128.Create((byte)0x0F)).AsSByte();
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int h = 0; h < 2; h++)
            {
                Vector256<byte> Q = Vector256.Load(w + 16 + 32 * h);
                for (int k = 0; k < 4; k++)
                {
                    Vector256<byte> q = Avx2KQuants.Shr(Q, 2 * k) & mask3;
                    Vector256<short> sc = Avx2KQuants.PairScales(scales, 4 * h + k);
                    int e = 4 + 128 * h + 32 * k;
                    s0 += Sd(q, (sbyte*)(y0 + ob + e), sc);
                    s1 += Sd(q, (sbyte*)(y1 + ob + e), sc);
                    s2 += Sd(q, (sbyte*)(y2 + ob + e), sc);
                    s3 += Sd(q, (sbyte*)(y3 + ob + e), sc);
                }
            }
            float d = Fp16.Read(w + 80), dmin = Fp16.Read(w + 82);
            float dy0 = *(float*)(y0 + ob), dy1 = *(float*)(y1 + ob), dy2 = *(float*)(y2 + ob), dy3 = *(float*)(y3 + ob);
            a0 = Acc(a0, dy0 * d, s0); a1 = Acc(a1, dy1 * d, s1); a2 = Acc(a2, dy2 * d, s2); a3 = Acc(a3, dy3 * d, s3);
            m0 += dy0 * dmin * Avx2KQuants.ScaleBsumTerm16(mins, (short*)(y0 + ob + 260));
            m1 += dy1 * dmin * Avx2KQuants.ScaleBsumTerm16(mins, (short*)(y1 + ob + 260));
            m2 += dy2 * dmin * Avx2KQuants.ScaleBsumTerm16(mins, (short*)(y2 + ob + 260));
            m3 += dy3 * dmin * Avx2KQuants.ScaleBsumTerm16(mins, (short*)(y3 + ob + 260));
        }
        o[0] = Vector256.Sum(a0) - m0; o[1] = Vector256.Sum(a1) - m1; o[2] = Vector256.Sum(a2) - m2; o[3] = Vector256.Sum(a3) - m3;
    }

    public static void Q3_K(byte* w, byte* y, long ys, int nb, float* o)
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector256<byte> mask3 = Vector256.Create((byte)3), bit2 = Vector256.Create((byte)4);
        byte* y0 = y, y1 = y + ys, y2 = y + 2 * ys, y3 = y + 3 * ys;
        for (int b = 0; b < nb; b++, w += 110)
        {
            long ob = (long)Q8KBytes * b;
            Vector128<sbyte> scales = Avx2KQuants.UnpackQ3Scales(w + 96);
            // − 4·Σ_i sc_i·bsum_i, put in lane 0 of each token's integer sum
            Vector256<int> s0 = Vector256.CreateScalar(-4 * Avx2KQuants.ScaleBsumTerm16(scales, (short*)(y0 + ob + 260)));
            Vector256<int> s1 = Vector256.CreateScalar(-4 * Avx2KQuants.ScaleBsumTerm16(scales, (short*)(y1 + ob + 260)));
            Vector256<int> s2 = Vector256.CreateScalar(-4 * Avx2KQuants.ScaleBsumTerm16(scales, (short*)(y2 + ob + 260)));
            Vector256<int> s3 = Vector256.CreateScalar(-4 * Avx2KQuants.ScaleBsumTerm16(scales, (short*)(y3 + ob + 260)));
            Vector256<byte> hm = Vector256.Load(w);
            for (int h = 0; h < 2; h++)
            {
                Vector256<byte> Q = Vector256.Load(w + 32 + 32 * h);
                for (int k = 0; k < 4; k++)
                {
                    int bit = 4 * h + k;
                    Vector256<byte> hb = (bit >= 2 ? Avx2KQuants.Shr(hm, bit - 2) : Avx2KQuants.Shl(hm, 2 - bit)) & bit2;
                    Vector256<byte> q = (Avx2KQuants.Shr(Q, 2 * k) & mask3) | hb;
                    Vector256<short> sc = Avx2KQuants.PairScales(scales, 4 * h + k);
                    int e = 4 + 128 * h + 32 * k;
                    s0 += Sd(q, (sbyte*)(y0 + ob + e), sc);
                    s1 += Sd(q, (sbyte*)(y1 + ob + e), sc);
                    s2 += Sd(q, (sbyte*)(y2 + ob + e), sc);
                    s3 += Sd(q, (sbyte*)(y3 + ob + e), sc);
                }
            }
            float d = Fp16.Read(w + 108);
            a0 = Acc(a0, d * *(float*)(y0 + ob), s0); a1 = Acc(a1, d * *(float*)(y1 + ob), s1);
            a2 = Acc(a2, d * *(float*)(y2 + ob), s2); a3 = Acc(a3, d * *(float*)(y3 + ob), s3);
        }
        o[0] = Vector256.Sum(a0); o[1] = Vector256.Sum(a1); o[2] = Vector256.Sum(a2); o[3] = Vector256.Sum(a3);
    }
}
