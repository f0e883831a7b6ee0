// Owns: unpacking of the 12-byte packed 6-bit sub-block scales used by Q3_K, Q4_K and Q5_K.
// Invariants: pure bit manipulation, no allocation; shared by the reference (de)quantizers and the fast kernels.
// Source: ggml-quants.c get_scale_min_k4 (Q4_K/Q5_K) and the Q3_K scale layout from ggml-common.h, re-implemented.
namespace Engine.Tensors.Quants;

/// <summary>Packed K-quant scale helpers.</summary>
public static class KScales
{
    /// <summary>
    /// Q4_K / Q5_K: 8 sub-blocks, each with a 6-bit scale and 6-bit min packed in 12 bytes.
    /// Sub-block j &lt; 4: scale = s[j] &amp; 63, min = s[j+4] &amp; 63.
    /// j ≥ 4: scale = (s[j+4] &amp; 15) | (s[j-4] &gt;&gt; 6) &lt;&lt; 4, min = (s[j+4] &gt;&gt; 4) | (s[j] &gt;&gt; 6) &lt;&lt; 4.
    /// </summary>
    public static void ScaleMinK4(ReadOnlySpan<byte> s, int j, out int scale, out int min)
    {
        if (j < 4)
        {
            scale = s[j] & 63;
            min = s[j + 4] & 63;
        }
        else
        {
            scale = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
            min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        }
    }

    /// <summary>Packs 8 scales and 8 mins (each 0..63) into 12 bytes (inverse of <see cref="ScaleMinK4"/>).</summary>
    public static void PackScaleMinK4(ReadOnlySpan<int> scales, ReadOnlySpan<int> mins, Span<byte> s)
    {
        for (int j = 0; j < 4; j++)
        {
            s[j] = (byte)((scales[j] & 63) | ((scales[j + 4] >> 4) << 6));
            s[j + 4] = (byte)((mins[j] & 63) | ((mins[j + 4] >> 4) << 6));
            s[j + 8] = (byte)((scales[j + 4] & 0xF) | ((mins[j + 4] & 0xF) << 4));
        }
    }

    /// <summary>
    /// Q3_K: 16 signed sub-block scales, 6 bits each, stored +32. Low 4 bits: s[i] &amp; 15 for i &lt; 8, s[i-8] &gt;&gt; 4 otherwise;
    /// high 2 bits: (s[8 + i%4] &gt;&gt; 2·(i/4)) &amp; 3. Returns the signed scale (−32..31).
    /// </summary>
    public static int ScaleQ3K(ReadOnlySpan<byte> s, int i)
    {
        int lo = i < 8 ? s[i] & 0xF : s[i - 8] >> 4;
        int hi = (s[8 + (i & 3)] >> (2 * (i >> 2))) & 3;
        return (lo | (hi << 4)) - 32;
    }

    /// <summary>Packs 16 signed scales (−32..31) into 12 bytes (inverse of <see cref="ScaleQ3K"/>).</summary>
    public static void PackScaleQ3K(ReadOnlySpan<int> scales, Span<byte> s)
    {
        s.Slice(0, 12).Clear();
        for (int i = 0; i < 16; i++)
        {
            int u = scales[i] + 32;
            if (i < 8) s[i] |= (byte)(u & 0xF); else s[i - 8] |= (byte)((u & 0xF) << 4);
            s[8 + (i & 3)] |= (byte)(((u >> 4) & 3) << (2 * (i >> 2)));
        }
    }
}
