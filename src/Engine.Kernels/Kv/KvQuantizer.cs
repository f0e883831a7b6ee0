// Owns: quantizing float32 K/V rows into the Int8 and Int4 (KIVI) page layouts that KvDecode defines.
// Invariants: Int8 is symmetric per (token, channel group): s = absmax / 127, q = round(x / s) clamped to ±127 (s = 0
// for an all-zero group). Int4 is asymmetric: scale = (max − min) / 15, q = round((x − min) / scale) in 0..15; keys are
// grouped per channel over G tokens, values per token over G channels. Round-trip error ≤ scale / 2 per element.
// Source: KIVI (Liu et al., 2024) for the int4 grouping; per-token int8 as in common KV-cache quantization.
namespace Engine.Kernels;

public static unsafe class KvQuantizer
{
    /// <summary>Int8: rows [count, width] (row stride srcStride) → q [count, width] sbyte, scales [count, width / group].</summary>
    public static void Int8(float* src, long srcStride, int count, int width, int group, sbyte* q, float* scales)
    {
        if (group <= 0 || width % group != 0) throw new ArgumentException($"int8 group {group} must divide the row width {width}");
        int groups = width / group;
        for (int t = 0; t < count; t++)
        {
            float* x = src + t * srcStride;
            for (int gi = 0; gi < groups; gi++)
            {
                float amax = 0;
                for (int c = gi * group; c < (gi + 1) * group; c++) amax = MathF.Max(amax, MathF.Abs(x[c]));
                float s = amax / 127f, inv = s > 0 ? 1f / s : 0f;
                scales[(long)t * groups + gi] = s;
                for (int c = gi * group; c < (gi + 1) * group; c++)
                    q[(long)t * width + c] = (sbyte)Math.Clamp((int)MathF.Round(x[c] * inv), -127, 127);
            }
        }
    }

    /// <summary>Int4 keys: count tokens (a multiple of group, or the last partial group) of rows [count, width] → nibbles
    /// [count, width / 2] and params [ceil(count / group), width, 2] (scale, min) per (token group, channel).</summary>
    public static void Int4Keys(float* src, long srcStride, int count, int width, int group, byte* q, float* prm)
    {
        if (group <= 0 || (width & 1) != 0) throw new ArgumentException($"int4 keys need an even width ({width}) and group > 0");
        new Span<byte>(q, count * (width / 2)).Clear();
        for (int g0 = 0, gi = 0; g0 < count; g0 += group, gi++)
        {
            int g1 = Math.Min(count, g0 + group);
            for (int c = 0; c < width; c++)
            {
                float lo = float.PositiveInfinity, hi = float.NegativeInfinity;
                for (int t = g0; t < g1; t++) { float v = src[t * srcStride + c]; lo = MathF.Min(lo, v); hi = MathF.Max(hi, v); }
                float scale = (hi - lo) / 15f, inv = scale > 0 ? 1f / scale : 0f;
                prm[((long)gi * width + c) * 2] = scale;
                prm[((long)gi * width + c) * 2 + 1] = lo;
                for (int t = g0; t < g1; t++)
                {
                    int qv = Math.Clamp((int)MathF.Round((src[t * srcStride + c] - lo) * inv), 0, 15);
                    q[(long)t * (width / 2) + (c >> 1)] |= (byte)(qv << ((c & 1) * 4));
                }
            }
        }
    }

    /// <summary>Int4 values: rows [count, width] → nibbles [count, width / 2], params [count, width / group, 2] (scale, min).</summary>
    public static void Int4Values(float* src, long srcStride, int count, int width, int group, byte* q, float* prm)
    {
        if (group <= 0 || width % group != 0 || (width & 1) != 0) throw new ArgumentException($"int4 value group {group} must divide the even width {width}");
        int groups = width / group;
        new Span<byte>(q, count * (width / 2)).Clear();
        for (int t = 0; t < count; t++)
        {
            float* x = src + t * srcStride;
            for (int gi = 0; gi < groups; gi++)
            {
                float lo = float.PositiveInfinity, hi = float.NegativeInfinity;
                for (int c = gi * group; c < (gi + 1) * group; c++) { lo = MathF.Min(lo, x[c]); hi = MathF.Max(hi, x[c]); }
                float scale = (hi - lo) / 15f, inv = scale > 0 ? 1f / scale : 0f;
                prm[((long)t * groups + gi) * 2] = scale;
                prm[((long)t * groups + gi) * 2 + 1] = lo;
                for (int c = gi * group; c < (gi + 1) * group; c++)
                {
                    int qv = Math.Clamp((int)MathF.Round((x[c] - lo) * inv), 0, 15);
                    q[(long)t * (width / 2) + (c >> 1)] |= (byte)(qv << ((c & 1) * 4));
                }
            }
        }
    }
}
