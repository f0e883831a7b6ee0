// Owns: the serving benchmarks of the paged engine — (1) total generated tokens/s with P concurrent sequences
// (`engine bench --parallel 1,4,16 -n 64`), (2) paged vs contiguous attention at a long context (the same attention
// kernel over one contiguous page vs a scrambled block table of 16-token blocks), (3) time to first token of a request
// whose long prefix is in the prefix cache vs not.
// Invariants: (1) every repetition starts P requests at once on one InferenceEngine (MaxConcurrentSequences = P, a KV
// budget that holds all of them, so nothing is preempted), each with its own random prompt and greedy decoding of
// exactly N tokens (no EOS stop); tokens/s = P·N / wall time from submission to the last token (prompt processing of
// the short prompts included, as a server would see it). A short warm-up repetition (4 tokens per sequence) runs first. (2) reads identical K/V
// values through both layouts. Token ids are seeded random; speed does not depend on them.
// Source: llama.cpp tools/batched-bench (parallel decode throughput), vLLM's prefix-caching TTFT benchmark.
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json.Serialization;
using Engine.Kernels;
using Engine.Runtime.Sampling;

namespace Engine.Runtime.Benchmarking;

/// <summary>One row of the parallel-decode benchmark.</summary>
public sealed record ParallelBenchResult
{
    [JsonPropertyName("test")] public required string Test { get; init; }
    [JsonPropertyName("parallel")] public required int Parallel { get; init; }
    [JsonPropertyName("n_prompt")] public required int PromptTokens { get; init; }
    [JsonPropertyName("n_gen")] public required int GenTokens { get; init; }
    [JsonPropertyName("repetitions")] public required int Repetitions { get; init; }
    /// <summary>Total generated tokens (all sequences) per second.</summary>
    [JsonPropertyName("tokens_per_s_mean")] public required double TokensPerSecondMean { get; init; }
    [JsonPropertyName("tokens_per_s_sd")] public required double TokensPerSecondSd { get; init; }
    [JsonPropertyName("samples_ts")] public required double[] Samples { get; init; }
    /// <summary>Mean time to first token over the sequences of the last repetition (ms).</summary>
    [JsonPropertyName("ttft_ms_mean")] public required double TimeToFirstTokenMs { get; init; }
    [JsonPropertyName("steps")] public required long Steps { get; init; }
    [JsonPropertyName("preemptions")] public required long Preemptions { get; init; }
    /// <summary>KV blocks offloaded to the disk tier (kvDiskBytes &gt; 0), over all repetitions.</summary>
    [JsonPropertyName("blocks_to_disk")] public long BlocksMovedToDisk { get; init; }
    /// <summary>Tokens run through the model (recomputation after preemption included), over all repetitions.</summary>
    [JsonPropertyName("tokens_computed")] public long TokensComputed { get; init; }
}

public static class ParallelBenchmark
{
    /// <summary>Runs the parallel-decode test for every P in <paramref name="parallel"/> on <paramref name="path"/>.
    /// <paramref name="kvBudgetBytes"/> &gt; 0 caps the RAM KV pool (then requests may be preempted, or, with
    /// <paramref name="kvDiskBytes"/> &gt; 0, have cold blocks offloaded to a disk tier).</summary>
    public static IReadOnlyList<ParallelBenchResult> Run(string path, IReadOnlyList<int> parallel, int genTokens, int promptTokens = 16,
        int repetitions = 2, int threads = 0, string backend = "cpu", int seed = 42, Action<string>? log = null,
        long kvBudgetBytes = 0, long kvDiskBytes = 0, CancellationToken cancellationToken = default)
    {
        if (parallel.Count == 0 || parallel.Any(p => p < 1)) throw new ArgumentException("--parallel needs counts ≥ 1");
        if (genTokens < 1 || promptTokens < 1 || repetitions < 1) throw new ArgumentException("-n, the prompt length and -r must be ≥ 1");
        var results = new List<ParallelBenchResult>();
        foreach (int p in parallel)
        {
            using var engine = Open(path, threads, backend, p, promptTokens + genTokens + 16, kvBudgetBytes, kvDiskBytes);
            var rng = new Random(seed);
            var samples = new List<double>();
            double ttft = 0;
            for (int rep = -1; rep < repetitions; rep++)   // rep -1: warm-up
            {
                cancellationToken.ThrowIfCancellationRequested();
                var prompts = Enumerable.Range(0, p).Select(_ => RandomTokens(rng, promptTokens, engine.Config.VocabSize)).ToArray();
                var options = new GenerationOptions { MaxTokens = rep < 0 ? Math.Min(genTokens, 4) : genTokens, Sampling = SamplingOptions.Greedy, StopAtEndOfGeneration = false };
                var sw = Stopwatch.StartNew();
                var usages = Task.WhenAll(prompts.Select(pr => Task.Run(async () => (await engine.GenerateTextAsync(engine.GenerateAsync(pr, options, cancellationToken))).Usage)))
                    .GetAwaiter().GetResult();
                double seconds = sw.Elapsed.TotalSeconds;
                int generated = usages.Sum(u => u.GeneratedTokens);
                if (rep < 0) continue;
                samples.Add(generated / seconds);
                ttft = usages.Average(u => u.TimeToFirstToken.TotalMilliseconds);
                log?.Invoke($"parallel {p}: {generated} tokens in {seconds:F2} s = {generated / seconds:F1} tok/s");
            }
            var s = engine.Stats!;
            results.Add(new ParallelBenchResult
            {
                Test = $"tg{genTokens} x{p}", Parallel = p, PromptTokens = promptTokens, GenTokens = genTokens, Repetitions = repetitions,
                TokensPerSecondMean = samples.Average(), TokensPerSecondSd = Sd(samples), Samples = [.. samples],
                TimeToFirstTokenMs = ttft, Steps = s.Steps, Preemptions = s.Preemptions,
                BlocksMovedToDisk = s.BlocksMovedToDisk, TokensComputed = s.TokensScheduled,
            });
        }
        return results;
    }

    /// <summary>Time to first token (ms) of a request = 1 warm-up-free prompt of <paramref name="prefixTokens"/> shared
    /// tokens + <paramref name="suffixTokens"/> new ones, generating one token: (cold = nothing cached, warm = the
    /// prefix's blocks are in the prefix cache). Mean over <paramref name="repetitions"/> pairs.</summary>
    public static (double ColdMs, double WarmMs, int ReusedTokens) PrefixCacheTtft(string path, int prefixTokens = 1000, int suffixTokens = 8,
        int repetitions = 3, int threads = 0, string backend = "cpu", int seed = 42, Action<string>? log = null)
    {
        using var engine = Open(path, threads, backend, 1, prefixTokens + suffixTokens + 64);
        var rng = new Random(seed);
        var options = new GenerationOptions { MaxTokens = 1, Sampling = SamplingOptions.Greedy, StopAtEndOfGeneration = false };
        GenerationUsage Once(int[] prompt) => engine.GenerateTextAsync(engine.GenerateAsync(prompt, options)).GetAwaiter().GetResult().Usage;
        Once(RandomTokens(rng, 64, engine.Config.VocabSize));   // warm-up
        double cold = 0, warm = 0;
        int reused = 0;
        for (int r = 0; r < repetitions; r++)
        {
            var prefix = RandomTokens(rng, prefixTokens, engine.Config.VocabSize);
            int[] a = [.. prefix, .. RandomTokens(rng, suffixTokens, engine.Config.VocabSize)];
            int[] b = [.. prefix, .. RandomTokens(rng, suffixTokens, engine.Config.VocabSize)];
            engine.EvictPrefixCache();
            var ua = Once(a);
            var ub = Once(b);
            cold += ua.TimeToFirstToken.TotalMilliseconds;
            warm += ub.TimeToFirstToken.TotalMilliseconds;
            reused = ub.ReusedPromptTokens;
            log?.Invoke($"ttft: cold {ua.TimeToFirstToken.TotalMilliseconds:F0} ms, cached prefix ({ub.ReusedPromptTokens} tokens) {ub.TimeToFirstToken.TotalMilliseconds:F0} ms");
        }
        return (cold / repetitions, warm / repetitions, reused);
    }

    /// <summary>
    /// Decode-style attention (<paramref name="queryRows"/> query rows at the end of a <paramref name="context"/>-token
    /// cache) through one contiguous page vs a block table of <paramref name="blockSize"/>-token blocks in scrambled
    /// physical order (or, <paramref name="scrambled"/> false, every other block: no merged pages but ascending addresses). Returns seconds per call for each and the ratio contiguous / paged (≥ 1 = paged as fast).
    /// </summary>
    public static unsafe (double ContiguousSeconds, double PagedSeconds, double Ratio) AttentionPaging(int context = 4096, int headCount = 32,
        int kvHeadCount = 8, int headDim = 64, int blockSize = 16, int queryRows = 1, int threads = 0, int iterations = 50, bool scrambled = true)
    {
        using var backend = Backends.Create("cpu", threads);
        int kvDim = kvHeadCount * headDim, blocks = (context + blockSize - 1) / blockSize;
        long floats = (long)blocks * blockSize * kvDim;
        float* kc = (float*)NativeMemory.AlignedAlloc((nuint)(floats * 4), 64), vc = (float*)NativeMemory.AlignedAlloc((nuint)(floats * 4), 64);
        float* kp = (float*)NativeMemory.AlignedAlloc((nuint)(floats * 4), 64), vp = (float*)NativeMemory.AlignedAlloc((nuint)(floats * 4), 64);
        try
        {
            var rng = new Random(1);
            for (long i = 0; i < floats; i++) { kc[i] = (float)(rng.NextDouble() - 0.5); vc[i] = (float)(rng.NextDouble() - 0.5); }
            // Scrambled table: logical block i lives in physical block perm[i]; copy the rows there.
            // Not scrambled: every other physical block (as when two sequences grow in lockstep) — no page merging.
            var perm = scrambled ? Enumerable.Range(0, blocks).OrderBy(_ => rng.Next()).ToArray()
                : Enumerable.Range(0, blocks).Select(i => i < (blocks + 1) / 2 ? 2 * i : 2 * (i - (blocks + 1) / 2) + 1).ToArray();
            long blockFloats = (long)blockSize * kvDim;
            for (int i = 0; i < blocks; i++)
            {
                Buffer.MemoryCopy(kc + i * blockFloats, kp + perm[i] * blockFloats, blockFloats * 4, blockFloats * 4);
                Buffer.MemoryCopy(vc + i * blockFloats, vp + perm[i] * blockFloats, blockFloats * 4, blockFloats * 4);
            }
            KvPage[] contiguous = [new((nint)kc, (nint)vc, context, 0, kvDim)];
            var paged = new KvPage[blocks];
            for (int i = 0; i < blocks; i++)
                paged[i] = new((nint)(kp + perm[i] * blockFloats), (nint)(vp + perm[i] * blockFloats), Math.Min(blockSize, context - i * blockSize), i * blockSize, kvDim);
            var q = new float[queryRows * headCount * headDim];
            for (int i = 0; i < q.Length; i++) q[i] = (float)(rng.NextDouble() - 0.5);
            var positions = Enumerable.Range(context - queryRows, queryRows).ToArray();
            var outC = new float[q.Length];
            var outP = new float[q.Length];
            var p = new AttentionParams(headCount, kvHeadCount, headDim, 1f / MathF.Sqrt(headDim));
            double Once(KvPage[] pages, float[] output)
            {
                var sw = Stopwatch.StartNew();
                for (int i = 0; i < iterations; i++) backend.Attention(q, positions, pages, p, output);
                return sw.Elapsed.TotalSeconds / iterations;
            }
            for (int i = 0; i < 3; i++) { backend.Attention(q, positions, contiguous, p, outC); backend.Attention(q, positions, paged, p, outP); }
            // Alternate the two layouts round by round so both see the same machine load; keep each one's best round.
            double tc = double.MaxValue, tp = double.MaxValue;
            for (int round = 0; round < 7; round++)
            {
                tc = Math.Min(tc, Once(contiguous, outC));
                tp = Math.Min(tp, Once(paged, outP));
            }
            if (!outC.AsSpan().SequenceEqual(outP)) throw new InvalidOperationException("paged attention output differs from contiguous");
            return (tc, tp, tc / tp);
        }
        finally
        {
            NativeMemory.AlignedFree(kc); NativeMemory.AlignedFree(vc); NativeMemory.AlignedFree(kp); NativeMemory.AlignedFree(vp);
        }
    }

    private static InferenceEngine Open(string path, int threads, string backend, int parallel, int tokensPerSequence,
        long kvBudgetBytes = 0, long kvDiskBytes = 0) =>
        InferenceEngine.Load(path, new EngineOptions
        {
            Backend = backend, Threads = threads, MaxConcurrentSequences = parallel,
            ContextLength = Math.Max(tokensPerSequence, 64),
            KvBudgetBytes = kvBudgetBytes,   // 0: ContextLength × parallel tokens: everything fits, nothing is preempted
            KvDiskBytes = kvDiskBytes,
        }, _ => null);

    private static int[] RandomTokens(Random rng, int count, int vocab)
    {
        var t = new int[count];
        for (int i = 0; i < count; i++) t[i] = rng.Next(Math.Min(3, vocab - 1), vocab);
        return t;
    }

    private static double Sd(IReadOnlyList<double> x)
    {
        if (x.Count < 2) return 0;
        double m = x.Average();
        return Math.Sqrt(x.Sum(v => (v - m) * (v - m)) / (x.Count - 1));
    }
}
