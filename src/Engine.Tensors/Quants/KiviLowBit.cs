// Owns: the scalar reference of the low-bit KIVI tier (2, 3 or 4 bits per element) — packing codes into bit rows,
// quantizing one token group of K rows (per channel over the group's tokens) and V rows (per token over channel groups),
// and decoding one row back to float32. This is the definition the kernels' KvElementType.Kivi pages follow.
// Layout (W = row width in elements, b = bits, G = the group's token count, C = value channel group):
//   codes: [G, RowBytes(W, b)] — element c of a row occupies bits [c·b, c·b + b) of the row, least significant bit first
//          (a 3-bit code may straddle two bytes); trailing pad bits are zero.
//   key params: Half [W, 2] = (scale, min) per channel, shared by the group's tokens.
//   value params: Half [G, W / C, 2] = (scale, min) per (token, channel group).
// x ≈ q · scale + min, q in [0, 2^b − 1]. Params are rounded to half first and the codes computed with the rounded
// values, so the round-trip error of an element is ≤ scale/2 plus the half rounding of min and of (2^b − 1)·scale
// (≤ 2^−11 relative each).
// Source: KIVI (Liu et al., 2024, "KIVI: a tuning-free asymmetric 2bit quantization for KV cache"): keys per channel,
// values per token, a full-precision residual until a key group completes; half-precision params as in its kernels.
namespace Engine.Tensors.Quants;

public static class KiviLowBit
{
    /// <summary>Bytes of one packed row of <paramref name="width"/> codes of <paramref name="bits"/> bits.</summary>
    public static int RowBytes(int width, int bits) => (width * bits + 7) / 8;

    /// <summary>Bytes of one group chunk: K and V codes of <paramref name="tokens"/> rows + key params [W, 2] + value
    /// params [tokens, W / C, 2] (halves).</summary>
    public static long GroupBytes(int tokens, int width, int bits, int valueGroup)
        => 2L * tokens * RowBytes(width, bits) + 4L * width + 4L * tokens * (width / valueGroup);

    public static void CheckShape(int width, int bits, int valueGroup)
    {
        if (bits is < 2 or > 4) throw new ArgumentOutOfRangeException(nameof(bits), $"KIVI low-bit width {bits} must be 2, 3 or 4");
        if (width <= 0 || valueGroup <= 0 || width % valueGroup != 0)
            throw new ArgumentException($"KIVI value channel group {valueGroup} must divide the row width {width}");
    }

    /// <summary>Code c of a packed row.</summary>
    public static int Get(ReadOnlySpan<byte> row, int c, int bits)
    {
        int bit = c * bits, i = bit >> 3, sh = bit & 7;
        int w = row[i] | (i + 1 < row.Length ? row[i + 1] << 8 : 0);
        return (w >> sh) & ((1 << bits) - 1);
    }

    /// <summary>ORs code q into slot c of a packed row (the row must be cleared first).</summary>
    public static void Put(Span<byte> row, int c, int bits, int q)
    {
        int bit = c * bits, i = bit >> 3, sh = bit & 7;
        int w = q << sh;
        row[i] |= (byte)w;
        if ((w >> 8) != 0) row[i + 1] |= (byte)(w >> 8);
    }

    /// <summary>Keys of one group: rows [count, width] (row stride <paramref name="srcStride"/>) → codes [count, RowBytes]
    /// and params [width, 2] (scale, min per channel over the count tokens).</summary>
    public static void QuantizeKeys(ReadOnlySpan<float> src, int srcStride, int count, int width, int bits, Span<byte> codes, Span<Half> prm)
    {
        int rb = RowBytes(width, bits), qmax = (1 << bits) - 1;
        codes[..(count * rb)].Clear();
        for (int c = 0; c < width; c++)
        {
            float lo = float.PositiveInfinity, hi = float.NegativeInfinity;
            for (int t = 0; t < count; t++) { float v = src[t * srcStride + c]; lo = MathF.Min(lo, v); hi = MathF.Max(hi, v); }
            if (count == 0) { lo = hi = 0; }
            var (s, m) = Params(lo, hi, qmax, prm.Slice(2 * c, 2));
            float inv = s > 0 ? 1f / s : 0f;
            for (int t = 0; t < count; t++)
                Put(codes.Slice(t * rb, rb), c, bits, Code(src[t * srcStride + c], m, inv, qmax));
        }
    }

    /// <summary>Values: rows [count, width] → codes [count, RowBytes] and params [count, width / valueGroup, 2].</summary>
    public static void QuantizeValues(ReadOnlySpan<float> src, int srcStride, int count, int width, int bits, int valueGroup, Span<byte> codes, Span<Half> prm)
    {
        int rb = RowBytes(width, bits), qmax = (1 << bits) - 1, groups = width / valueGroup;
        codes[..(count * rb)].Clear();
        for (int t = 0; t < count; t++)
        {
            var x = src.Slice(t * srcStride, width);
            for (int gi = 0; gi < groups; gi++)
            {
                float lo = float.PositiveInfinity, hi = float.NegativeInfinity;
                for (int c = gi * valueGroup; c < (gi + 1) * valueGroup; c++) { lo = MathF.Min(lo, x[c]); hi = MathF.Max(hi, x[c]); }
                var (s, m) = Params(lo, hi, qmax, prm.Slice(2 * (t * groups + gi), 2));
                float inv = s > 0 ? 1f / s : 0f;
                for (int c = gi * valueGroup; c < (gi + 1) * valueGroup; c++)
                    Put(codes.Slice(t * rb, rb), c, bits, Code(x[c], m, inv, qmax));
            }
        }
    }

    /// <summary>Decodes key row channels [0, dst.Length): dst[c] = q · scale_c + min_c with the group's params [W, 2].</summary>
    public static void DecodeKey(ReadOnlySpan<byte> row, ReadOnlySpan<Half> prm, int bits, Span<float> dst)
    {
        for (int c = 0; c < dst.Length; c++) dst[c] = Get(row, c, bits) * (float)prm[2 * c] + (float)prm[2 * c + 1];
    }

    /// <summary>Decodes value row channels [0, dst.Length) with this token's params [W / valueGroup, 2].</summary>
    public static void DecodeValue(ReadOnlySpan<byte> row, ReadOnlySpan<Half> prm, int bits, int valueGroup, Span<float> dst)
    {
        for (int c = 0; c < dst.Length; c++)
        {
            int gi = c / valueGroup;
            dst[c] = Get(row, c, bits) * (float)prm[2 * gi] + (float)prm[2 * gi + 1];
        }
    }

    // (scale, min) rounded to half; the codes use the rounded values. A scale that rounds to 0 (or a constant group)
    // decodes every element as min.
    private static (float Scale, float Min) Params(float lo, float hi, int qmax, Span<Half> dst)
    {
        var m = (Half)Math.Clamp(lo, -65504f, 65504f);
        float mf = (float)m;
        var s = (Half)((hi - mf) / qmax);
        if (Half.IsInfinity(s) || Half.IsNaN(s)) s = Half.MaxValue;
        dst[0] = s; dst[1] = m;
        return ((float)s, mf);
    }

    private static int Code(float x, float min, float inv, int qmax) => Math.Clamp((int)MathF.Round((x - min) * inv), 0, qmax);
}
