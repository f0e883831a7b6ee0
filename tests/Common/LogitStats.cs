// Owns: the shared reference-fixture table (stems and the README main-table statistics) and the float64 logit statistics
// (KL divergence, argmax with margin) that several test projects compare logits with — one copy for all of them.
// Source: ../shared/reference/README.md ("main table": max abs Δ and KL mean of llama.cpp vs the numpy float64 forward).
namespace Engine.Tests.Common;

public static class LogitStats
{
    /// <summary>Fixture stem (under ../shared), README main-table max abs Δ, README main-table KL mean, quantized weights?</summary>
    public static readonly (string Stem, double RefMax, double RefKl, bool Quantized)[] ReferenceFixtures =
    [
        ("reference/llama-256x2/rand-llama-F32", 6.79e-06, 3.94e-13, false),
        ("reference/llama-256x2/rand-llama-F16", 4.19e-03, 4.31e-07, false),
        ("reference/llama-256x2/rand-llama-BF16", 3.47e-02, 2.81e-05, false),
        ("reference/llama-256x2/rand-llama-Q8_0", 1.28e-01, 3.63e-04, true),
        ("reference/llama-256x2/rand-llama-Q4_0", 1.23e-01, 3.37e-04, true),
        ("reference/llama-256x2/rand-llama-Q4_K", 1.80e-01, 6.76e-04, true),
        ("reference/llama-256x2/rand-llama-Q6_K", 1.79e-01, 7.11e-04, true),
        ("reference/llama-256x2/rand-llama-Q4_K_M", 1.74e-01, 7.13e-04, true),
        ("reference/qwen2-256x2/rand-qwen2-F32", 4.41e-06, 2.04e-13, false),
        ("reference/stories260K/stories260K", 9.73e-06, 0, false),
    ];

    /// <summary>KL(softmax(p) ‖ softmax(q)) in float64, clamped at 0.</summary>
    public static double Kl(ReadOnlySpan<float> p, ReadOnlySpan<float> q)
    {
        double mp = double.NegativeInfinity, mq = double.NegativeInfinity;
        foreach (var v in p) mp = Math.Max(mp, v);
        foreach (var v in q) mq = Math.Max(mq, v);
        double zp = 0, zq = 0;
        foreach (var v in p) zp += Math.Exp(v - mp);
        foreach (var v in q) zq += Math.Exp(v - mq);
        double lzp = Math.Log(zp), lzq = Math.Log(zq), kl = 0;
        for (int i = 0; i < p.Length; i++)
        {
            double lp = p[i] - mp - lzp, lq = q[i] - mq - lzq;
            kl += Math.Exp(lp) * (lp - lq);
        }
        return Math.Max(kl, 0);
    }

    /// <summary>Index of the largest value (first on ties) and its margin over the second largest.</summary>
    public static int ArgMax(ReadOnlySpan<float> x, out double margin)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        double second = double.NegativeInfinity;
        for (int i = 0; i < x.Length; i++) if (i != best) second = Math.Max(second, x[i]);
        margin = x[best] - second;
        return best;
    }
}
