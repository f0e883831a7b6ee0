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

    /// <summary>maddubs(u, y) then madd with the scale pair (lanes 0..7 · s0, lanes 8..15 · s1) → 8 int32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> ScaledDot16(Vector256<byte> u, sbyte* y, short s0, short s1)
    {
        Vector256<short> p = Avx2.MultiplyAddAdjacent(u, Vector256.Load(y));
        return Avx2.MultiplyAddAdjacent(p, Vector256.Create(Vector128.Create(s0), Vector128.Create(s1)));
    }

    /// <summary>maddubs(u, y) then madd with one scale for all lanes → 8 int32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> ScaledDot32(Vector256<byte> u, sbyte* y, short s)
    {
        Vector256<short> p = Avx2.MultiplyAddAdjacent(u, Vector256.Load(y));
        return Avx2.MultiplyAddAdjacent(p, Vector256.Create(s));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Shr(Vector256<byte> v, int n) => Vector256.ShiftRightLogical(v.AsUInt16(), n).AsByte();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Shl(Vector256<byte> v, int n) => Vector256.ShiftLeft(v.AsUInt16(), n).AsByte();

    /// <summary>Unpacks the 12-byte 6-bit scales/mins of Q4_K/Q5_K into sc[8], mn[8].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void UnpackK4(byte* s, short* sc, short* mn)
    {
        for (int j = 0; j < 4; j++)
        {
            sc[j] = (short)(s[j] & 63);
            mn[j] = (short)(s[j + 4] & 63);
            sc[j + 4] = (short)((s[j + 8] & 0xF) | ((s[j] >> 6) << 4));
            mn[j + 4] = (short)((s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4));
        }
    }

    public static float Q4_K(byte* w, byte* y, int nb)
    {
        Vector256<float> acc = Vector256<float>.Zero;
        float accm = 0;
        short* sc = stackalloc short[8];
        short* mn = stackalloc short[8];
        Vector256<byte> m4 = Vector256.Create((byte)0x0F);
        for (int b = 0; b < nb; b++, w += 144, y += Q8KBytes)
        {
            UnpackK4(w + 4, sc, mn);
            short* bs = (short*)(y + 260);
            int msum = 0;
            for (int j = 0; j < 8; j++) msum += mn[j] * (bs[2 * j] + bs[2 * j + 1]);
            sbyte* qy = (sbyte*)(y + 4);
            byte* qs = w + 16;
            Vector256<int> sumi = Vector256<int>.Zero;
            for (int g = 0; g < 4; g++)
            {
                Vector256<byte> q = Vector256.Load(qs + 32 * g);
                sumi += ScaledDot32(q & m4, qy + 64 * g, sc[2 * g]);
                sumi += ScaledDot32(Shr(q, 4) & m4, qy + 64 * g + 32, sc[2 * g + 1]);
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
        short* sc = stackalloc short[8];
        short* mn = stackalloc short[8];
        Vector256<byte> m4 = Vector256.Create((byte)0x0F);
        for (int b = 0; b < nb; b++, w += 176, y += Q8KBytes)
        {
            UnpackK4(w + 4, sc, mn);
            short* bs = (short*)(y + 260);
            int msum = 0;
            for (int j = 0; j < 8; j++) msum += mn[j] * (bs[2 * j] + bs[2 * j + 1]);
            sbyte* qy = (sbyte*)(y + 4);
            byte* qs = w + 48;
            Vector256<byte> qh = Vector256.Load(w + 16);
            Vector256<int> sumi = Vector256<int>.Zero;
            for (int g = 0; g < 4; g++)
            {
                Vector256<byte> q = Vector256.Load(qs + 32 * g);
                Vector256<byte> h = Shr(qh, 2 * g);                       // bit 2g → bit 0, bit 2g+1 → bit 1
                Vector256<byte> h0 = Shl(h & Vector256.Create((byte)1), 4);   // → 0x10
                Vector256<byte> h1 = Shl(h & Vector256.Create((byte)2), 3);   // → 0x10
                sumi += ScaledDot32((q & m4) | h0, qy + 64 * g, sc[2 * g]);
                sumi += ScaledDot32((Shr(q, 4) & m4) | h1, qy + 64 * g + 32, sc[2 * g + 1]);
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
            sbyte* sc = (sbyte*)(w + 192);
            short* bs = (short*)(y + 260);
            int corr = 0;
            for (int i = 0; i < 16; i++) corr += sc[i] * bs[i];
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
                sbyte* s = sc + 8 * h;
                sbyte* yy = qy + 128 * h;
                sumi += ScaledDot16(q0, yy, s[0], s[1]);
                sumi += ScaledDot16(q1, yy + 32, s[2], s[3]);
                sumi += ScaledDot16(q2, yy + 64, s[4], s[5]);
                sumi += ScaledDot16(q3, yy + 96, s[6], s[7]);
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
            short* bs = (short*)(y + 260);
            int msum = 0;
            for (int i = 0; i < 16; i++) msum += (w[i] >> 4) * bs[i];
            sbyte* qy = (sbyte*)(y + 4);
            Vector256<int> sumi = Vector256<int>.Zero;
            for (int h = 0; h < 2; h++)
            {
                Vector256<byte> Q = Vector256.Load(w + 16 + 32 * h);
                for (int k = 0; k < 4; k++)
                {
                    int i = 8 * h + 2 * k;
                    sumi += ScaledDot16(Shr(Q, 2 * k) & m3, qy + 128 * h + 32 * k, (short)(w[i] & 0xF), (short)(w[i + 1] & 0xF));
                }
            }
            float dy = *(float*)y;
            acc = Fma.MultiplyAdd(Vector256.Create(dy * Fp16.Read(w + 80)), Avx.ConvertToVector256Single(sumi), acc);
            accm += dy * Fp16.Read(w + 82) * msum;
        }
        return Vector256.Sum(acc) - accm;
    }

    // Q3_K: unsigned q = low2 | hbit << 2 (0..7) · y, then − 4·Σ_i sc_i·bsum_i.
    public static float Q3_K(byte* w, byte* y, int nb)
    {
        Vector256<float> acc = Vector256<float>.Zero;
        Vector256<byte> m3 = Vector256.Create((byte)3), m4 = Vector256.Create((byte)4);
        short* sc = stackalloc short[16];
        for (int b = 0; b < nb; b++, w += 110, y += Q8KBytes)
        {
            byte* s = w + 96;
            for (int i = 0; i < 16; i++)
            {
                int lo = i < 8 ? s[i] & 0xF : s[i - 8] >> 4;
                int hi = (s[8 + (i & 3)] >> (2 * (i >> 2))) & 3;
                sc[i] = (short)((lo | (hi << 4)) - 32);
            }
            short* bs = (short*)(y + 260);
            int corr = 0;
            for (int i = 0; i < 16; i++) corr += sc[i] * bs[i];
            sbyte* qy = (sbyte*)(y + 4);
            Vector256<byte> hm = Vector256.Load(w);
            Vector256<int> sumi = Vector256<int>.Zero;
            for (int h = 0; h < 2; h++)
            {
                Vector256<byte> Q = Vector256.Load(w + 32 + 32 * h);
                for (int k = 0; k < 4; k++)
                {
                    int bit = 4 * h + k, i = 8 * h + 2 * k;
                    // hbit → 4: shift bit `bit` to position 2 (per byte) and mask.
                    Vector256<byte> hb = bit >= 2 ? Shr(hm, bit - 2) & m4 : Shl(hm, 2 - bit) & m4;
                    sumi += ScaledDot16((Shr(Q, 2 * k) & m3) | hb, qy + 128 * h + 32 * k, sc[i], sc[i + 1]);
                }
            }
            float dd = *(float*)y * Fp16.Read(w + 108);
            acc = Fma.MultiplyAdd(Vector256.Create(dd), Avx.ConvertToVector256Single(sumi - Vector256.CreateScalar(4 * corr)), acc);
        }
        return Vector256.Sum(acc);
    }
}
