// Owns: the scalar reference implementation of IBackend — the definition every optimised backend is tested against.
// Invariants: never optimised; plain loops; every reduction (dot, sum of squares, softmax sum, attention) accumulates
// in float64; weights are decoded row by row with RowDecode (the shared scalar dequantizer). Single-threaded.
// Sources: formulas as in llama.cpp's ggml ops and shared/reference/README.md (RMSNorm x/sqrt(mean(x²)+eps)·w,
// RoPE θ_i = pos·freqScale·base^(−2i/dims) / freqFactors[i], GQA h → h / (heads/kvHeads), causal softmax attention).
namespace Engine.Kernels;

using Engine.Tensors;

public sealed unsafe class ReferenceBackend : IBackend
{
    public string Name => "reference";

    public void MatMul(ReadOnlySpan<float> x, int n, TensorView w, Span<float> y)
    {
        OpChecks.MatMul(x.Length, n, w, y.Length);
        int cols = w.RowLength, rows = w.RowCount;
        var row = new float[cols];                                   // [cols] one decoded weight row
        for (int r = 0; r < rows; r++)
        {
            RowDecode.Row(w.Type, w.Row(r), row);
            for (int t = 0; t < n; t++)
            {
                var xt = x.Slice(t * cols, cols);
                double acc = 0;
                for (int c = 0; c < cols; c++) acc += (double)xt[c] * row[c];
                y[t * rows + r] = (float)acc;
            }
        }
    }

    public void GetRows(TensorView table, ReadOnlySpan<int> ids, Span<float> dst)
    {
        OpChecks.GetRows(table, ids, dst.Length);
        int dim = table.RowLength;
        for (int i = 0; i < ids.Length; i++)
            RowDecode.Row(table.Type, table.Row(ids[i]), dst.Slice(i * dim, dim));
    }

    public void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> y)
    {
        OpChecks.RmsNorm(x.Length, weight.Length, y.Length);
        int dim = weight.Length;
        for (int off = 0; off < x.Length; off += dim)
        {
            double ss = 0;
            for (int i = 0; i < dim; i++) ss += (double)x[off + i] * x[off + i];
            double scale = 1.0 / Math.Sqrt(ss / dim + eps);
            for (int i = 0; i < dim; i++) y[off + i] = (float)(x[off + i] * scale * weight[i]);
        }
    }

    public void Rope(Span<float> x, int headCount, int headDim, ReadOnlySpan<int> positions, RopeParams rope)
    {
        OpChecks.Rope(x.Length, headCount, headDim, positions.Length, rope);
        int dims = rope.Dimensions, half = dims / 2;
        for (int t = 0; t < positions.Length; t++)
        {
            for (int h = 0; h < headCount; h++)
            {
                var v = x.Slice((t * headCount + h) * headDim, headDim);
                for (int i = 0; i < half; i++)
                {
                    double theta = positions[t] * (double)rope.FreqScale * Math.Pow(rope.FreqBase, -2.0 * i / dims);
                    if (rope.FreqFactors is { } ff) theta /= ff[i];
                    double c = Math.Cos(theta), s = Math.Sin(theta);
                    int a = rope.Style == RopeStyle.Normal ? 2 * i : i;
                    int b = rope.Style == RopeStyle.Normal ? 2 * i + 1 : i + half;
                    double x0 = v[a], x1 = v[b];
                    v[a] = (float)(x0 * c - x1 * s);
                    v[b] = (float)(x0 * s + x1 * c);
                }
            }
        }
    }

    public void Softmax(Span<float> x)
    {
        if (x.IsEmpty) return;
        double max = double.NegativeInfinity;
        foreach (float v in x) max = Math.Max(max, v);
        double sum = 0;
        var e = new double[x.Length];
        for (int i = 0; i < x.Length; i++) { e[i] = Math.Exp(x[i] - max); sum += e[i]; }
        for (int i = 0; i < x.Length; i++) x[i] = (float)(e[i] / sum);
    }

    public void SiluMul(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> dst)
    {
        OpChecks.SameLength(nameof(SiluMul), gate.Length, up.Length, dst.Length);
        for (int i = 0; i < gate.Length; i++)
        {
            double g = gate[i];
            dst[i] = (float)(g / (1.0 + Math.Exp(-g)) * up[i]);
        }
    }

    public void Add(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> dst)
    {
        OpChecks.SameLength(nameof(Add), a.Length, b.Length, dst.Length);
        for (int i = 0; i < a.Length; i++) dst[i] = (float)((double)a[i] + b[i]);
    }

    public void Attention(ReadOnlySpan<float> q, ReadOnlySpan<int> qPositions, ReadOnlySpan<KvPage> pages, AttentionParams p, Span<float> output)
        => AttentionCore(q, qPositions, pages, p, output, default, false);

    public void Attention(ReadOnlySpan<float> q, ReadOnlySpan<int> qPositions, ReadOnlySpan<KvPage> pages, AttentionParams p, Span<float> output,
        Span<float> tokenMass)
    {
        OpChecks.AttentionMass(pages, p, tokenMass.Length);
        AttentionCore(q, qPositions, pages, p, output, tokenMass, true);
    }

    /// <summary>Pages of every tier are decoded row by row with KvDecode (the definition of the tiers) and accumulated in float64.</summary>
    private void AttentionCore(ReadOnlySpan<float> q, ReadOnlySpan<int> qPositions, ReadOnlySpan<KvPage> pages, AttentionParams p, Span<float> output,
        Span<float> tokenMass, bool withMass)
    {
        OpChecks.Attention(q.Length, qPositions, pages, p, output.Length);
        int hd = p.HeadDim, group = p.HeadCount / p.KvHeadCount, kvDim = p.KvHeadCount * hd;
        int total = 0;
        foreach (var pg in pages) total += pg.TokenCount;
        // decode every cached row once: [total, kvDim] for K and V
        var kAll = new float[(long)total * kvDim];
        var vAll = new float[(long)total * kvDim];
        var pos = new int[total];
        fixed (float* pk = kAll, pv = vAll)
        {
            int r = 0;
            foreach (var pg in pages)
                for (int j = 0; j < pg.TokenCount; j++, r++)
                {
                    KvDecode.Row(pg, true, j, pk + (long)r * kvDim, kvDim);
                    KvDecode.Row(pg, false, j, pv + (long)r * kvDim, kvDim);
                    pos[r] = pg.StartPosition + j;
                }
        }
        var scores = new double[total];                              // [cached tokens] of one (query row, head)
        var acc = new double[hd];                                    // [headDim]
        for (int t = 0; t < qPositions.Length; t++)
        {
            for (int h = 0; h < p.HeadCount; h++)
            {
                var qh = q.Slice((t * p.HeadCount + h) * hd, hd);
                int kvOff = h / group * hd;
                double max = double.NegativeInfinity;
                for (int s = 0; s < total; s++)
                {
                    if (pos[s] > qPositions[t]) { scores[s] = double.NegativeInfinity; continue; }
                    double d = 0;
                    for (int c = 0; c < hd; c++) d += (double)qh[c] * kAll[(long)s * kvDim + kvOff + c];
                    scores[s] = d * p.Scale;
                    max = Math.Max(max, scores[s]);
                }
                Array.Clear(acc);
                double sum = 0;
                if (!double.IsNegativeInfinity(max))
                    for (int s = 0; s < total; s++)
                    {
                        if (double.IsNegativeInfinity(scores[s])) { scores[s] = 0; continue; }
                        double e = Math.Exp(scores[s] - max);
                        scores[s] = e;
                        sum += e;
                        for (int c = 0; c < hd; c++) acc[c] += e * vAll[(long)s * kvDim + kvOff + c];
                    }
                var o = output.Slice((t * p.HeadCount + h) * hd, hd);
                for (int c = 0; c < hd; c++) o[c] = sum > 0 ? (float)(acc[c] / sum) : 0f;   // no visible token → zeros
                if (withMass && sum > 0)
                    for (int s = 0; s < total; s++) tokenMass[h / group * total + s] += (float)(scores[s] / sum);
            }
        }
    }

    public void Dispose() { }
}
