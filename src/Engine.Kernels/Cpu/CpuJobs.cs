// Owns: the pool jobs of the CPU backend's non-matmul ops (RMSNorm rows, RoPE token rows, attention (row, head)
// items, element-wise chunks). Each job is a pre-allocated object whose fields the backend sets before Pool.Run.
// Invariants: a job only writes the destination slice of its own items; per-thread scratch comes from Scratch.
namespace Engine.Kernels;

internal sealed unsafe class RmsNormJob : CpuJob
{
    public SimdWidth Isa = SimdWidth.Widest;   // the backend's CpuKernelOptions.Width
    public float* X, W, Y;      // X, Y: [rows, Dim]; W: [Dim]
    public int Dim;
    public float Eps;

    public override void Execute(int start, int end, int thread)
    {
        for (int r = start; r < end; r++)
        {
            float* x = X + (long)r * Dim, y = Y + (long)r * Dim;
            float ss = Simd.Reduce(Isa, new SquareOp(), new AddOp(), x, Dim, 0f);
            float scale = (float)(1.0 / Math.Sqrt((double)ss / Dim + Eps));
            Simd.Map(Isa, new MulScaleOp(scale), x, W, y, Dim);
        }
    }
}

/// <summary>Element-wise binary op over chunks of a flat range.</summary>
internal sealed unsafe class BinaryJob<TOp> : CpuJob where TOp : struct, IBinaryOp
{
    public SimdWidth Isa = SimdWidth.Widest;   // the backend's CpuKernelOptions.Width
    public float* A, B, Dst;

    public override void Execute(int start, int end, int thread) => Simd.Map(Isa, default(TOp), A + start, B + start, Dst + start, end - start);
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
/// Causal GQA attention, token-major: an item is (query row t, block of cached tokens) and handles every head, walking
/// the cached K/V rows in memory order — each row ([kvHeads · headDim] contiguous) is read once and dotted with all
/// query heads (head h uses KV head h / group), which streams the cache sequentially instead of striding over it per
/// head. Per head: scores (SIMD dots) into a contiguous buffer, exp(s − max), sum, then Σ p·V by axpy.
/// With one block per row (BlockCount = 1) the item writes the normalised output directly; with several blocks
/// (decode: few query rows, long cache — flash-decoding split) each item writes a partial (max, sum, Σ p·V) that
/// <see cref="Merge"/> combines: o = Σ_b e^{m_b − M} acc_b / Σ_b e^{m_b − M} l_b.
/// </summary>
internal sealed unsafe class AttentionJob : CpuJob
{
    public CpuKernelOptions Options = CpuKernelOptions.Default;   // the backend's kernel variants
    public SimdWidth Isa = SimdWidth.Widest;                      // Options.Width
    public float* Q;            // [n, HeadCount, HeadDim]
    public float* Out;          // [n, HeadCount, HeadDim]
    public int* Positions;      // [n]
    public KvPage* Pages;
    public int* PageStart;      // [PageCount] logical index of each page's first token
    public int PageCount, TotalTokens;
    public AttentionParams P;
    public int BlockTokens, BlockCount;
    public float* Partials;     // [n, BlockCount, HeadCount, HeadDim + 2] (acc, max, sum) when BlockCount > 1
    public Scratch Scratch = null!;
    public Scratch MassScratch = null!;
    public bool General;        // some page is not F32, or WithMass: run RangeGeneral
    public bool Quant;          // General and the page list suits AttentionRangeQuant (Int8/Int4 pages, F32 mixed in): run it
    public bool WithMass;       // accumulate softmax weights per thread into MassScratch [KvHeadCount, TotalTokens] (BlockCount = 1)

    public int PartialStride => P.HeadDim + 2;

    public override void Execute(int start, int end, int thread)
    {
        int heads = P.HeadCount, bt = Math.Max(1, BlockTokens);
        int kvDim = P.KvHeadCount * P.HeadDim;
        // [heads, BlockTokens] scores + max[heads] + sum[heads] + one decoded K/V row [kvDim] for non-F32 pages
        // (+ the quantized path's work buffer when Quant)
        long work = Quant ? AttentionRangeQuant.WorkFloats(P) : 0;
        float* scores = Scratch.Floats(thread, (long)heads * bt + 2L * heads + kvDim + 16 + work);
        float* max = scores + (long)heads * bt, sum = max + heads;
        float* row = (float*)(((nint)(sum + heads) + 63) & ~(nint)63);
        float* quantWork = row + kvDim;
        float* mass = WithMass ? MassScratch.Floats(thread, (long)P.KvHeadCount * TotalTokens) : null;
        for (int item = start; item < end; item++)
        {
            int t = item / BlockCount, b = item % BlockCount;
            int lo = b * BlockTokens, hi = Math.Min(TotalTokens, lo + BlockTokens);
            if (BlockCount == 1)
            {
                float* o = Out + (long)t * heads * P.HeadDim;
                if (Quant) AttentionRangeQuant.Run(Isa, Q + (long)t * heads * P.HeadDim, Pages, PageStart, PageCount, lo, hi, Positions[t], P, scores, bt, max, sum,
                    o, P.HeadDim, quantWork, mass, TotalTokens);
                else if (General) RangeGeneral(t, lo, hi, scores, bt, max, sum, o, P.HeadDim, row, mass);
                else Range(t, lo, hi, scores, bt, max, sum, o, P.HeadDim);
                for (int h = 0; h < heads; h++)
                {
                    float* oh = o + (long)h * P.HeadDim;
                    if (sum[h] > 0) Simd.Map(Isa, new ScaleOp(1f / sum[h]), oh, oh, P.HeadDim);
                }
            }
            else
            {
                float* part = Partials + (long)item * heads * PartialStride;
                if (Quant) AttentionRangeQuant.Run(Isa, Q + (long)t * heads * P.HeadDim, Pages, PageStart, PageCount, lo, hi, Positions[t], P, scores, bt, max, sum,
                    part, PartialStride, quantWork, null, TotalTokens);
                else if (General) RangeGeneral(t, lo, hi, scores, bt, max, sum, part, PartialStride, row, null);
                else Range(t, lo, hi, scores, bt, max, sum, part, PartialStride);
                for (int h = 0; h < heads; h++)
                {
                    part[(long)h * PartialStride + P.HeadDim] = max[h];
                    part[(long)h * PartialStride + P.HeadDim + 1] = sum[h];
                }
            }
        }
    }

    /// <summary>Unnormalised attention of row t over cached tokens [lo, hi) (logical order): acc_h = Σ e^{s−max_h} v,
    /// sum_h = Σ e^{s−max_h}; acc rows are <paramref name="accStride"/> floats apart. Zero visible tokens → acc 0, sum 0.</summary>
    private void Range(int t, int lo, int hi, float* scores, int bt, float* max, float* sum, float* acc, int accStride)
    {
        int heads = P.HeadCount, hd = P.HeadDim, group = P.HeadCount / P.KvHeadCount, qpos = Positions[t];
        float* q = Q + (long)t * heads * hd;
        if (AttentionRangeF32Walk.Applies(Options, Isa, P))
        {
            AttentionRangeF32Walk.Run(Options, Isa, q, Pages, PageStart, PageCount, lo, hi, qpos, P, scores, bt, max, sum, acc, accStride);
            return;
        }
        if (AttentionRange512.Applies(Options, Isa, hd))
        {
            AttentionRange512.Run(Options, Isa, q, Pages, PageStart, PageCount, lo, hi, qpos, P, scores, bt, max, sum, acc, accStride);
            return;
        }
        for (int h = 0; h < heads; h++) { max[h] = float.NegativeInfinity; sum[h] = 0; new Span<float>(acc + (long)h * accStride, hd).Clear(); }

        int c = 0;
        for (int pi = 0; pi < PageCount; pi++)
        {
            var pg = Pages[pi];
            int j0 = Math.Max(0, lo - PageStart[pi]);
            int j1 = Math.Min(Math.Min(pg.TokenCount, hi - PageStart[pi]), qpos - pg.StartPosition + 1);
            for (int j = j0; j < j1; j++, c++)
            {
                float* k = (float*)pg.K + (long)j * pg.RowStride;
                for (int h = 0; h < heads; h++)
                {
                    float s = Simd.Dot(Isa, q + (long)h * hd, k + h / group * hd, hd) * P.Scale;
                    scores[(long)h * bt + c] = s;
                    if (s > max[h]) max[h] = s;
                }
            }
        }
        if (c == 0) return;
        for (int h = 0; h < heads; h++)
        {
            float* sh = scores + (long)h * bt;
            Simd.Map(Isa, new ExpSubOp(max[h]), sh, sh, c);
            sum[h] = Simd.Reduce(Isa, new IdentityOp(), new AddOp(), sh, c, 0f);
        }
        c = 0;
        for (int pi = 0; pi < PageCount; pi++)
        {
            var pg = Pages[pi];
            int j0 = Math.Max(0, lo - PageStart[pi]);
            int j1 = Math.Min(Math.Min(pg.TokenCount, hi - PageStart[pi]), qpos - pg.StartPosition + 1);
            for (int j = j0; j < j1; j++, c++)
            {
                float* v = (float*)pg.V + (long)j * pg.RowStride;
                for (int h = 0; h < heads; h++) Simd.Axpy(Isa, scores[(long)h * bt + c], v + h / group * hd, acc + (long)h * accStride, hd);
            }
        }
    }

    /// <summary><see cref="Range"/> for page lists with non-F32 tiers (each row dequantized once into <paramref name="row"/>
    /// for all heads) and/or attention-mass accumulation into <paramref name="mass"/> [KvHeadCount, TotalTokens]. Kept
    /// separate so the plain float32 loop stays exactly as tuned.</summary>
    private void RangeGeneral(int t, int lo, int hi, float* scores, int bt, float* max, float* sum, float* acc, int accStride, float* row, float* mass)
    {
        int heads = P.HeadCount, hd = P.HeadDim, group = P.HeadCount / P.KvHeadCount, qpos = Positions[t], kvDim = P.KvHeadCount * hd;
        float* q = Q + (long)t * heads * hd;
        for (int h = 0; h < heads; h++) { max[h] = float.NegativeInfinity; sum[h] = 0; new Span<float>(acc + (long)h * accStride, hd).Clear(); }
        KvDecodeSimd.Forget();                                                    // page memory may have been reused since the last call

        int c = 0;
        for (int pi = 0; pi < PageCount; pi++)
        {
            var pg = Pages[pi];
            int j0 = Math.Max(0, lo - PageStart[pi]);
            int j1 = Math.Min(Math.Min(pg.TokenCount, hi - PageStart[pi]), qpos - pg.StartPosition + 1);
            if (pg.Type == KvElementType.F32)
                for (int j = j0; j < j1; j++, c++)
                {
                    float* k = (float*)pg.K + (long)j * pg.RowStride;
                    for (int h = 0; h < heads; h++)
                    {
                        float s = Simd.Dot(Isa, q + (long)h * hd, k + h / group * hd, hd) * P.Scale;
                        scores[(long)h * bt + c] = s;
                        if (s > max[h]) max[h] = s;
                    }
                }
            else
                for (int j = j0; j < j1; j++, c++)
                {
                    KvDecodeSimd.Row(pg, true, j, row, kvDim);                   // other tiers: dequantize the row once for all heads
                    for (int h = 0; h < heads; h++)
                    {
                        float s = Simd.Dot(Isa, q + (long)h * hd, row + h / group * hd, hd) * P.Scale;
                        scores[(long)h * bt + c] = s;
                        if (s > max[h]) max[h] = s;
                    }
                }
        }
        if (c == 0) return;
        for (int h = 0; h < heads; h++)
        {
            float* sh = scores + (long)h * bt;
            Simd.Map(Isa, new ExpSubOp(max[h]), sh, sh, c);
            sum[h] = Simd.Reduce(Isa, new IdentityOp(), new AddOp(), sh, c, 0f);
        }
        c = 0;
        for (int pi = 0; pi < PageCount; pi++)
        {
            var pg = Pages[pi];
            int j0 = Math.Max(0, lo - PageStart[pi]);
            int j1 = Math.Min(Math.Min(pg.TokenCount, hi - PageStart[pi]), qpos - pg.StartPosition + 1);
            if (pg.Type == KvElementType.F32)
                for (int j = j0; j < j1; j++, c++)
                {
                    float* v = (float*)pg.V + (long)j * pg.RowStride;
                    for (int h = 0; h < heads; h++) Simd.Axpy(Isa, scores[(long)h * bt + c], v + h / group * hd, acc + (long)h * accStride, hd);
                }
            else
                for (int j = j0; j < j1; j++, c++)
                {
                    KvDecodeSimd.Row(pg, false, j, row, kvDim);
                    for (int h = 0; h < heads; h++) Simd.Axpy(Isa, scores[(long)h * bt + c], row + h / group * hd, acc + (long)h * accStride, hd);
                }
        }
        if (mass == null) return;
        c = 0;
        for (int pi = 0; pi < PageCount; pi++)
        {
            var pg = Pages[pi];
            int j0 = Math.Max(0, lo - PageStart[pi]);
            int j1 = Math.Min(Math.Min(pg.TokenCount, hi - PageStart[pi]), qpos - pg.StartPosition + 1);
            for (int j = j0; j < j1; j++, c++)
                for (int h = 0; h < heads; h++)
                    mass[(long)(h / group) * TotalTokens + PageStart[pi] + j] += scores[(long)h * bt + c] / sum[h];
        }
    }

    /// <summary>Combines the block partials of every (row, head) into Out (caller thread; cost n·heads·blocks·hd).</summary>
    public void Merge(int n)
    {
        int heads = P.HeadCount, hd = P.HeadDim, ps = PartialStride;
        for (int t = 0; t < n; t++)
            for (int h = 0; h < heads; h++)
            {
                float* o = Out + ((long)t * heads + h) * hd;
                float m = float.NegativeInfinity;
                for (int b = 0; b < BlockCount; b++)
                    m = MathF.Max(m, Partials[(((long)t * BlockCount + b) * heads + h) * ps + hd]);
                new Span<float>(o, hd).Clear();
                if (float.IsNegativeInfinity(m)) continue;                   // nothing visible → zeros (as the reference)
                float l = 0;
                for (int b = 0; b < BlockCount; b++)
                {
                    float* part = Partials + (((long)t * BlockCount + b) * heads + h) * ps;
                    if (part[hd + 1] == 0) continue;
                    float f = MathF.Exp(part[hd] - m);
                    l += f * part[hd + 1];
                    Simd.Axpy(Isa, f, part, o, hd);
                }
                Simd.Map(Isa, new ScaleOp(1f / l), o, o, hd);
            }
    }
}
