// Owns: portable Vector128 dot kernels (NEON on ARM64, SSE elsewhere) for the most used weight types:
// Q4_0, Q8_0 (× Q8_0) and Q4_K, Q6_K (× Q8_K). Machines without AVX2 use these; other types use ScalarDot.
// Invariants: int8 products are widened to int16 (|x·y| ≤ 128·127 so a pair sum fits in int16), then to int32;
// per block the integer sums are exact and scaled once in float32 — the same block sums as ScalarDot.
// Source: the vec_dot scheme of ggml-cpu, written with the cross-platform Vector128 API.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Engine.Kernels.Quant;

internal static unsafe class Vector128Dot
{
    private const int Q8KBytes = 292;

    /// <summary>Σ x_i·y_i of 16 int8 pairs as 4 int32 partial sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> Dot16(Vector128<sbyte> x, Vector128<sbyte> y)
    {
        Vector128<short> p = Vector128.WidenLower(x) * Vector128.WidenLower(y) + Vector128.WidenUpper(x) * Vector128.WidenUpper(y);
        return Vector128.WidenLower(p) + Vector128.WidenUpper(p);
    }

    public static float Q4_0(byte* w, byte* y, int nb)
    {
        float acc = 0;
        Vector128<byte> m4 = Vector128.Create((byte)0x0F);
        Vector128<sbyte> eight = Vector128.Create((sbyte)8);
        for (int b = 0; b < nb; b++, w += 18, y += 34)
        {
            Vector128<byte> q = Vector128.Load(w + 2);
            Vector128<sbyte> lo = (q & m4).AsSByte() - eight;
            Vector128<sbyte> hi = (Vector128.ShiftRightLogical(q, 4) & m4).AsSByte() - eight;
            Vector128<int> s = Dot16(lo, Vector128.Load((sbyte*)(y + 2))) + Dot16(hi, Vector128.Load((sbyte*)(y + 18)));
            acc += Fp16.Read(w) * Fp16.Read(y) * Vector128.Sum(s);
        }
        return acc;
    }

    public static float Q8_0(byte* w, byte* y, int nb)
    {
        float acc = 0;
        for (int b = 0; b < nb; b++, w += 34, y += 34)
        {
            Vector128<int> s = Dot16(Vector128.Load((sbyte*)(w + 2)), Vector128.Load((sbyte*)(y + 2)))
                             + Dot16(Vector128.Load((sbyte*)(w + 18)), Vector128.Load((sbyte*)(y + 18)));
            acc += Fp16.Read(w) * Fp16.Read(y) * Vector128.Sum(s);
        }
        return acc;
    }

    public static float Q4_K(byte* w, byte* y, int nb)
    {
        float acc = 0;
        Vector128<byte> m4 = Vector128.Create((byte)0x0F);
        for (int b = 0; b < nb; b++, w += 144, y += Q8KBytes)
        {
            KScaleWords.UnpackK4(w + 4, out uint sc03, out uint sc47, out uint mn03, out uint mn47);
            short* bs = (short*)(y + 260);
            sbyte* qy = (sbyte*)(y + 4);
            int isum = 0, msum = 0;
            for (int j = 0; j < 8; j++)
            {
                int sc = (int)(((j < 4 ? sc03 : sc47) >> (8 * (j & 3))) & 0xFF);
                int mn = (int)(((j < 4 ? mn03 : mn47) >> (8 * (j & 3))) & 0xFF);
                byte* qs = w + 16 + 32 * (j / 2);
                Vector128<byte> q0 = Vector128.Load(qs), q1 = Vector128.Load(qs + 16);
                if ((j & 1) == 1) { q0 = Vector128.ShiftRightLogical(q0, 4); q1 = Vector128.ShiftRightLogical(q1, 4); }
                sbyte* yy = qy + 32 * j;
                Vector128<int> s = Dot16((q0 & m4).AsSByte(), Vector128.Load(yy)) + Dot16((q1 & m4).AsSByte(), Vector128.Load(yy + 16));
                isum += sc * Vector128.Sum(s);
                msum += mn * (bs[2 * j] + bs[2 * j + 1]);
            }
            float dy = *(float*)y;
            acc += dy * Fp16.Read(w) * isum - dy * Fp16.Read(w + 2) * msum;
        }
        return acc;
    }

    public static float Q6_K(byte* w, byte* y, int nb)
    {
        float acc = 0;
        Vector128<byte> m4 = Vector128.Create((byte)0x0F), m30 = Vector128.Create((byte)0x30);
        for (int b = 0; b < nb; b++, w += 210, y += Q8KBytes)
        {
            sbyte* sc = (sbyte*)(w + 192);
            short* bs = (short*)(y + 260);
            sbyte* qy = (sbyte*)(y + 4);
            int isum = 0, corr = 0;
            for (int i = 0; i < 16; i++) corr += sc[i] * bs[i];
            for (int h = 0; h < 2; h++)
                for (int half = 0; half < 2; half++) // l in [16·half, 16·half + 16): sub-blocks 8h + 2k + half
                {
                    int l0 = 16 * half;
                    Vector128<byte> L = Vector128.Load(w + 64 * h + l0), L2 = Vector128.Load(w + 64 * h + 32 + l0);
                    Vector128<byte> H = Vector128.Load(w + 128 + 32 * h + l0);
                    Vector128<byte> q0 = (L & m4) | (Vector128.ShiftLeft(H, 4) & m30);
                    Vector128<byte> q1 = (L2 & m4) | (Vector128.ShiftLeft(H, 2) & m30);
                    Vector128<byte> q2 = Vector128.ShiftRightLogical(L, 4) | (H & m30);
                    Vector128<byte> q3 = Vector128.ShiftRightLogical(L2, 4) | (Vector128.ShiftRightLogical(H, 2) & m30);
                    sbyte* yy = qy + 128 * h + l0;
                    int i0 = 8 * h + half;
                    isum += sc[i0] * Vector128.Sum(Dot16(q0.AsSByte(), Vector128.Load(yy)))
                          + sc[i0 + 2] * Vector128.Sum(Dot16(q1.AsSByte(), Vector128.Load(yy + 32)))
                          + sc[i0 + 4] * Vector128.Sum(Dot16(q2.AsSByte(), Vector128.Load(yy + 64)))
                          + sc[i0 + 6] * Vector128.Sum(Dot16(q3.AsSByte(), Vector128.Load(yy + 96)));
                }
            acc += Fp16.Read(w + 208) * *(float*)y * (isum - 32 * corr);
        }
        return acc;
    }
}
