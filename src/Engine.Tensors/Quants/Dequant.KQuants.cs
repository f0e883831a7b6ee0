// Owns: the scalar reference dequantization of the K-quant super-blocks (256 elements): Q2_K, Q3_K, Q4_K, Q5_K,
// Q6_K and the activation type Q8_K.
// Invariants: element order inside a super-block follows ggml exactly (see each block comment); fields little-endian.
// Source: block layouts in ggml-common.h, formulas in ggml-quants.c dequantize_row_q*_K, re-implemented.
using System.Buffers.Binary;

namespace Engine.Tensors.Quants;

public static partial class Dequant
{
    // block_q2_K { u8 scales[16]; u8 qs[64]; half d; half dmin } (84 B). Two halves of 128 elements; half h uses
    // qs[32h .. 32h+32). Element 128h + 32k + l (k = 0..3, l = 0..31) = bits (2k, 2k+1) of qs[32h + l];
    // its sub-block is 8h + 2k + l/16 with scale byte sc: x = d·(sc &amp; 15)·q − dmin·(sc &gt;&gt; 4).
    private static void BlockQ2_K(ReadOnlySpan<byte> b, Span<float> y)
    {
        float d = ReadHalf(b, 80), dmin = ReadHalf(b, 82);
        for (int h = 0; h < 2; h++)
            for (int k = 0; k < 4; k++)
                for (int l = 0; l < 32; l++)
                {
                    int sc = b[8 * h + 2 * k + l / 16];
                    int q = (b[16 + 32 * h + l] >> (2 * k)) & 3;
                    y[128 * h + 32 * k + l] = d * (sc & 0xF) * q - dmin * (sc >> 4);
                }
    }

    // block_q3_K { u8 hmask[32]; u8 qs[64]; u8 scales[12]; half d } (110 B). Element 128h + 32k + l:
    // low 2 bits = bits (2k, 2k+1) of qs[32h + l], high bit = bit (4h + k) of hmask[l]; q = low − (high ? 0 : 4)
    // (range −4..3); sub-block 8h + 2k + l/16 with signed 6-bit scale (KScales.ScaleQ3K); x = d·scale·q.
    private static void BlockQ3_K(ReadOnlySpan<byte> b, Span<float> y)
    {
        float d = ReadHalf(b, 108);
        ReadOnlySpan<byte> scales = b.Slice(96, 12);
        for (int h = 0; h < 2; h++)
            for (int k = 0; k < 4; k++)
                for (int l = 0; l < 32; l++)
                {
                    int sc = KScales.ScaleQ3K(scales, 8 * h + 2 * k + l / 16);
                    int lo = (b[32 + 32 * h + l] >> (2 * k)) & 3;
                    int hi = (b[l] >> (4 * h + k)) & 1;
                    y[128 * h + 32 * k + l] = d * sc * (lo - (hi != 0 ? 0 : 4));
                }
    }

    // block_q4_K { half d; half dmin; u8 scales[12]; u8 qs[128] } (144 B). Four groups of 64: group g uses
    // qs[32g .. 32g+32); element 64g + l = low nibble (sub-block 2g), 64g + 32 + l = high nibble (sub-block 2g+1);
    // x = d·scale·q − dmin·min with 6-bit scale/min from KScales.ScaleMinK4.
    private static void BlockQ4_K(ReadOnlySpan<byte> b, Span<float> y)
    {
        float d = ReadHalf(b, 0), dmin = ReadHalf(b, 2);
        ReadOnlySpan<byte> scales = b.Slice(4, 12);
        for (int g = 0; g < 4; g++)
        {
            KScales.ScaleMinK4(scales, 2 * g, out int s1, out int m1);
            KScales.ScaleMinK4(scales, 2 * g + 1, out int s2, out int m2);
            float d1 = d * s1, dm1 = dmin * m1, d2 = d * s2, dm2 = dmin * m2;
            for (int l = 0; l < 32; l++)
            {
                byte q = b[16 + 32 * g + l];
                y[64 * g + l] = d1 * (q & 0xF) - dm1;
                y[64 * g + 32 + l] = d2 * (q >> 4) - dm2;
            }
        }
    }

    // block_q5_K { half d; half dmin; u8 scales[12]; u8 qh[32]; u8 qs[128] } (176 B). As Q4_K, plus a 5th bit:
    // element 64g + l takes bit 2g of qh[l], element 64g + 32 + l takes bit 2g+1 of qh[l] (adds 16).
    private static void BlockQ5_K(ReadOnlySpan<byte> b, Span<float> y)
    {
        float d = ReadHalf(b, 0), dmin = ReadHalf(b, 2);
        ReadOnlySpan<byte> scales = b.Slice(4, 12);
        for (int g = 0; g < 4; g++)
        {
            KScales.ScaleMinK4(scales, 2 * g, out int s1, out int m1);
            KScales.ScaleMinK4(scales, 2 * g + 1, out int s2, out int m2);
            float d1 = d * s1, dm1 = dmin * m1, d2 = d * s2, dm2 = dmin * m2;
            for (int l = 0; l < 32; l++)
            {
                byte q = b[48 + 32 * g + l];
                byte h = b[16 + l];
                int q1 = (q & 0xF) | (((h >> (2 * g)) & 1) << 4);
                int q2 = (q >> 4) | (((h >> (2 * g + 1)) & 1) << 4);
                y[64 * g + l] = d1 * q1 - dm1;
                y[64 * g + 32 + l] = d2 * q2 - dm2;
            }
        }
    }

    // block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; half d } (210 B). Two halves of 128; half h uses
    // ql[64h..64h+64), qh[32h..32h+32), scales[8h..8h+8). For l = 0..31, with L = ql[64h + l], L2 = ql[64h + 32 + l],
    // H = qh[32h + l]: element 128h + l = (L &amp; 15) | (H &amp; 3) &lt;&lt; 4; +32: (L2 &amp; 15) | ((H &gt;&gt; 2) &amp; 3) &lt;&lt; 4;
    // +64: (L &gt;&gt; 4) | ((H &gt;&gt; 4) &amp; 3) &lt;&lt; 4; +96: (L2 &gt;&gt; 4) | (H &gt;&gt; 6) &lt;&lt; 4. q − 32; element e uses scale e/16; x = d·scale·q.
    private static void BlockQ6_K(ReadOnlySpan<byte> b, Span<float> y)
    {
        float d = ReadHalf(b, 208);
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++)
            {
                int L = b[64 * h + l], L2 = b[64 * h + 32 + l], H = b[128 + 32 * h + l];
                int q0 = ((L & 0xF) | ((H & 3) << 4)) - 32;
                int q1 = ((L2 & 0xF) | (((H >> 2) & 3) << 4)) - 32;
                int q2 = ((L >> 4) | (((H >> 4) & 3) << 4)) - 32;
                int q3 = ((L2 >> 4) | (((H >> 6) & 3) << 4)) - 32;
                int e = 128 * h + l;
                y[e] = d * (sbyte)b[192 + e / 16] * q0;
                y[e + 32] = d * (sbyte)b[192 + (e + 32) / 16] * q1;
                y[e + 64] = d * (sbyte)b[192 + (e + 64) / 16] * q2;
                y[e + 96] = d * (sbyte)b[192 + (e + 96) / 16] * q3;
            }
    }

    // block_q8_K { float d; i8 qs[256]; i16 bsums[16] } (292 B): x = q·d; bsums[i] = Σ qs[16i .. 16i+16) (cache only).
    private static void BlockQ8_K(ReadOnlySpan<byte> b, Span<float> y)
    {
        float d = BinaryPrimitives.ReadSingleLittleEndian(b);
        for (int j = 0; j < 256; j++) y[j] = (sbyte)b[4 + j] * d;
    }
}
