// Owns: AVX2 single-row dot kernels for the K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) × Q8_K activations.
// Invariants: weights are unpacked to unsigned quants (offsets such as −32 for Q6_K and −4 for Q3_K are applied
// afterwards through the activation's bsums), multiplied with maddubs (u8·s8 → i16 pairs, never saturating:
// u ≤ 63, |y| ≤ 127) and then with the sub-block scale by madd (i16·i16 → i32). All integer sums per super-block
// are exact; one float scaling per super-block — the same sums as ScalarDot.
// Source: the ggml-cpu x86 K-quant vec_dot scheme, re-implemented.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Engine.Kernels.Quant;

internal static unsafe class Avx2KQuants
{
    private const int Q8KBytes = 292;

    /// <summary>maddubs(u, y) then madd with one scale for all lanes → 8 int32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> ScaledDot32(Vector256<byte> u, sbyte* y, short s)
    {
        Vector256<short> p = Avx2.MultiplyAddAdjacent(u, Vector256.Load(y));
        return Avx2.MultiplyAddAdjacent(p, Vector256.Create(s));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<byte> Shr(Vector256<byte> v, int n) => Vector256.ShiftRightLogical(v.AsUInt16(), n).AsByte();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<byte> Shl(Vector256<byte> v, int n) => Vector256.ShiftLeft(v.AsUInt16(), n).AsByte();

    /// <summary>Σ_j mins[j]·(bsum[2j] + bsum[2j+1]) for the 8 sub-blocks of 32 (Q4_K/Q5_K min term).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int MinTermK4(uint mn03, uint mn47, short* bsums)
    {
        Vector128<short> mins = Sse41.ConvertToVector128Int16(Vector128.Create(mn03, mn47, 0u, 0u).AsByte());
        Vector128<short> pairs = Ssse3.HorizontalAdd(Vector128.Load(bsums), Vector128.Load(bsums + 8)); // [8] sub-block sums
        return Vector128.Sum(Sse2.MultiplyAddAdjacent(mins, pairs));
    }

    /// <summary>Σ_i scales[i]·bsum[i] over 16 sub-blocks of 16, scales as 16 signed bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int ScaleBsumTerm16(Vector128<sbyte> scales, short* bsums) =>
        Vector256.Sum(Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(scales), Vector256.Load(bsums)));

    /// <summary>Scale vector for the 32 elements of sub-block pair p: 16-bit lanes 0..7 = scales[2p], 8..15 = scales[2p+1].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<short> PairScales(Vector128<sbyte> scales, int p)
    {
        Vector128<byte> idx = Vector128.Create(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, (byte)1) + Vector128.Create((byte)(2 * p));
        return Avx2.ConvertToVector256Int16(Ssse3.Shuffle(scales, idx.AsSByte()));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> ScaledDot(Vector256<byte> u, sbyte* y, Vector256<short> scales) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, Vector256.Load(y)), scales);

    public static float Q4_K(byte* w, byte* y, int nb)
    {
        Vector256<float> acc = Vector256<float>.Zero;
        float accm = 0;
        Vector256<byte> m4 = Vector256.Create((byte)0x0F);
        for (int b = 0; b < nb; b++, w += 144, y += Q8KBytes)
        {
            KScaleWords.UnpackK4(w + 4, out uint sc03, out uint sc47, out uint mn03, out uint mn47);
            int msum = MinTermK4(mn03, mn47, (short*)(y + 260));
            sbyte* qy = (sbyte*)(y + 4);
            byte* qs = w + 16;
            Vector256<int> sumi = Vector256<int>.Zero;
            for (int g = 0; g < 4; g++)
            {
                uint word = g < 2 ? sc03 : sc47;
                int sh = 16 * (g & 1);
                Vector256<byte> q = Vector256.Load(qs + 32 * g);
                sumi += ScaledDot32(q & m4, qy + 64 * g, (short)((word >> sh) & 0xFF));
                sumi += ScaledDot32(Shr(q, 4) & m4, qy + 64 * g + 32, (short)((word >> (sh + 8)) & 0xFF));
            }
            float dy = *(float*)y;
            acc = Fma.MultiplyAdd(Vector256.Create(dy * Fp16.Read(w)), Avx.ConvertToVector256Single(sumi), acc);
            accm += dy * Fp16.Read(w + 2) * msum;
        }
        return Vector256.Sum(acc) - accm;
    }

    public static float Q5_K(byte* w, byte* y, int nb)
    {
        Vector256<float> acc = Vector256<float>.Zero;
        float accm = 0;
        Vector256<byte> m4 = Vector256.Create((byte)0x0F), bit4 = Vector256.Create((byte)0x10);
        for (int b = 0; b < nb; b++, w += 176, y += Q8KBytes)
        {
            KScaleWords.UnpackK4(w + 4, out uint sc03, out uint sc47, out uint mn03, out uint mn47);
            int msum = MinTermK4(mn03, mn47, (short*)(y + 260));
            sbyte* qy = (sbyte*)(y + 4);
            byte* qs = w + 48;
            Vector256<byte> qh = Vector256.Load(w + 16);
            Vector256<int> sumi = Vector256<int>.Zero;
            for (int g = 0; g < 4; g++)
            {
                uint word = g < 2 ? sc03 : sc47;
                int sh = 16 * (g & 1);
                Vector256<byte> q = Vector256.Load(qs + 32 * g);
                // bit 2g of qh → 0x10 for the low nibbles, bit 2g+1 → 0x10 for the high nibbles
                Vector256<byte> h0 = (2 * g <= 4 ? Shl(qh, 4 - 2 * g) : Shr(qh, 2 * g - 4)) & bit4;
                Vector256<byte> h1 = (2 * g + 1 <= 4 ? Shl(qh, 3 - 2 * g) : Shr(qh, 2 * g - 3)) & bit4;
                sumi += ScaledDot32((q & m4) | h0, qy + 64 * g, (short)((word >> sh) & 0xFF));
                sumi += ScaledDot32((Shr(q, 4) & m4) | h1, qy + 64 * g + 32, (short)((word >> (sh + 8)) & 0xFF));
            }
            float dy = *(float*)y;
            acc = Fma.MultiplyAdd(Vector256.Create(dy * Fp16.Read(w)), Avx.ConvertToVector256Single(sumi), acc);
            accm += dy * Fp16.Read(w + 2) * msum;
        }
        return Vector256.Sum(acc) - accm;
    }

    // Q6_K: unsigned q (0..63) · y, then − 32·Σ_i sc_i·bsum_i.
    public static float Q6_K(byte* w, byte* y, int nb)
    {
        Vector256<float> acc = Vector256<float>.Zero;
        Vector256<byte> m4 = Vector256.Create((byte)0x0F), m30 = Vector256.Create((byte)0x30);
        for (int b = 0; b < nb; b++, w += 210, y += Q8KBytes)
        {
            Vector128<sbyte> scales = Vector128.Load((sbyte*)(w + 192));
            int corr = ScaleBsumTerm16(scales, (short*)(y + 260));
            sbyte* qy = (sbyte*)(y + 4);
            Vector256<int> sumi = Vector256<int>.Zero;
            for (int h = 0; h < 2; h++)
            {
                Vector256<byte> L = Vector256.Load(w + 64 * h), L2 = Vector256.Load(w + 64 * h + 32);
                Vector256<byte> H = Vector256.Load(w + 128 + 32 * h);
                Vector256<byte> q0 = (L & m4) | (Shl(H, 4) & m30);
                Vector256<byte> q1 = (L2 & m4) | (Shl(H, 2) & m30);
                Vector256<byte> q2 = (Shr(L, 4) & m4) | (H & m30);
                Vector256<byte> q3 = (Shr(L2, 4) & m4) | (Shr(H, 2) & m30);
                sbyte* yy = qy + 128 * h;
                sumi += ScaledDot(q0, yy, PairScales(scales, 4 * h));
                sumi += ScaledDot(q1, yy + 32, PairScales(scales, 4 * h + 1));
                sumi += ScaledDot(q2, yy + 64, PairScales(scales, 4 * h + 2));
                sumi += ScaledDot(q3, yy + 96, PairScales(scales, 4 * h + 3));
            }
            float dd = *(float*)y * Fp16.Read(w + 208);
            acc = Fma.MultiplyAdd(Vector256.Create(dd), Avx.ConvertToVector256Single(sumi - Vector256.CreateScalar(32 * corr)), acc);
        }
        return Vector256.Sum(acc);
    }

    public static float Q2_K(byte* w, byte* y, int nb)
    {
        Vector256<float> acc = Vector256<float>.Zero;
        float accm = 0;
        Vector256<byte> m3 = Vector256.Create((byte)3);
        for (int b = 0; b < nb; b++, w += 84, y += Q8KBytes)
        {
            Vector128<byte> packed = Vector128.Load(w);
            Vector128<sbyte> scales = (packed & Vector128.Create((byte)0x0F)).AsSByte();
            Vector128<sbyte> mins = Vector128.ShiftRightLogical(packed.AsUInt16(), 4).AsByte().AsSByte() & Vector128.Create((sbyte)0x0F);
            int msum = ScaleBsumTerm16(mins, (short*)(y + 260));
            sbyte* qy = (sbyte*)(y + 4);
            Vector256<int> sumi = Vector256<int>.Zero;
            for (int h = 0; h < 2; h++)
            {
                Vector256<byte> Q = Vector256.Load(w + 16 + 32 * h);
                sbyte* yy = qy + 128 * h;
                sumi += ScaledDot(Q & m3, yy, PairScales(scales, 4 * h));
                sumi += ScaledDot(Shr(Q, 2) & m3, yy + 32, PairScales(scales, 4 * h + 1));
                sumi += ScaledDot(Shr(Q, 4) & m3, yy + 64, PairScales(scales, 4 * h + 2));
                sumi += ScaledDot(Shr(Q, 6) & m3, yy + 96, PairScales(scales, 4 * h + 3));
            }
            float dy = *(float*)y;
            acc = Fma.MultiplyAdd(Vector256.Create(dy * Fp16.Read(w + 80)), Avx.ConvertToVector256Single(sumi), acc);
            accm += dy * Fp16.Read(w + 82) * msum;
        }
        return Vector256.Sum(acc) - accm;
    }

    /// <summary>Unpacks the 16 signed 6-bit Q3_K scales (stored +32) from 12 bytes (same bits as KScales.ScaleQ3K).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<sbyte> UnpackQ3Scales(byte* s)
    {
        uint a0 = *(uint*)s, a1 = *(uint*)(s + 4), t = *(uint*)(s + 8);
        const uint lo4 = 0x0f0f0f0f, lo2 = 0x03030303;
        uint o0 = (a0 & lo4) | ((t & lo2) << 4);
        uint o1 = (a1 & lo4) | (((t >> 2) & lo2) << 4);
        uint o2 = ((a0 >> 4) & lo4) | (((t >> 4) & lo2) << 4);
        uint o3 = ((a1 >> 4) & lo4) | (((t >> 6) & lo2) << 4);
        return Vector128.Create(o0, o1, o2, o3).AsSByte() - Vector128.Create((sbyte)32);
    }

    // Q3_K: unsigned q = low2 | hbit << 2 (0..7) · y, then − 4·Σ_i sc_i·bsum_i.
    public static float Q3_K(byte* w, byte* y, int nb)
    {
        Vector256<float> acc = Vector256<float>.Zero;
        Vector256<byte> m3 = Vector256.Create((byte)3), m4 = Vector256.Create((byte)4);
        for (int b = 0; b < nb; b++, w += 110, y += Q8KBytes)
        {
            Vector128<sbyte> scales = UnpackQ3Scales(w + 96);
            int corr = ScaleBsumTerm16(scales, (short*)(y + 260));
            sbyte* qy = (sbyte*)(y + 4);
            Vector256<byte> hm = Vector256.Load(w);
            Vector256<int> sumi = Vector256<int>.Zero;
            for (int h = 0; h < 2; h++)
            {
                Vector256<byte> Q = Vector256.Load(w + 32 + 32 * h);
                sbyte* yy = qy + 128 * h;
                // hmask bit 4h+k → value 4 (bit 2): shift per byte pair, mask bit 2.
                Vector256<byte> hb0 = (h == 0 ? Shl(hm, 2) : Shr(hm, 2)) & m4;   // bit 4h+0
                Vector256<byte> hb1 = (h == 0 ? Shl(hm, 1) : Shr(hm, 3)) & m4;   // bit 4h+1
                Vector256<byte> hb2 = (h == 0 ? hm : Shr(hm, 4)) & m4;           // bit 4h+2
                Vector256<byte> hb3 = (h == 0 ? Shr(hm, 1) : Shr(hm, 5)) & m4;   // bit 4h+3
                sumi += ScaledDot((Q & m3) | hb0, yy, PairScales(scales, 4 * h));
                sumi += ScaledDot((Shr(Q, 2) & m3) | hb1, yy + 32, PairScales(scales, 4 * h + 1));
                sumi += ScaledDot((Shr(Q, 4) & m3) | hb2, yy + 64, PairScales(scales, 4 * h + 2));
                sumi += ScaledDot((Shr(Q, 6) & m3) | hb3, yy + 96, PairScales(scales, 4 * h + 3));
            }
            float dd = *(float*)y * Fp16.Read(w + 108);
            acc = Fma.MultiplyAdd(Vector256.Create(dd), Avx.ConvertToVector256Single(sumi - Vector256.CreateScalar(4 * corr)), acc);
        }
        return Vector256.Sum(acc);
    }
}
