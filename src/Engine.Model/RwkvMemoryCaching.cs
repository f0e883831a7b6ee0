// Owns: the EXPERIMENTAL Memory Caching read mode for RWKV (after Behrouz et al., "Memory Caching: RNNs with Growing
// Memory", arXiv 2602.24281): the WKV state of every layer is cached at the end of each segment of SegmentLength
// tokens; a token then reads the live state plus the cached segment states. This is an untrained, inference-only
// interpretation (no model was trained with it): the read of a cached state S_i is the same linear read the live
// state gets (v5/v6: y_c = rᵀS_i; v7: y_c = S_i r, no bonus term), the routing score of segment i for head h is
// s_i = ⟨r_h, k̄_{i,h}⟩ / √N with k̄ the segment's mean key, and the aggregation is
//   GatedResidual: y = y_live + Σ_i σ(GateScale·s_i + GateBias) · y_{c,i}
//   TopK:          y = y_live + Mix · Σ_{i ∈ top-k(s)} softmax_topk(s)_i · y_{c,i}
// Invariant: with closed gates (GateBias = -∞ for GatedResidual, Mix = 0 for TopK) every cached contribution is
// multiplied by exactly 0, so the output equals the plain recurrence bit for bit (tested).
// Per-sequence cache lives in the RecurrentStateStore attachment (dropped on Clear / Restore / Fork).
namespace Engine.Model;

public enum MemoryCachingMode { GatedResidual, TopK }

/// <summary>Settings of the experimental Memory Caching read mode.</summary>
public sealed record MemoryCachingOptions
{
    public int SegmentLength { get; init; } = 32;
    public MemoryCachingMode Mode { get; init; } = MemoryCachingMode.GatedResidual;
    public float GateScale { get; init; } = 1f;
    public float GateBias { get; init; } = -2f;
    public int TopK { get; init; } = 2;
    public float Mix { get; init; } = 0.5f;
    /// <summary>Upper bound on cached segments per sequence (oldest dropped first).</summary>
    public int MaxSegments { get; init; } = 64;

    /// <summary>Options whose cached contributions are all exactly zero.</summary>
    public MemoryCachingOptions Closed() => Mode == MemoryCachingMode.GatedResidual
        ? this with { GateBias = float.NegativeInfinity } : this with { Mix = 0f };
}

/// <summary>Cached segment states of one sequence.</summary>
internal sealed class MemoryCache
{
    public MemoryCache(int layers, int c) { KeySum = new float[layers][]; for (int l = 0; l < layers; l++) KeySum[l] = new float[c]; }

    public readonly List<float[][]> States = new();      // [segment][layer] WKV state [H·N·N]
    public readonly List<float[][]> KeyMeans = new();    // [segment][layer] mean key [C]
    public readonly float[][] KeySum;                    // [layer][C] running sum over the open segment
    public int OpenCount;                                // tokens in the open segment
}

internal static class RwkvMemoryCaching
{
    /// <summary>Adds the cached-segment reads to y ([n, C], the WKV output before GroupNorm) for one layer.</summary>
    public static void Read(MemoryCache cache, MemoryCachingOptions opt, int layer, bool v7Layout, ReadOnlySpan<float> r,
        int headCount, int headSize, Span<float> y)
    {
        int m = cache.States.Count;
        if (m == 0) return;
        int c = headCount * headSize, n = r.Length / c, hs = headSize;
        var scores = new float[m];
        var order = new int[m];
        Span<float> read = stackalloc float[hs];
        float invSqrt = 1f / MathF.Sqrt(hs);
        for (int t = 0; t < n; t++)
            for (int h = 0; h < headCount; h++)
            {
                int off = t * c + h * hs;
                var rh = r.Slice(off, hs);
                for (int i = 0; i < m; i++)
                {
                    var km = cache.KeyMeans[i][layer].AsSpan(h * hs, hs);
                    float d = 0;
                    for (int j = 0; j < hs; j++) d += rh[j] * km[j];
                    scores[i] = d * invSqrt;
                }
                if (opt.Mode == MemoryCachingMode.GatedResidual)
                {
                    for (int i = 0; i < m; i++)
                    {
                        float gate = RwkvKernels.Sigmoid(opt.GateScale * scores[i] + opt.GateBias);
                        ReadState(cache.States[i][layer], h, hs, rh, v7Layout, read);
                        for (int j = 0; j < hs; j++) y[off + j] += gate * read[j];
                    }
                }
                else
                {
                    int k = Math.Min(opt.TopK, m);
                    for (int i = 0; i < m; i++) order[i] = i;
                    Array.Sort(order, (a, b) => scores[b].CompareTo(scores[a]));
                    float max = scores[order[0]], z = 0;
                    for (int i = 0; i < k; i++) z += MathF.Exp(scores[order[i]] - max);
                    for (int i = 0; i < k; i++)
                    {
                        float weight = opt.Mix * MathF.Exp(scores[order[i]] - max) / z;
                        ReadState(cache.States[order[i]][layer], h, hs, rh, v7Layout, read);
                        for (int j = 0; j < hs; j++) y[off + j] += weight * read[j];
                    }
                }
            }
    }

    // v5/v6 state S[j, i] (key-major): y_i = Σ_j r_j S_ji. v7 state S[i, j] (value-major): y_i = Σ_j S_ij r_j.
    private static void ReadState(float[] state, int h, int hs, ReadOnlySpan<float> r, bool v7Layout, Span<float> dst)
    {
        var s = state.AsSpan(h * hs * hs, hs * hs);
        dst.Clear();
        if (v7Layout)
            for (int i = 0; i < hs; i++) { float acc = 0; for (int j = 0; j < hs; j++) acc += s[i * hs + j] * r[j]; dst[i] = acc; }
        else
            for (int j = 0; j < hs; j++) { float rj = r[j]; for (int i = 0; i < hs; i++) dst[i] += rj * s[j * hs + i]; }
    }

    /// <summary>Accumulates the keys of this chunk ([n, C]) into the open segment's key sum of <paramref name="layer"/>.</summary>
    public static void AccumulateKeys(MemoryCache cache, int layer, ReadOnlySpan<float> k)
    {
        var sum = cache.KeySum[layer];
        int c = sum.Length;
        for (int o = 0; o < k.Length; o += c)
            for (int i = 0; i < c; i++) sum[i] += k[o + i];
    }

    /// <summary>Closes the open segment: snapshots every layer's WKV state (from the full state) and its mean key.</summary>
    public static void CloseSegment(MemoryCache cache, MemoryCachingOptions o, ReadOnlySpan<float> state, int layers, int floatsPerLayer, int c)
    {
        var states = new float[layers][];
        var means = new float[layers][];
        float inv = cache.OpenCount > 0 ? 1f / cache.OpenCount : 0f;
        for (int l = 0; l < layers; l++)
        {
            states[l] = state.Slice(l * floatsPerLayer + 2 * c, floatsPerLayer - 2 * c).ToArray();
            means[l] = new float[c];
            for (int i = 0; i < c; i++) { means[l][i] = cache.KeySum[l][i] * inv; cache.KeySum[l][i] = 0; }
        }
        cache.States.Add(states);
        cache.KeyMeans.Add(means);
        cache.OpenCount = 0;
        if (cache.States.Count > o.MaxSegments) { cache.States.RemoveAt(0); cache.KeyMeans.RemoveAt(0); }
    }
}
