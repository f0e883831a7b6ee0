// Owns: the element-wise and recurrent parts of RWKV that IBackend has no op for: LayerNorm with bias, per-head
// GroupNorm, token shift, the v5/v6 WKV recurrence and the v7 generalized-delta-rule WKV recurrence.
// Invariants: plain scalar C# (float32 storage, float32 math as ggml does; means/variances accumulate in double);
// recurrences run token by token in order and update the state in place.
// Math sources: rwkv.cpp rwkv_graph.inc / rwkv_operators.inc and ggml's rwkv_wkv6 / rwkv_wkv7 op definitions;
// RWKV-7 paper (Peng et al. 2025, "Goose"): S_t = S_{t-1}(diag(w_t) + a_tᵀ b_t) + v_tᵀ k_t, y_t = S_t r_t.
using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("Engine.Recurrent.Tests")]

namespace Engine.Model;

internal static class RwkvKernels
{
    /// <summary>dst[t] = (x[t] - mean) / sqrt(var + eps) · w + b per row of length w.Length. x, dst: [n, C]; may alias.</summary>
    public static void LayerNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, float eps, Span<float> dst)
    {
        int c = w.Length;
        for (int o = 0; o < x.Length; o += c)
        {
            var row = x.Slice(o, c);
            double sum = 0;
            for (int i = 0; i < c; i++) sum += row[i];
            float mean = (float)(sum / c);
            double sq = 0;
            for (int i = 0; i < c; i++) { float d = row[i] - mean; sq += d * d; }
            float scale = 1f / MathF.Sqrt((float)(sq / c) + eps);
            var y = dst.Slice(o, c);
            for (int i = 0; i < c; i++) y[i] = (row[i] - mean) * scale * w[i] + b[i];
        }
    }

    /// <summary>Per-head GroupNorm: every group of <paramref name="groupSize"/> floats is normalised on its own,
    /// then scaled/shifted per channel by w, b ([C]). x: [n, C] in place.</summary>
    public static void GroupNorm(Span<float> x, int groupSize, ReadOnlySpan<float> w, ReadOnlySpan<float> b, float eps)
    {
        int c = w.Length;
        for (int o = 0; o < x.Length; o += groupSize)
        {
            var g = x.Slice(o, groupSize);
            double sum = 0;
            for (int i = 0; i < groupSize; i++) sum += g[i];
            float mean = (float)(sum / groupSize);
            double sq = 0;
            for (int i = 0; i < groupSize; i++) { float d = g[i] - mean; sq += d * d; }
            float scale = 1f / MathF.Sqrt((float)(sq / groupSize) + eps);
            int ch = o % c;
            for (int i = 0; i < groupSize; i++) g[i] = (g[i] - mean) * scale * w[ch + i] + b[ch + i];
        }
    }

    /// <summary>Token shift: prev[t] = xn[t-1] (prev[0] = carried state), then carry = xn[n-1]. xn, prev: [n, C]; carry: [C].</summary>
    public static void Shift(ReadOnlySpan<float> xn, Span<float> carry, Span<float> prev)
    {
        int c = carry.Length, n = xn.Length / c;
        carry.CopyTo(prev[..c]);
        if (n > 1) xn[..((n - 1) * c)].CopyTo(prev.Slice(c, (n - 1) * c));
        xn.Slice((n - 1) * c, c).CopyTo(carry);
    }

    /// <summary>
    /// v5/v6 WKV for n tokens, H heads of size N. Per head, state S[j, i] (j = key channel, i = value channel):
    /// y_i = Σ_j r_j (u_j k_j v_i + S_ji); S_ji ← S_ji · w_j + k_j v_i. r, k, v, y: [n, H·N]; u: [H·N];
    /// w: [H·N] when <paramref name="decayPerToken"/> is false, else [n, H·N]; state: [H, N, N].
    /// </summary>
    public static void Wkv6(ReadOnlySpan<float> r, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<float> u,
        ReadOnlySpan<float> w, bool decayPerToken, int headCount, int headSize, Span<float> state, Span<float> y)
    {
        int c = headCount * headSize, n = r.Length / c, hs = headSize;
        for (int t = 0; t < n; t++)
        {
            int row = t * c, wrow = decayPerToken ? row : 0;
            for (int h = 0; h < headCount; h++)
            {
                int b = h * hs;
                var s = state.Slice(h * hs * hs, hs * hs);
                var vv = v.Slice(row + b, hs);
                var yy = y.Slice(row + b, hs);
                yy.Clear();
                for (int j = 0; j < hs; j++)
                {
                    float kj = k[row + b + j], rj = r[row + b + j], uj = u[b + j], wj = w[wrow + b + j];
                    var sj = s.Slice(j * hs, hs);
                    for (int i = 0; i < hs; i++)
                    {
                        float kv = kj * vv[i];
                        yy[i] += rj * (uj * kv + sj[i]);
                        sj[i] = sj[i] * wj + kv;
                    }
                }
            }
        }
    }

    /// <summary>
    /// v7 WKV for n tokens. Per head, state S[i, j] (i = value channel, j = key channel):
    /// sa_i = Σ_j S_ij a_j; S_ij ← S_ij w_j + sa_i b_j + v_i k_j; y_i = Σ_j S_ij r_j (after the update).
    /// r, w, k, v, a, b, y: [n, H·N]; state: [H, N, N].
    /// </summary>
    public static void Wkv7(ReadOnlySpan<float> r, ReadOnlySpan<float> w, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        ReadOnlySpan<float> a, ReadOnlySpan<float> bb, int headCount, int headSize, Span<float> state, Span<float> y)
    {
        int c = headCount * headSize, n = r.Length / c, hs = headSize;
        for (int t = 0; t < n; t++)
        {
            int row = t * c;
            for (int h = 0; h < headCount; h++)
            {
                int o = row + h * hs;
                var s = state.Slice(h * hs * hs, hs * hs);
                var rr = r.Slice(o, hs); var ww = w.Slice(o, hs); var kk = k.Slice(o, hs);
                var aa = a.Slice(o, hs); var b = bb.Slice(o, hs);
                for (int i = 0; i < hs; i++)
                {
                    var si = s.Slice(i * hs, hs);
                    float sa = 0;
                    for (int j = 0; j < hs; j++) sa += si[j] * aa[j];
                    float vi = v[o + i], yi = 0;
                    for (int j = 0; j < hs; j++)
                    {
                        float nv = si[j] * ww[j] + sa * b[j] + vi * kk[j];
                        si[j] = nv;
                        yi += nv * rr[j];
                    }
                    y[o + i] = yi;
                }
            }
        }
    }

    public static float Sigmoid(float x) => 1f / (1f + MathF.Exp(-x));
}
