// Owns: llama-bench-style end-to-end speed measurement of a model file: pp<P> (one forward of P prompt tokens as one
// batch, tokens/s) and tg<N> (N single-token decode forwards, tokens/s) at context depths D (D tokens pre-filled into
// the KV store first, not timed), mean ± sample standard deviation over R repetitions, plus the process's memory.
// Invariants: the KV store holds max(maxDepth + P + N, the warm-up's tokens) positions (checked against the machine's
// memory first); each depth is pre-filled once and every repetition starts
// from exactly D cached tokens (the store is truncated back to D); a short warm-up (a small batch and a few decodes,
// twice, so the JIT's tiered compilation has promoted the hot kernels) runs before any timed work. Token ids are
// uniformly random (seeded) — speed does not depend on them. Only the last token's logits are computed for pp, as in
// llama-bench. Source: llama.cpp tools/llama-bench (test names, pp/tg/depth semantics, avg_ts/stddev_ts).
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;
using Engine.Formats;
using Engine.Kernels;
using Engine.Memory;
using Engine.Model;
using Engine.Tensors;

namespace Engine.Runtime.Benchmarking;

public sealed record BenchOptions
{
    /// <summary>Prompt tokens per pp test (0 = no pp test).</summary>
    public int PromptTokens { get; init; } = 512;
    /// <summary>Decoded tokens per tg test (0 = no tg test).</summary>
    public int GenTokens { get; init; } = 128;
    /// <summary>Context depths to test at.</summary>
    public IReadOnlyList<int> Depths { get; init; } = [0];
    public int Repetitions { get; init; } = 5;
    /// <summary>CPU threads including the caller (≤ 0 = all cores).</summary>
    public int Threads { get; init; }
    public string Backend { get; init; } = "cpu";
    /// <summary>Time every op (ProfilingBackend) and attach the breakdown to each result.</summary>
    public bool Profile { get; init; }
    public int Seed { get; init; } = 42;
    /// <summary>Fill the depth's KV rows with random values instead of running the model over depth tokens (much
    /// faster; attention and decode cost do not depend on the cached values).</summary>
    public bool RandomKvFill { get; init; }

    public void Validate()
    {
        if (PromptTokens < 0 || GenTokens < 0) throw new ArgumentException("-p and -n must be ≥ 0");
        if (PromptTokens == 0 && GenTokens == 0) throw new ArgumentException("nothing to measure: -p and -n are both 0");
        if (Repetitions < 1) throw new ArgumentException("-r must be ≥ 1");
        if (Depths.Count == 0 || Depths.Any(d => d < 0 || d > OptionsValidation.MaxContextLength))
            throw new ArgumentException($"-d must list depths in 0 .. {OptionsValidation.MaxContextLength}");
        if (Threads < 0 || Threads > OptionsValidation.MaxThreads)
            throw new ArgumentException($"--threads = {Threads} is out of range; allowed: 0 (all cores) .. {OptionsValidation.MaxThreads}");
    }
}

/// <summary>One row of results (JSON names follow llama-bench's where they exist).</summary>
public sealed record BenchResult
{
    [JsonPropertyName("model")] public required string Model { get; init; }
    [JsonPropertyName("type")] public required string Type { get; init; }
    [JsonPropertyName("file")] public required string File { get; init; }
    [JsonPropertyName("file_bytes")] public required long FileBytes { get; init; }
    [JsonPropertyName("params")] public required long Parameters { get; init; }
    [JsonPropertyName("backend")] public required string Backend { get; init; }
    [JsonPropertyName("threads")] public required int Threads { get; init; }
    [JsonPropertyName("test")] public required string Test { get; init; }
    [JsonPropertyName("n_prompt")] public required int PromptTokens { get; init; }
    [JsonPropertyName("n_gen")] public required int GenTokens { get; init; }
    [JsonPropertyName("depth")] public required int Depth { get; init; }
    [JsonPropertyName("repetitions")] public required int Repetitions { get; init; }
    [JsonPropertyName("tokens_per_s_mean")] public required double TokensPerSecondMean { get; init; }
    [JsonPropertyName("tokens_per_s_sd")] public required double TokensPerSecondSd { get; init; }
    [JsonPropertyName("samples_ts")] public required double[] Samples { get; init; }
    [JsonPropertyName("peak_rss_bytes")] public required long PeakRssBytes { get; init; }
    [JsonPropertyName("rss_anon_bytes")] public required long RssAnonBytes { get; init; }
    [JsonPropertyName("rss_file_bytes")] public required long RssFileBytes { get; init; }
    /// <summary>Per-op (seconds, calls) over the timed repetitions, when profiling.</summary>
    [JsonIgnore] public IReadOnlyList<(string Op, double Seconds, long Calls)>? Profile { get; init; }

    /// <summary>"pp512", or "tg128 @ d4096" at a depth (llama-bench's table label).</summary>
    [JsonIgnore] public string Label => Depth == 0 ? Test : $"{Test} @ d{Depth}";
}

public static class ModelBenchmark
{
    public static string ToJson(IEnumerable<BenchResult> results) =>
        JsonSerializer.Serialize(results.ToArray(), new JsonSerializerOptions { WriteIndented = true });

    /// <summary>Loads <paramref name="path"/> and runs every (depth × {pp, tg}) test. <paramref name="log"/> gets progress lines.</summary>
    public static IReadOnlyList<BenchResult> Run(string path, BenchOptions options, Action<string>? log = null, CancellationToken cancellationToken = default)
    {
        options.Validate();
        if (!System.IO.File.Exists(path)) throw new FileNotFoundException($"model file not found: {path}");
        var sw = Stopwatch.StartNew();
        using var file = ModelFiles.Open(path);
        var inner = Backends.Create(options.Backend, options.Threads);
        var profiler = options.Profile ? new ProfilingBackend(inner) : null;
        using IBackend backend = profiler ?? inner;
        using var model = Backends.LoadModel(file, backend);   // transformers and recurrent (rwkv) models; GPU: device forward
        var c = model.Config;
        int threads = inner is CpuBackend cpu ? cpu.ThreadCount : 1;
        var (label, type, parameters) = Describe(file, c);
        long fileBytes = new FileInfo(path).Length;
        log?.Invoke($"loaded {Path.GetFileName(path)} ({label} {type}, {fileBytes / 1e6:F0} MB) in {sw.Elapsed.TotalMilliseconds:F0} ms; {ProcessMemory.Read()}");

        int maxDepth = options.Depths.Max();
        int warmPrompt = Math.Min(32, Math.Max(1, options.PromptTokens)), warmDecode = 4;
        int capacity = Math.Max(maxDepth + options.PromptTokens + options.GenTokens, warmPrompt + warmDecode);
        if (c.ContextLength > 0 && maxDepth + options.PromptTokens + options.GenTokens > c.ContextLength)
            log?.Invoke($"warning: depth {maxDepth} + {options.PromptTokens} + {options.GenTokens} tokens is beyond the {c.ContextLength} tokens the model was trained on");
        if (maxDepth >= 16384 && !options.RandomKvFill)
            log?.Invoke($"warning: pre-filling {maxDepth} tokens runs the model over all of them first (can take minutes; Ctrl-C stops, --random-kv fills them fast)");
        if (model is TransformerModel)
            OptionsValidation.CheckMemoryBudget("KV store for -d + -p + -n", null, (long)capacity * 2 * c.LayerCount * c.KvDim * sizeof(float));
        using var kv = model.CreateKvStore(capacity);
        var logits = new float[c.VocabSize];
        var rng = new Random(options.Seed);
        int[] Tokens(int count) { var t = new int[count]; for (int i = 0; i < count; i++) t[i] = rng.Next(c.VocabSize); return t; }

        // Warm-up (twice, with a pause so tiered compilation can swap in optimised code).
        for (int round = 0; round < 2; round++)
        {
            kv.Clear(0);
            cancellationToken.ThrowIfCancellationRequested();
            model.Forward(ForwardBatch.ForSequence(Tokens(warmPrompt), 0), kv, logits, false);
            int at = kv.Length(0, 0);
            for (int i = 0; i < warmDecode; i++) model.Forward(ForwardBatch.ForSequence(Tokens(1), at + i), kv, logits, false);
            Thread.Sleep(200);
        }

        var results = new List<BenchResult>();
        foreach (int depth in options.Depths.Distinct().Order())
        {
            kv.Clear(0);
            if (depth > 0 && options.RandomKvFill)
            {
                var fill = Stopwatch.StartNew();
                FillRandom(kv, depth, c.LayerCount, c.KvDim, rng);
                log?.Invoke($"filled {depth} KV positions with random values in {fill.Elapsed.TotalSeconds:F1} s");
            }
            else if (depth > 0)
            {
                var fill = Stopwatch.StartNew();
                for (int pos = 0; pos < depth; pos += 512)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    model.Forward(ForwardBatch.ForSequence(Tokens(Math.Min(512, depth - pos)), pos), kv, logits, false);
                }
                log?.Invoke($"pre-filled {depth} tokens in {fill.Elapsed.TotalSeconds:F1} s");
            }
            if (options.PromptTokens > 0)
                results.Add(Measure($"pp{options.PromptTokens}", depth, options.PromptTokens, () =>
                {
                    model.Forward(ForwardBatch.ForSequence(Tokens(options.PromptTokens), depth), kv, logits, false);
                }));
            if (options.GenTokens > 0)
                results.Add(Measure($"tg{options.GenTokens}", depth, options.GenTokens, () =>
                {
                    var ids = Tokens(options.GenTokens);
                    for (int i = 0; i < ids.Length; i++)
                    {
                        cancellationToken.ThrowIfCancellationRequested();
                        model.Forward(ForwardBatch.ForSequence(ids.AsSpan(i, 1), depth + i), kv, logits, false);
                    }
                }));
        }
        return results;

        BenchResult Measure(string test, int depth, int tokens, Action body)
        {
            var samples = new double[options.Repetitions];
            profiler?.Reset();
            for (int r = 0; r < samples.Length; r++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                kv.Truncate(0, depth);
                long t0 = Stopwatch.GetTimestamp();
                body();
                double s = Stopwatch.GetElapsedTime(t0).TotalSeconds;
                samples[r] = tokens / s;
                log?.Invoke($"{test} @ d{depth} rep {r + 1}/{samples.Length}: {samples[r]:F2} t/s");
            }
            var mem = ProcessMemory.Read();
            var (mean, sd) = MeanSd(samples);
            return new BenchResult
            {
                Model = label, Type = type, File = Path.GetFileName(path), FileBytes = fileBytes, Parameters = parameters,
                Backend = Backends.DeviceLabel(inner), Threads = threads, Test = test,
                PromptTokens = test.StartsWith("pp") ? tokens : 0, GenTokens = test.StartsWith("tg") ? tokens : 0,
                Depth = depth, Repetitions = samples.Length, TokensPerSecondMean = mean, TokensPerSecondSd = sd, Samples = samples,
                PeakRssBytes = mem.PeakRssBytes, RssAnonBytes = mem.RssAnonBytes, RssFileBytes = mem.RssFileBytes,
                Profile = profiler?.Snapshot(),
            };
        }
    }

    /// <summary>Writes positions 0 .. depth−1 of sequence 0 in every layer with uniform ±1 K/V rows.</summary>
    private static void FillRandom(IKvStore kv, int depth, int layers, int kvDim, Random rng)
    {
        const int chunk = 256;
        var k = new float[chunk * kvDim];
        var v = new float[chunk * kvDim];
        var pos = new int[chunk];
        for (int i = 0; i < k.Length; i++) { k[i] = rng.NextSingle() * 2 - 1; v[i] = rng.NextSingle() * 2 - 1; }
        for (int p0 = 0; p0 < depth; p0 += chunk)
        {
            int len = Math.Min(chunk, depth - p0);
            for (int i = 0; i < len; i++) pos[i] = p0 + i;
            for (int l = 0; l < layers; l++)
                kv.Write(l, 0, pos.AsSpan(0, len), k.AsSpan(0, len * kvDim), v.AsSpan(0, len * kvDim));
        }
    }

    /// <summary>Mean and sample standard deviation (0 for one sample).</summary>
    public static (double Mean, double Sd) MeanSd(IReadOnlyList<double> x)
    {
        double mean = x.Average();
        double ss = x.Sum(v => (v - mean) * (v - mean));
        return (mean, x.Count > 1 ? Math.Sqrt(ss / (x.Count - 1)) : 0);
    }

    /// <summary>("llama 1.2B", dominant matrix type by bytes, parameter count) for a loaded file.</summary>
    public static (string Label, string Type, long Parameters) Describe(ModelFile file, ModelConfig config)
    {
        long parameters = 0;
        var bytesByType = new Dictionary<DType, long>();
        foreach (var t in file.Tensors)
        {
            parameters += t.ElementCount;
            if (t.Shape.Length >= 2) bytesByType[t.Type] = bytesByType.GetValueOrDefault(t.Type) + t.ByteLength;
        }
        string type = bytesByType.Count == 0 ? "?" : bytesByType.MaxBy(kv => kv.Value).Key.ToString();
        string size = parameters >= 1_000_000_000 ? $"{parameters / 1e9:F1}B" : parameters >= 1_000_000 ? $"{parameters / 1e6:F0}M" : $"{parameters / 1e3:F0}K";
        return ($"{config.Architecture} {size}", type, parameters);
    }
}
