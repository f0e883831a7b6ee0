// Owns: reading one weight element of any supported GGUF type straight from the weight's raw bytes on the device
// (the upload keeps GGUF's block layout, so device bytes = file bytes).
// Invariants: rowBase is the byte offset of a row (a whole number of blocks, always even, so half fields are
// 2-byte aligned); c < row length; the formulas are those of Engine.Tensors.Quants.Dequant (the scalar reference).
// Source: block layouts in ggml-common.h, formulas in ggml-quants.c dequantize_row_*, re-implemented per element.
using ILGPU;

namespace Engine.Gpu.Kernels;

/// <summary>Device weight types (values are the GGUF type ids, as Engine.Tensors.DType).</summary>
public static class WeightType
{
    public const int F32 = 0, F16 = 1, Q4_0 = 2, Q8_0 = 8, Q4_K = 12, Q6_K = 14, BF16 = 30;
}

/// <summary>Per-element dequantization inside kernels.</summary>
public static class DeviceDequant
{
    /// <summary>Element <paramref name="c"/> of the row starting at byte <paramref name="rowBase"/>.</summary>
    public static float At(ArrayView<byte> w, long rowBase, int c, int type)
    {
        switch (type)
        {
            case WeightType.F32:
                return w.Cast<float>()[(rowBase >> 2) + c];
            case WeightType.F16:
                return GpuMath.HalfToFloat(w.Cast<ushort>()[(rowBase >> 1) + c]);
            case WeightType.BF16:
                return GpuMath.BF16ToFloat(w.Cast<ushort>()[(rowBase >> 1) + c]);
            case WeightType.Q8_0:
            {
                // block_q8_0 { half d; i8 qs[32] } (34 B)
                long bo = rowBase + (long)(c >> 5) * 34;
                float d = GpuMath.HalfToFloat(w.Cast<ushort>()[bo >> 1]);
                return d * (sbyte)w[bo + 2 + (c & 31)];
            }
            case WeightType.Q4_0:
            {
                // block_q4_0 { half d; u8 qs[16] } (18 B): j < 16 low nibble of qs[j], else high nibble of qs[j-16]
                long bo = rowBase + (long)(c >> 5) * 18;
                float d = GpuMath.HalfToFloat(w.Cast<ushort>()[bo >> 1]);
                int j = c & 31;
                int qb = w[bo + 2 + (j & 15)];
                int q = j < 16 ? qb & 15 : qb >> 4;
                return (q - 8) * d;
            }
            case WeightType.Q4_K:
            {
                // block_q4_K { half d; half dmin; u8 scales[12]; u8 qs[128] } (144 B)
                long bo = rowBase + (long)(c >> 8) * 144;
                int e = c & 255, g = e >> 6, hi = (e >> 5) & 1, l = e & 31, j = 2 * g + hi;
                float d = GpuMath.HalfToFloat(w.Cast<ushort>()[bo >> 1]);
                float dmin = GpuMath.HalfToFloat(w.Cast<ushort>()[(bo >> 1) + 1]);
                long s = bo + 4;
                int sc, m;
                if (j < 4) { sc = w[s + j] & 63; m = w[s + j + 4] & 63; }
                else
                {
                    sc = (w[s + j + 4] & 15) | ((w[s + j - 4] >> 6) << 4);
                    m = (w[s + j + 4] >> 4) | ((w[s + j] >> 6) << 4);
                }
                int qb = w[bo + 16 + 32 * g + l];
                int q = hi == 0 ? qb & 15 : qb >> 4;
                return d * sc * q - dmin * m;
            }
            case WeightType.Q6_K:
            {
                // block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; half d } (210 B)
                long bo = rowBase + (long)(c >> 8) * 210;
                int e = c & 255, h = e >> 7, k = (e >> 5) & 3, l = e & 31;
                int lq = w[bo + 64 * h + ((k & 1) != 0 ? 32 : 0) + l];
                int nib = k < 2 ? lq & 15 : lq >> 4;
                int hq = (w[bo + 128 + 32 * h + l] >> (2 * k)) & 3;
                int q = (nib | (hq << 4)) - 32;
                float d = GpuMath.HalfToFloat(w.Cast<ushort>()[(bo + 208) >> 1]);
                return d * (sbyte)w[bo + 192 + (e >> 4)] * q;
            }
            default:
                return 0f;   // the host refuses other types at upload
        }
    }
}
