// Owns: SIMD decoding of KV rows for the CPU attention (Int8 and F16 tiers); other tiers fall back to the scalar
// KvDecode.Row, which defines every tier. Results are bitwise equal to KvDecode.Row (same float products q·s).
namespace Engine.Kernels;

using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

internal static unsafe class KvDecodeSimd
{
    public static void Row(in KvPage page, bool key, int j, float* dst, int width)
    {
        if (page.Type == KvElementType.Int8 && Avx2.IsSupported && page.GroupSize % 8 == 0)
        {
            long stride = page.RowStride;
            sbyte* row = (sbyte*)(key ? page.K : page.V) + j * stride;
            int g = page.GroupSize, groups = (int)(stride / g);
            float* sc = (float*)(key ? page.KScale : page.VScale) + (long)j * groups;
            int c = 0;
            for (; c + 8 <= width; c += 8)
            {
                var x = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(row + c));
                Avx.Store(dst + c, Avx.Multiply(x, Vector256.Create(sc[c / g])));
            }
            for (; c < width; c++) dst[c] = row[c] * sc[c / g];
            return;
        }
        KvDecode.Row(page, key, j, dst, width);
    }
}
