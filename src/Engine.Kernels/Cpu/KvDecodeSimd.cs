// Owns: SIMD decoding of KV rows for the CPU attention (Int8 and F16 tiers) and a byte-wise decode of 2/4-bit Kivi rows
// (half params converted once per page and thread, not per element); other tiers fall back to the scalar KvDecode.Row,
// which defines every tier. Results are bitwise equal to KvDecode.Row (same float products q·s + m).
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
        if (page.Type == KvElementType.Kivi && page.Bits is 2 or 4)
        {
            Kivi(page, key, j, dst, width);
            return;
        }
        KvDecode.Row(page, key, j, dst, width);
    }

    [ThreadStatic] private static float[]? _prm;
    [ThreadStatic] private static nint _prmFor;

    /// <summary>Drops this thread's cached Kivi key params (call at the start of every attention range: a freed chunk's
    /// address may be reused by another).</summary>
    public static void Forget() => _prmFor = 0;

    /// <summary>Params [n, 2] (scale, min) as floats, converted once per distinct pointer on this thread.</summary>
    private static float[] Params(nint half, int n)
    {
        var buf = _prm;
        if (buf == null || buf.Length < 2 * n) { buf = _prm = new float[Math.Max(2 * n, 64)]; _prmFor = 0; }
        if (_prmFor != half)
        {
            Half* h = (Half*)half;
            for (int i = 0; i < 2 * n; i++) buf[i] = (float)h[i];
            _prmFor = half;
        }
        return buf;
    }

    private static void Kivi(in KvPage page, bool key, int j, float* dst, int width)
    {
        int bits = page.Bits, stride = page.RowStride;
        int rb = (stride * bits + 7) / 8;
        byte* row = (byte*)(key ? page.K : page.V) + (long)j * rb;
        if (key)
        {
            // the key params belong to the page's group: the same for every row of it (cached until Forget, which the
            // attention range calls first: pages do not change during one call)
            var pa = Params(page.KScale, stride);
            fixed (float* p = pa)
            {
                if (bits == 4)
                    for (int c = 0; c < width; c++) dst[c] = ((row[c >> 1] >> ((c & 1) << 2)) & 15) * p[2 * c] + p[2 * c + 1];
                else
                    for (int c = 0; c < width; c++) dst[c] = ((row[c >> 2] >> ((c & 3) << 1)) & 3) * p[2 * c] + p[2 * c + 1];
            }
        }
        else
        {
            int g = page.GroupSize;
            Half* vp = (Half*)page.VScale + (long)j * (stride / g) * 2;
            for (int c0 = 0; c0 < width; c0 += g)
            {
                float s = (float)vp[2 * (c0 / g)], m = (float)vp[2 * (c0 / g) + 1];
                int c1 = Math.Min(width, c0 + g);
                if (bits == 4)
                    for (int c = c0; c < c1; c++) dst[c] = ((row[c >> 1] >> ((c & 1) << 2)) & 15) * s + m;
                else
                    for (int c = c0; c < c1; c++) dst[c] = ((row[c >> 2] >> ((c & 3) << 1)) & 3) * s + m;
            }
        }
    }
}
