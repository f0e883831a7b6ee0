// Owns: the planted-needle retrieval test — a one-layer, one-head attention-only "model" whose K/Q/V are constructed
// analytically: N distractor tokens with small random keys (norm ≈ 0.3) and random small values, one needle token at a
// chosen depth whose key is 3·u and whose value is the one-hot answer e_a; the final query is α·u. With the full cache
// the needle's score exceeds every distractor's by ≥ α·(3 − 0.3·k) so attention returns ≈ e_a. A trial retrieves when
// argmax(output) = a and output[a] > 0.5.
// Ingest: the context is written in chunks through the policy store; after each chunk one query row (a distractor-like
// query at the chunk's last position) attends, which gives heavy-hitter policies attention statistics. Only the final
// query is the probe. Cost: O(N) per chunk (linear in chunks × length).
using Engine.Kernels;
using Engine.Memory;
using Engine.Memory.Policies;

namespace Engine.Runtime.Evaluation;

/// <summary>DecodeMs: mean wall time of one decode attention step (Pages + selection + attention) at the full context.
/// PeakHeldBytes: the most K/V bytes the policy store had allocated at any point of a trial (PolicyKvStore.AllocatedBytes,
/// sampled after every write and every Pages; with --disk it includes the mapped float32 rows).</summary>
public sealed record NeedleResult(string Policy, double Budget, int Context, int Trials, double Retrieved, double Seconds, double DecodeMs,
    long PeakHeldBytes = 0);

public static class NeedleEvaluator
{
    private const int HeadDim = 32;

    /// <param name="disk">Keep the float32 K/V rows in a memory-mapped file (the disk tier) instead of RAM.</param>
    public static NeedleResult Run(IBackend backend, KvPolicySpec spec, int context, int trials = 5, int chunk = 4096, int seed = 1, bool disk = false)
    {
        if (context < 64) throw new ArgumentOutOfRangeException(nameof(context), $"needle context {context} must be ≥ 64");
        var p = new AttentionParams(1, 1, HeadDim, 1f);
        const float alpha = 10f;
        int ok = 0;
        double decodeMs = 0;
        long peak = 0;
        var sw = System.Diagnostics.Stopwatch.StartNew();
        for (int trial = 0; trial < trials; trial++)
        {
            var rng = new Random(seed + trial);
            int needle = (int)((trial + 0.5) / trials * (context - 64));          // depths spread over the context
            int answer = rng.Next(HeadDim);
            var u = Gaussian(rng, HeadDim, 1f); Normalize(u);
            var pb = new PolicyBackend(backend);
            IKvStore inner = disk ? new Engine.Memory.Disk.MappedKvStore(1, HeadDim, context + 1) : new ContiguousKvStore(1, HeadDim, context + 1);
            using var store = new PolicyKvStore(inner, spec);
            pb.Store = store;
            var k = new float[chunk * HeadDim]; var v = new float[chunk * HeadDim]; var pos = new int[chunk];
            var o = new float[HeadDim];
            for (int start = 0; start < context; start += chunk)
            {
                int n = Math.Min(chunk, context - start);
                for (int i = 0; i < n; i++)
                {
                    pos[i] = start + i;
                    var ki = k.AsSpan(i * HeadDim, HeadDim); var vi = v.AsSpan(i * HeadDim, HeadDim);
                    if (start + i == needle)
                    {
                        for (int c = 0; c < HeadDim; c++) { ki[c] = 3 * u[c]; vi[c] = c == answer ? 1 : 0; }
                    }
                    else
                    {
                        for (int c = 0; c < HeadDim; c++) { ki[c] = (float)(Normal(rng) * 0.3 / Math.Sqrt(HeadDim)); vi[c] = (float)(Normal(rng) * 0.05); }
                    }
                }
                store.Write(0, 0, pos.AsSpan(0, n), k.AsSpan(0, n * HeadDim), v.AsSpan(0, n * HeadDim));
                peak = Math.Max(peak, store.AllocatedBytes);
                var q = Gaussian(rng, HeadDim, (float)(1 / Math.Sqrt(HeadDim)));
                pb.Attention(q, [start + n - 1], store.Pages(0, 0), p, o);
                peak = Math.Max(peak, store.AllocatedBytes);
            }
            // the probe: one decode step at position `context`
            var probeK = new float[HeadDim]; var probeV = new float[HeadDim];
            store.Write(0, 0, [context], probeK, probeV);
            var probe = u.Select(x => alpha * x).ToArray();
            pb.Attention(probe, [context], store.Pages(0, 0), p, o);
            int best = 0;
            for (int c = 1; c < HeadDim; c++) if (o[c] > o[best]) best = c;
            if (best == answer && o[answer] > 0.5f) ok++;
            // decode speed at this depth: a few more steps (the probe query again), timed
            const int steps = 8;
            var dsw = System.Diagnostics.Stopwatch.StartNew();
            for (int s = 1; s <= steps; s++)
            {
                store.Write(0, 0, [context], probeK, probeV);               // rewrite the last position: same length
                pb.Attention(probe, [context], store.Pages(0, 0), p, o);
            }
            decodeMs += dsw.Elapsed.TotalMilliseconds / steps;
        }
        return new NeedleResult(spec.Name, spec.Budget, context, trials, ok / (double)trials, sw.Elapsed.TotalSeconds, decodeMs / trials, peak);
    }

    private static double Normal(Random r) => Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());

    private static float[] Gaussian(Random r, int n, float scale) => Enumerable.Range(0, n).Select(_ => (float)(Normal(r) * scale)).ToArray();

    private static void Normalize(float[] x)
    {
        double s = Math.Sqrt(x.Sum(a => (double)a * a));
        for (int i = 0; i < x.Length; i++) x[i] = (float)(x[i] / s);
    }
}
