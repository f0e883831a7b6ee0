// An independent, deliberately naive float64 forward of a Llama-family GGUF (llama / qwen2 / qwen3), written straight
// from the formulas in shared/reference/README.md ("numpy references"), used as the oracle for architectures without
// a shared fixture (qwen3). It is itself checked against the numpy float64 fixtures (ModelArchitectureTests).
// No code is shared with Engine.Model: metadata is read here by key, weights are dequantized row by row.
using Engine.Formats;
using Engine.Kernels;

namespace Engine.Runtime.Tests;

public static class NaiveForward
{
    /// <summary>Logits [tokens.Length][vocab] for teacher-forced <paramref name="tokens"/> at positions 0..n-1.</summary>
    public static double[][] Run(ModelFile f, int[] tokens)
    {
        string a = f.Architecture!;
        int dim = (int)f.GetInteger($"{a}.embedding_length")!.Value;
        int layers = (int)f.GetInteger($"{a}.block_count")!.Value;
        int heads = (int)f.GetInteger($"{a}.attention.head_count")!.Value;
        int kvHeads = (int)(f.GetInteger($"{a}.attention.head_count_kv") ?? heads);
        int hd = (int)(f.GetInteger($"{a}.attention.key_length") ?? dim / heads);
        int rot = (int)(f.GetInteger($"{a}.rope.dimension_count") ?? hd);
        double eps = f.GetNumber($"{a}.attention.layer_norm_rms_epsilon") ?? 1e-5;
        double theta = f.GetNumber($"{a}.rope.freq_base") ?? 10000;
        bool neox = a is "qwen2" or "qwen3";
        double[]? freqFactors = null;
        int n = tokens.Length;

        double[][] M(string name) { var t = f.GetTensor(name); var rows = new double[t.RowCount][]; var buf = new float[t.RowLength];
            for (int r = 0; r < rows.Length; r++) { RowDecode.Row(t.Type, t.Row(r), buf); rows[r] = buf.Select(x => (double)x).ToArray(); } return rows; }
        double[] V(string name) => M(name).SelectMany(r => r).ToArray();
        double[]? OptV(string name) => f.TryGetTensor(name, out _) ? V(name) : null;
        static double[] MatVec(double[][] w, double[] x) => w.Select(row => row.Zip(x, (p, q) => p * q).Sum()).ToArray();
        double[] Rms(double[] x, double[] w) { double ms = x.Sum(v => v * v) / x.Length; double s = 1 / Math.Sqrt(ms + eps); return x.Select((v, i) => v * s * w[i]).ToArray(); }
        void Rope(double[] v, int headCount, int pos)
        {
            for (int h = 0; h < headCount; h++)
                for (int i = 0; i < rot / 2; i++)
                {
                    double ang = pos * Math.Pow(theta, -2.0 * i / rot) / (freqFactors?[i] ?? 1.0);
                    int i0 = h * hd + (neox ? i : 2 * i), i1 = h * hd + (neox ? i + rot / 2 : 2 * i + 1);
                    double x0 = v[i0], x1 = v[i1];
                    v[i0] = x0 * Math.Cos(ang) - x1 * Math.Sin(ang);
                    v[i1] = x0 * Math.Sin(ang) + x1 * Math.Cos(ang);
                }
        }

        if (f.TryGetTensor("rope_freqs.weight", out _)) freqFactors = V("rope_freqs.weight");   // Llama 3: θ_i divided by factor i
        var embd = M("token_embd.weight");
        var x = tokens.Select(t => (double[])embd[t].Clone()).ToArray();
        for (int l = 0; l < layers; l++)
        {
            string p = $"blk.{l}.";
            var (wq, wk, wv, wo) = (M(p + "attn_q.weight"), M(p + "attn_k.weight"), M(p + "attn_v.weight"), M(p + "attn_output.weight"));
            var (bq, bk, bv) = (OptV(p + "attn_q.bias"), OptV(p + "attn_k.bias"), OptV(p + "attn_v.bias"));
            var (qn, kn) = (OptV(p + "attn_q_norm.weight"), OptV(p + "attn_k_norm.weight"));
            var an = V(p + "attn_norm.weight");
            var q = new double[n][]; var k = new double[n][]; var v = new double[n][];
            for (int t = 0; t < n; t++)
            {
                var xn = Rms(x[t], an);
                q[t] = MatVec(wq, xn); k[t] = MatVec(wk, xn); v[t] = MatVec(wv, xn);
                if (bq != null) { q[t] = q[t].Zip(bq, (s, b) => s + b).ToArray(); k[t] = k[t].Zip(bk!, (s, b) => s + b).ToArray(); v[t] = v[t].Zip(bv!, (s, b) => s + b).ToArray(); }
                if (qn != null)
                {
                    q[t] = Enumerable.Range(0, heads).SelectMany(h => Rms(q[t][(h * hd)..((h + 1) * hd)], qn)).ToArray();
                    k[t] = Enumerable.Range(0, kvHeads).SelectMany(h => Rms(k[t][(h * hd)..((h + 1) * hd)], kn!)).ToArray();
                }
                Rope(q[t], heads, t); Rope(k[t], kvHeads, t);
            }
            for (int t = 0; t < n; t++)
            {
                var o = new double[heads * hd];
                for (int h = 0; h < heads; h++)
                {
                    int g = h / (heads / kvHeads);
                    var s = new double[t + 1];
                    for (int u = 0; u <= t; u++) { double d = 0; for (int i = 0; i < hd; i++) d += q[t][h * hd + i] * k[u][g * hd + i]; s[u] = d / Math.Sqrt(hd); }
                    double mx = s.Max(); var e = s.Select(z => Math.Exp(z - mx)).ToArray(); double z = e.Sum();
                    for (int u = 0; u <= t; u++) for (int i = 0; i < hd; i++) o[h * hd + i] += e[u] / z * v[u][g * hd + i];
                }
                x[t] = x[t].Zip(MatVec(wo, o), (s, b) => s + b).ToArray();
            }
            var (fn, wg, wu, wd) = (V(p + "ffn_norm.weight"), M(p + "ffn_gate.weight"), M(p + "ffn_up.weight"), M(p + "ffn_down.weight"));
            for (int t = 0; t < n; t++)
            {
                var xn = Rms(x[t], fn);
                var gate = MatVec(wg, xn); var up = MatVec(wu, xn);
                var hmid = gate.Select((gv, i) => gv / (1 + Math.Exp(-gv)) * up[i]).ToArray();
                x[t] = x[t].Zip(MatVec(wd, hmid), (s, b) => s + b).ToArray();
            }
        }
        var on = V("output_norm.weight");
        var wout = f.TryGetTensor("output.weight", out _) ? M("output.weight") : embd;
        return x.Select(row => MatVec(wout, Rms(row, on))).ToArray();
    }
}
