// Owns: causal grouped-query attention over the device KV block pool, for decode and prefill rows alike, split
// over the context (flash-decoding): pass 1 gives each (row, head, split of SplitTokens cached tokens) to one lane
// group, which runs an online softmax over its tokens and leaves (max m, sum l, unnormalised acc[headDim]) in
// scratch; pass 2 merges the splits per output element: out = Σ_s acc_s·e^(m_s − M) / Σ_s l_s·e^(m_s − M).
// A row at position p of its sequence attends to positions 0..p (every one was written before this launch); its
// block table starts at rowTable[row] in the flat tables array, so one launch serves a batch that mixes sequences.
// Query head h reads KV head h / (heads / kvHeads). Invariants: q and out are [rows, heads · headDim]; scratch acc
// is [rows, heads, splits, headDim], ml is [rows, heads, splits, 2]; splits · SplitTokens ≥ max position + 1.
// Source: Dao et al. FlashAttention (online softmax), flash-decoding (split-K over the context), vLLM
// PagedAttention (block tables); re-implemented.
using ILGPU;

namespace Engine.Gpu.Kernels;

/// <summary>Attention launch arguments.</summary>
public struct AttentionArgs
{
    public int Rows, Heads, KvHeads, HeadDim, BlockSize, KvDim, Splits, SplitTokens, F16;
    public float Scale;
}

public static class PagedAttentionKernel
{
    /// <summary>Pass 1: one lane group per (row, head, split).</summary>
    public static void Partial(ArrayView<float> q, ArrayView<int> positions, ArrayView<int> rowTable, ArrayView<int> tables,
        ArrayView<float> kf, ArrayView<float> vf, ArrayView<ushort> kh, ArrayView<ushort> vh,
        ArrayView<float> acc, ArrayView<float> ml, AttentionArgs a)
    {
        int lanes = GpuMath.Lanes(), lane = GpuMath.Lane(lanes), unit = GpuMath.Unit(lanes);
        if (unit >= a.Rows * a.Heads * a.Splits) return;
        int split = unit % a.Splits, rh = unit / a.Splits, head = rh % a.Heads, row = rh / a.Heads;
        int kvHead = head / (a.Heads / a.KvHeads);
        int len = positions[row] + 1;
        int t0 = split * a.SplitTokens, t1 = t0 + a.SplitTokens < len ? t0 + a.SplitTokens : len;
        long qb = ((long)row * a.Heads + head) * a.HeadDim;
        long ab = (long)unit * a.HeadDim;
        int tb = rowTable[row];
        for (int d = lane; d < a.HeadDim; d += lanes) acc[ab + d] = 0f;
        float m = float.NegativeInfinity, l = 0f;
        for (int t = t0; t < t1; t++)
        {
            int block = tables[tb + t / a.BlockSize];
            long kb = ((long)block * a.BlockSize + t % a.BlockSize) * a.KvDim + (long)kvHead * a.HeadDim;
            float dot = 0;
            for (int d = lane; d < a.HeadDim; d += lanes)
                dot += q[qb + d] * (a.F16 != 0 ? GpuMath.HalfToFloat(kh[kb + d]) : kf[kb + d]);
            float s = GpuMath.LaneSum(dot, lanes) * a.Scale;
            float mNew = s > m ? s : m;
            float corr = (float)System.Math.Exp(m - mNew);   // 0 on the first token (m = -inf)
            float p = (float)System.Math.Exp(s - mNew);
            l = l * corr + p;
            for (int d = lane; d < a.HeadDim; d += lanes)
                acc[ab + d] = acc[ab + d] * corr + p * (a.F16 != 0 ? GpuMath.HalfToFloat(vh[kb + d]) : vf[kb + d]);
            m = mNew;
        }
        if (lane == 0) { ml[2L * unit] = m; ml[2L * unit + 1] = l; }
    }

    /// <summary>Pass 2: one thread per output element (row, head, d).</summary>
    public static void Combine(Index1D i, ArrayView<float> acc, ArrayView<float> ml, ArrayView<float> output, AttentionArgs a)
    {
        int d = i % a.HeadDim, rh = i / a.HeadDim;
        long u0 = (long)rh * a.Splits;
        float mMax = float.NegativeInfinity;
        for (int s = 0; s < a.Splits; s++) { float m = ml[2 * (u0 + s)]; mMax = m > mMax ? m : mMax; }
        float num = 0, den = 0;
        for (int s = 0; s < a.Splits; s++)
        {
            float l = ml[2 * (u0 + s) + 1];
            if (l == 0f) continue;   // a split past this row's causal end
            float w = (float)System.Math.Exp(ml[2 * (u0 + s)] - mMax);
            num += w * acc[(u0 + s) * a.HeadDim + d];
            den += w * l;
        }
        output[i] = num / den;
    }
}
