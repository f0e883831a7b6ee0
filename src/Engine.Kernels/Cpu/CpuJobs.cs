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

/// <summary>Causal GQA attention; one item = one (query row, head). Two passes: scores + softmax, then Σ p·V.</summary>
internal sealed unsafe class AttentionJob : CpuJob
{
    public float* Q;            // [n, HeadCount, HeadDim]
    public float* Out;          // [n, HeadCount, HeadDim]
    public int* Positions;      // [n]
    public KvPage* Pages;
    public int PageCount, TotalTokens;
    public AttentionParams P;
    public Scratch Scratch = null!;

    public override void Execute(int start, int end, int thread)
    {
        int hd = P.HeadDim, group = P.HeadCount / P.KvHeadCount;
        float* scores = Scratch.Floats(thread, Math.Max(1, TotalTokens));     // [visible cached tokens]
        for (int item = start; item < end; item++)
        {
            int t = item / P.HeadCount, h = item % P.HeadCount;
            float* q = Q + (long)item * hd;
            float* o = Out + (long)item * hd;
            int kvOff = h / group * hd, qpos = Positions[t];

            int m = 0;
            float max = float.NegativeInfinity;
            for (int pi = 0; pi < PageCount; pi++)
            {
                var pg = Pages[pi];
                int visible = Math.Clamp(qpos - pg.StartPosition + 1, 0, pg.TokenCount);
                float* k = (float*)pg.K + kvOff;
                for (int j = 0; j < visible; j++)
                {
                    float s = Simd.Dot(q, k + (long)j * pg.RowStride, hd) * P.Scale;
                    scores[m++] = s;
                    if (s > max) max = s;
                }
            }
            new Span<float>(o, hd).Clear();
            if (m == 0) continue;                                               // nothing visible → zeros (as the reference)
            Simd.Map(new ExpSubOp(max), scores, scores, m);
            float sum = Simd.Reduce(new IdentityOp(), new AddOp(), scores, m, 0f);

            m = 0;
            for (int pi = 0; pi < PageCount; pi++)
            {
                var pg = Pages[pi];
                int visible = Math.Clamp(qpos - pg.StartPosition + 1, 0, pg.TokenCount);
                float* v = (float*)pg.V + kvOff;
                for (int j = 0; j < visible; j++) Simd.Axpy(scores[m++], v + (long)j * pg.RowStride, o, hd);
            }
            Simd.Map(new ScaleOp(1f / sum), o, o, hd);
        }
    }
}
