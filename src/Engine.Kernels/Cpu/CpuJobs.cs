// Owns: the pool jobs of the CPU backend's non-matmul ops (RMSNorm rows, RoPE token rows, attention (row, head)
// items, element-wise chunks). Each job is a pre-allocated object whose fields the backend sets before Pool.Run.
// Invariants: a job only writes the destination slice of its own items; per-thread scratch comes from Scratch.
namespace Engine.Kernels;

internal sealed unsafe class RmsNormJob : CpuJob
{
    public float* X, W, Y;      // X, Y: [rows, Dim]; W: [Dim]
    public int Dim;
    public float Eps;

    public override void Execute(int start, int end, int thread)
    {
        for (int r = start; r < end; r++)
        {
            float* x = X + (long)r * Dim, y = Y + (long)r * Dim;
            float ss = Simd.Reduce(new SquareOp(), new AddOp(), x, Dim, 0f);
            float scale = (float)(1.0 / Math.Sqrt((double)ss / Dim + Eps));
            Simd.Map(new MulScaleOp(scale), x, W, y, Dim);
        }
    }
}

/// <summary>Element-wise binary op over chunks of a flat range.</summary>
internal sealed unsafe class BinaryJob<TOp> : CpuJob where TOp : struct, IBinaryOp
{
    public float* A, B, Dst;

    public override void Execute(int start, int end, int thread) => Simd.Map(default(TOp), A + start, B + start, Dst + start, end - start);
}

internal sealed unsafe class RopeJob : CpuJob
{
    public float* X;            // [tokens, HeadCount, HeadDim]
    public int* Positions;      // [tokens]
    public double* InvFreq;     // [Dims / 2] θ_i / pos = freqScale · base^(−2i/dims) / factor_i
    public int HeadCount, HeadDim, Dims;
    public bool Neox;
    public Scratch Scratch = null!;

    public override void Execute(int start, int end, int thread)
    {
        int half = Dims / 2;
        float* cs = Scratch.Floats(thread, 2L * half);       // [2, half]: cos then sin
        float* sn = cs + half;
        for (int t = start; t < end; t++)
        {
            double pos = Positions[t];
            for (int i = 0; i < half; i++)
            {
                (double s, double c) = Math.SinCos(pos * InvFreq[i]);
                cs[i] = (float)c; sn[i] = (float)s;
            }
            for (int h = 0; h < HeadCount; h++)
            {
                float* v = X + ((long)t * HeadCount + h) * HeadDim;
                if (Neox)
                {
                    for (int i = 0; i < half; i++)
                    {
                        float x0 = v[i], x1 = v[i + half];
                        v[i] = x0 * cs[i] - x1 * sn[i];
                        v[i + half] = x0 * sn[i] + x1 * cs[i];
                    }
                }
                else
                {
                    for (int i = 0; i < half; i++)
                    {
                        float x0 = v[2 * i], x1 = v[2 * i + 1];
                        v[2 * i] = x0 * cs[i] - x1 * sn[i];
                        v[2 * i + 1] = x0 * sn[i] + x1 * cs[i];
                    }
                }
            }
        }
    }
}

/// <summary>
/// Causal GQA attention. Grouped mode: one item = one (query row, KV head) and all query heads of the group pass over
/// the KV rows together, so each K/V row is read from memory once per group (decode at long context is bound by KV
/// reads). Per-head mode (when there are too few (row, KV head) items to keep every thread busy): one item = one
/// (query row, head). Both run the same per-head instruction sequence — scores (SIMD dots) into a contiguous buffer,
/// exp(s − max), sum, then Σ p·V by axpy in cache order, then 1/sum — so they give bitwise identical results.
/// </summary>
internal sealed unsafe class AttentionJob : CpuJob
{
    public float* Q;            // [n, HeadCount, HeadDim]
    public float* Out;          // [n, HeadCount, HeadDim]
    public int* Positions;      // [n]
    public KvPage* Pages;
    public int PageCount, TotalTokens;
    public AttentionParams P;
    public bool Grouped;
    public Scratch Scratch = null!;

    public override void Execute(int start, int end, int thread)
    {
        int group = P.HeadCount / P.KvHeadCount;
        int heads = Grouped ? group : 1;                                    // query heads handled per item
        int stride = Math.Max(1, TotalTokens);
        float* scores = Scratch.Floats(thread, (long)heads * stride + 2L * heads);   // [heads, TotalTokens] + max[heads] + sum[heads]
        float* max = scores + (long)heads * stride, sum = max + heads;
        for (int item = start; item < end; item++)
        {
            int t, h0, kvh;
            if (Grouped) { t = item / P.KvHeadCount; kvh = item % P.KvHeadCount; h0 = kvh * group; }
            else { t = item / P.HeadCount; h0 = item % P.HeadCount; kvh = h0 / group; }
            Run(t, h0, kvh, heads, scores, stride, max, sum);
        }
    }

    private void Run(int t, int h0, int kvh, int heads, float* scores, int stride, float* max, float* sum)
    {
        int hd = P.HeadDim, kvOff = kvh * hd, qpos = Positions[t];
        float* q = Q + ((long)t * P.HeadCount + h0) * hd;                   // [heads, hd] consecutive query heads
        float* o = Out + ((long)t * P.HeadCount + h0) * hd;
        for (int g = 0; g < heads; g++) max[g] = float.NegativeInfinity;

        int m = 0;
        for (int pi = 0; pi < PageCount; pi++)
        {
            var pg = Pages[pi];
            int visible = Math.Clamp(qpos - pg.StartPosition + 1, 0, pg.TokenCount);
            float* k = (float*)pg.K + kvOff;
            for (int j = 0; j < visible; j++, m++)
            {
                float* kj = k + (long)j * pg.RowStride;
                for (int g = 0; g < heads; g++)
                {
                    float s = Simd.Dot(q + g * hd, kj, hd) * P.Scale;
                    scores[(long)g * stride + m] = s;
                    if (s > max[g]) max[g] = s;
                }
            }
        }
        new Span<float>(o, heads * hd).Clear();
        if (m == 0) return;                                                  // nothing visible → zeros (as the reference)
        for (int g = 0; g < heads; g++)
        {
            float* sg = scores + (long)g * stride;
            Simd.Map(new ExpSubOp(max[g]), sg, sg, m);
            sum[g] = Simd.Reduce(new IdentityOp(), new AddOp(), sg, m, 0f);
        }

        m = 0;
        for (int pi = 0; pi < PageCount; pi++)
        {
            var pg = Pages[pi];
            int visible = Math.Clamp(qpos - pg.StartPosition + 1, 0, pg.TokenCount);
            float* v = (float*)pg.V + kvOff;
            for (int j = 0; j < visible; j++, m++)
            {
                float* vj = v + (long)j * pg.RowStride;
                for (int g = 0; g < heads; g++) Simd.Axpy(scores[(long)g * stride + m], vj, o + g * hd, hd);
            }
        }
        for (int g = 0; g < heads; g++) Simd.Map(new ScaleOp(1f / sum[g]), o + g * hd, o + g * hd, hd);
    }
}
