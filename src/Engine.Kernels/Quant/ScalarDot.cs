// Owns: the scalar-integer quantized dot kernels (the fallback path, and the second path the tests run).
// Invariants: per block, the integer sum of products is exact (int32); it is scaled once in float32 by the block
// scales — the same arithmetic as the SIMD kernels. Q4_1/Q5_1 use Σq of the activation block computed here (exact),
// not Q8_1's float16 cached sum. K-quant mins use the Q8_K bsums.
// Source: block layouts from ggml-common.h; the integer-dot scheme of ggml-cpu's vec_dot kernels, re-implemented.
using Engine.Tensors.Quants;

namespace Engine.Kernels.Quant;

internal static unsafe class ScalarDot
{
    // Q4_0 × Q8_0: Σ_b d_w·d_y·Σ_j (q_j − 8)·y_j.
    public static float Q4_0(byte* w, byte* y, int nb)
    {
        float acc = 0;
        for (int b = 0; b < nb; b++, w += 18, y += 34)
        {
            sbyte* qy = (sbyte*)(y + 2);
            int s = 0;
            for (int j = 0; j < 16; j++)
                s += ((w[2 + j] & 0xF) - 8) * qy[j] + ((w[2 + j] >> 4) - 8) * qy[j + 16];
            acc += Fp16.Read(w) * Fp16.Read(y) * s;
        }
        return acc;
    }

    // Q4_1 × Q8_1: Σ_b d_w·d_y·Σ q_j·y_j + m_w·d_y·Σ y_j.
    public static float Q4_1(byte* w, byte* y, int nb)
    {
        float acc = 0;
        for (int b = 0; b < nb; b++, w += 20, y += 36)
        {
            sbyte* qy = (sbyte*)(y + 4);
            int s = 0, sy = 0;
            for (int j = 0; j < 16; j++)
            {
                s += (w[4 + j] & 0xF) * qy[j] + (w[4 + j] >> 4) * qy[j + 16];
                sy += qy[j] + qy[j + 16];
            }
            float dy = Fp16.Read(y);
            acc += Fp16.Read(w) * dy * s + Fp16.Read(w + 2) * dy * sy;
        }
        return acc;
    }

    // Q5_0 × Q8_0: as Q4_0 with a 5th bit from qh and offset 16.
    public static float Q5_0(byte* w, byte* y, int nb)
    {
        float acc = 0;
        for (int b = 0; b < nb; b++, w += 22, y += 34)
        {
            uint qh = *(uint*)(w + 2);
            sbyte* qy = (sbyte*)(y + 2);
            int s = 0;
            for (int j = 0; j < 16; j++)
            {
                int lo = (w[6 + j] & 0xF) | (int)(((qh >> j) & 1) << 4);
                int hi = (w[6 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
                s += (lo - 16) * qy[j] + (hi - 16) * qy[j + 16];
            }
            acc += Fp16.Read(w) * Fp16.Read(y) * s;
        }
        return acc;
    }

    // Q5_1 × Q8_1.
    public static float Q5_1(byte* w, byte* y, int nb)
    {
        float acc = 0;
        for (int b = 0; b < nb; b++, w += 24, y += 36)
        {
            uint qh = *(uint*)(w + 4);
            sbyte* qy = (sbyte*)(y + 4);
            int s = 0, sy = 0;
            for (int j = 0; j < 16; j++)
            {
                int lo = (w[8 + j] & 0xF) | (int)(((qh >> j) & 1) << 4);
                int hi = (w[8 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
                s += lo * qy[j] + hi * qy[j + 16];
                sy += qy[j] + qy[j + 16];
            }
            float dy = Fp16.Read(y);
            acc += Fp16.Read(w) * dy * s + Fp16.Read(w + 2) * dy * sy;
        }
        return acc;
    }

    // Q8_0 × Q8_0.
    public static float Q8_0(byte* w, byte* y, int nb)
    {
        float acc = 0;
        for (int b = 0; b < nb; b++, w += 34, y += 34)
        {
            sbyte* qw = (sbyte*)(w + 2), qy = (sbyte*)(y + 2);
            int s = 0;
            for (int j = 0; j < 32; j++) s += qw[j] * qy[j];
            acc += Fp16.Read(w) * Fp16.Read(y) * s;
        }
        return acc;
    }

    // Q8_K block: float d at 0, i8 qs[256] at 4, i16 bsums[16] at 260.
    private const int Q8KBytes = 292;

    // Q2_K × Q8_K: d_y·(d·Σ_i (sc_i & 15)·Σ q·y − dmin·Σ_i (sc_i >> 4)·bsum_i), 16 sub-blocks of 16.
    public static float Q2_K(byte* w, byte* y, int nb)
    {
        float acc = 0;
        for (int b = 0; b < nb; b++, w += 84, y += Q8KBytes)
        {
            sbyte* qy = (sbyte*)(y + 4);
            short* bsums = (short*)(y + 260);
            int isum = 0, msum = 0;
            for (int i = 0; i < 16; i++)
            {
                int h = i / 8, k = (i % 8) / 2, l0 = (i % 2) * 16;
                int s = 0;
                for (int l = l0; l < l0 + 16; l++)
                    s += ((w[16 + 32 * h + l] >> (2 * k)) & 3) * qy[128 * h + 32 * k + l];
                isum += (w[i] & 0xF) * s;
                msum += (w[i] >> 4) * bsums[i];
            }
            float dy = *(float*)y;
            acc += dy * Fp16.Read(w + 80) * isum - dy * Fp16.Read(w + 82) * msum;
        }
        return acc;
    }

    // Q3_K × Q8_K: d·d_y·Σ_i scale_i·Σ q·y with q = low2 − (hbit ? 0 : 4).
    public static float Q3_K(byte* w, byte* y, int nb)
    {
        float acc = 0;
        sbyte* sc = stackalloc sbyte[16];
        for (int b = 0; b < nb; b++, w += 110, y += Q8KBytes)
        {
            UnpackQ3Scales(w + 96, sc);
            sbyte* qy = (sbyte*)(y + 4);
            int isum = 0;
            for (int h = 0; h < 2; h++)
                for (int k = 0; k < 4; k++)
                {
                    byte* q = w + 32 + 32 * h;
                    sbyte* yy = qy + 128 * h + 32 * k;
                    int shift = 2 * k, hbit = 4 * h + k;
                    int s0 = 0, s1 = 0;
                    for (int l = 0; l < 16; l++)
                    {
                        s0 += (((q[l] >> shift) & 3) - (((w[l] >> hbit) & 1) != 0 ? 0 : 4)) * yy[l];
                        s1 += (((q[l + 16] >> shift) & 3) - (((w[l + 16] >> hbit) & 1) != 0 ? 0 : 4)) * yy[l + 16];
                    }
                    isum += sc[8 * h + 2 * k] * s0 + sc[8 * h + 2 * k + 1] * s1;
                }
            acc += Fp16.Read(w + 108) * *(float*)y * isum;
        }
        return acc;
    }

    /// <summary>The 16 signed Q3_K scales from their 12-byte packing (same bits as KScales.ScaleQ3K), via 32-bit words.</summary>
    private static void UnpackQ3Scales(byte* s, sbyte* dst)
    {
        uint a0 = *(uint*)s, a1 = *(uint*)(s + 4), t = *(uint*)(s + 8);
        const uint lo4 = 0x0f0f0f0f, lo2 = 0x03030303;
        uint* o = (uint*)dst;
        o[0] = (a0 & lo4) | ((t & lo2) << 4);
        o[1] = (a1 & lo4) | (((t >> 2) & lo2) << 4);
        o[2] = ((a0 >> 4) & lo4) | (((t >> 4) & lo2) << 4);
        o[3] = ((a1 >> 4) & lo4) | (((t >> 6) & lo2) << 4);
        for (int i = 0; i < 16; i++) dst[i] = (sbyte)(dst[i] - 32);
    }

    // Q4_K × Q8_K: d_y·(d·Σ_j sc_j·Σ q·y − dmin·Σ_j m_j·(bsum_2j + bsum_2j+1)), 8 sub-blocks of 32.
    public static float Q4_K(byte* w, byte* y, int nb)
    {
        float acc = 0;
        for (int b = 0; b < nb; b++, w += 144, y += Q8KBytes)
        {
            sbyte* qy = (sbyte*)(y + 4);
            short* bsums = (short*)(y + 260);
            var scales = new ReadOnlySpan<byte>(w + 4, 12);
            int isum = 0, msum = 0;
            for (int g = 0; g < 4; g++)
            {
                KScales.ScaleMinK4(scales, 2 * g, out int s1, out int m1);
                KScales.ScaleMinK4(scales, 2 * g + 1, out int s2, out int m2);
                int a = 0, c = 0;
                for (int l = 0; l < 32; l++)
                {
                    byte q = w[16 + 32 * g + l];
                    a += (q & 0xF) * qy[64 * g + l];
                    c += (q >> 4) * qy[64 * g + 32 + l];
                }
                isum += s1 * a + s2 * c;
                msum += m1 * (bsums[4 * g] + bsums[4 * g + 1]) + m2 * (bsums[4 * g + 2] + bsums[4 * g + 3]);
            }
            float dy = *(float*)y;
            acc += dy * Fp16.Read(w) * isum - dy * Fp16.Read(w + 2) * msum;
        }
        return acc;
    }

    // Q5_K × Q8_K: as Q4_K with the 5th bit of element 64g+l (64g+32+l) = bit 2g (2g+1) of qh[l].
    public static float Q5_K(byte* w, byte* y, int nb)
    {
        float acc = 0;
        for (int b = 0; b < nb; b++, w += 176, y += Q8KBytes)
        {
            sbyte* qy = (sbyte*)(y + 4);
            short* bsums = (short*)(y + 260);
            var scales = new ReadOnlySpan<byte>(w + 4, 12);
            int isum = 0, msum = 0;
            for (int g = 0; g < 4; g++)
            {
                KScales.ScaleMinK4(scales, 2 * g, out int s1, out int m1);
                KScales.ScaleMinK4(scales, 2 * g + 1, out int s2, out int m2);
                int a = 0, c = 0;
                for (int l = 0; l < 32; l++)
                {
                    byte q = w[48 + 32 * g + l], h = w[16 + l];
                    a += ((q & 0xF) | (((h >> (2 * g)) & 1) << 4)) * qy[64 * g + l];
                    c += ((q >> 4) | (((h >> (2 * g + 1)) & 1) << 4)) * qy[64 * g + 32 + l];
                }
                isum += s1 * a + s2 * c;
                msum += m1 * (bsums[4 * g] + bsums[4 * g + 1]) + m2 * (bsums[4 * g + 2] + bsums[4 * g + 3]);
            }
            float dy = *(float*)y;
            acc += dy * Fp16.Read(w) * isum - dy * Fp16.Read(w + 2) * msum;
        }
        return acc;
    }

    // Q6_K × Q8_K: d·d_y·Σ_i sc_i·Σ (q − 32)·y, 16 sub-blocks of 16.
    public static float Q6_K(byte* w, byte* y, int nb)
    {
        float acc = 0;
        for (int b = 0; b < nb; b++, w += 210, y += Q8KBytes)
        {
            sbyte* qy = (sbyte*)(y + 4);
            sbyte* sc = (sbyte*)(w + 192);
            int isum = 0;
            for (int h = 0; h < 2; h++)
            {
                byte* ql = w + 64 * h;
                byte* qh = w + 128 + 32 * h;
                int s0a = 0, s0b = 0, s1a = 0, s1b = 0, s2a = 0, s2b = 0, s3a = 0, s3b = 0;
                for (int l = 0; l < 32; l++)
                {
                    int L = ql[l], L2 = ql[32 + l], H = qh[l];
                    int q0 = ((L & 0xF) | ((H & 3) << 4)) - 32;
                    int q1 = ((L2 & 0xF) | (((H >> 2) & 3) << 4)) - 32;
                    int q2 = ((L >> 4) | (((H >> 4) & 3) << 4)) - 32;
                    int q3 = ((L2 >> 4) | (((H >> 6) & 3) << 4)) - 32;
                    sbyte* yy = qy + 128 * h + l;
                    if (l < 16) { s0a += q0 * yy[0]; s1a += q1 * yy[32]; s2a += q2 * yy[64]; s3a += q3 * yy[96]; }
                    else { s0b += q0 * yy[0]; s1b += q1 * yy[32]; s2b += q2 * yy[64]; s3b += q3 * yy[96]; }
                }
                sbyte* s = sc + 8 * h;
                isum += s[0] * s0a + s[1] * s0b + s[2] * s1a + s[3] * s1b + s[4] * s2a + s[5] * s2b + s[6] * s3a + s[7] * s3b;
            }
            acc += Fp16.Read(w + 208) * *(float*)y * isum;
        }
        return acc;
    }
}
