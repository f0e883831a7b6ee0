// Owns: decoding one cached K or V row of a KvPage of any tier (F32, F16, Int8, Int4) to float32 — the definition of
// what each KvElementType means (see KvPage), used by the reference attention and by the CPU backend for non-F32 pages.
// Invariants: decodes channels [0, width) of row j; never reads outside the page's row, scale and parameter arrays.
// Kivi (2/3/4-bit) follows Engine.Tensors.Quants.KiviLowBit, the scalar reference of that tier.
// Sources: int8 per-token symmetric scales (as in llama.cpp's q8 KV cache, per group); int4 asymmetric KIVI layout
// (Liu et al., 2024, "KIVI: a tuning-free asymmetric 2bit quantization for KV cache": keys per channel, values per token).
using Engine.Tensors.Quants;

namespace Engine.Kernels;

public static unsafe class KvDecode
{
    /// <summary>dst[c] = decoded element c of K (<paramref name="key"/>) or V row j of the page, c &lt; width.</summary>
    public static void Row(in KvPage page, bool key, int j, float* dst, int width)
    {
        nint data = key ? page.K : page.V;
        long stride = page.RowStride;
        switch (page.Type)
        {
            case KvElementType.F32:
                new ReadOnlySpan<float>((float*)data + j * stride, width).CopyTo(new Span<float>(dst, width));
                break;
            case KvElementType.F16:
                HalfConvert.F16ToFloat(SimdWidth.Widest, (ushort*)data + j * stride, dst, width);
                break;
            case KvElementType.Int8:
            {
                sbyte* row = (sbyte*)data + j * stride;
                int g = page.GroupSize, groups = (int)(stride / g);
                float* sc = (float*)(key ? page.KScale : page.VScale) + (long)j * groups;
                for (int c = 0; c < width; c++) dst[c] = row[c] * sc[c / g];
                break;
            }
            case KvElementType.Int4:
            {
                byte* row = (byte*)data + j * (stride / 2);
                int g = page.GroupSize;
                if (key)
                {
                    float* prm = (float*)page.KScale + (long)(j / g) * stride * 2;      // [channel, (scale, min)]
                    for (int c = 0; c < width; c++)
                    {
                        int qv = (row[c >> 1] >> ((c & 1) * 4)) & 15;
                        dst[c] = qv * prm[2 * c] + prm[2 * c + 1];
                    }
                }
                else
                {
                    float* prm = (float*)page.VScale + (long)j * (stride / g) * 2;      // [channel group, (scale, min)]
                    for (int c = 0; c < width; c++)
                    {
                        int qv = (row[c >> 1] >> ((c & 1) * 4)) & 15;
                        dst[c] = qv * prm[2 * (c / g)] + prm[2 * (c / g) + 1];
                    }
                }
                break;
            }
            case KvElementType.Kivi:
            {
                int rb = KiviLowBit.RowBytes((int)stride, page.Bits);
                var row = new ReadOnlySpan<byte>((byte*)data + (long)j * rb, rb);
                if (key) KiviLowBit.DecodeKey(row, new ReadOnlySpan<Half>((Half*)page.KScale, (int)stride * 2), page.Bits, new Span<float>(dst, width));
                else
                {
                    int groups = (int)(stride / page.GroupSize);
                    KiviLowBit.DecodeValue(row, new ReadOnlySpan<Half>((Half*)page.VScale + (long)j * groups * 2, groups * 2), page.Bits, page.GroupSize, new Span<float>(dst, width));
                }
                break;
            }
            default: throw new NotSupportedException($"KV element type {page.Type}");
        }
    }

    /// <summary>Bytes one token row of K plus V occupies in a page of this type (data + scales), kvDim channels.</summary>
    public static double BytesPerToken(KvElementType type, int kvDim, int groupSize) => type switch
    {
        KvElementType.F32 => 2.0 * kvDim * 4,
        KvElementType.F16 => 2.0 * kvDim * 2,
        KvElementType.Int8 => 2.0 * (kvDim + 4.0 * kvDim / groupSize),
        // keys: nibbles + (scale, min) per channel shared by G tokens; values: nibbles + (scale, min) per G channels
        KvElementType.Int4 => kvDim / 2.0 + 8.0 * kvDim / groupSize + kvDim / 2.0 + 8.0 * kvDim / groupSize,
        _ => throw new NotSupportedException($"KV element type {type}"),
    };
}

/// <summary>Sub-runs of KV pages (policies present slices of stored pages to attention).</summary>
public static class KvPages
{
    /// <summary>Tokens [offset, offset + count) of a page as a page of the same tier. Int4 slices must start at a token-group boundary.</summary>
    public static KvPage Slice(in KvPage page, int offset, int count)
    {
        if (offset < 0 || count < 0 || offset + count > page.TokenCount)
            throw new ArgumentOutOfRangeException(nameof(offset), $"slice [{offset}, {offset + count}) outside a page of {page.TokenCount} tokens");
        long o = offset, s = page.RowStride;
        int g = page.GroupSize;
        return page.Type switch
        {
            KvElementType.F32 => page with { K = page.K + (nint)(o * s * 4), V = page.V + (nint)(o * s * 4), TokenCount = count, StartPosition = page.StartPosition + offset },
            KvElementType.F16 => page with { K = page.K + (nint)(o * s * 2), V = page.V + (nint)(o * s * 2), TokenCount = count, StartPosition = page.StartPosition + offset },
            KvElementType.Int8 => page with
            {
                K = page.K + (nint)(o * s), V = page.V + (nint)(o * s), KScale = page.KScale + (nint)(o * (s / g) * 4),
                VScale = page.VScale + (nint)(o * (s / g) * 4), TokenCount = count, StartPosition = page.StartPosition + offset,
            },
            KvElementType.Int4 => offset % g != 0
                ? throw new ArgumentException($"an Int4 page slice must start at a multiple of the group size {g} (offset {offset})")
                : page with
                {
                    K = page.K + (nint)(o * s / 2), V = page.V + (nint)(o * s / 2), KScale = page.KScale + (nint)(o / g * s * 2 * 4),
                    VScale = page.VScale + (nint)(o * (s / g) * 2 * 4), TokenCount = count, StartPosition = page.StartPosition + offset,
                },
            KvElementType.Kivi => page with
            {
                K = page.K + (nint)(o * KiviLowBit.RowBytes((int)s, page.Bits)), V = page.V + (nint)(o * KiviLowBit.RowBytes((int)s, page.Bits)),
                VScale = page.VScale + (nint)(o * (s / g) * 2 * 2), TokenCount = count, StartPosition = page.StartPosition + offset,
            },
            _ => throw new NotSupportedException($"KV element type {page.Type}"),
        };
    }
}
