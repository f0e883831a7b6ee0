// Owns: `engine bench-parallel` — the paged engine's serving benchmarks (Engine.Runtime.Benchmarking.ParallelBenchmark):
// total generated tokens/s with P concurrent sequences (one row per P), optionally paged-vs-contiguous attention at a
// long context and time to first token with a cached vs uncached prefix. Table on stdout, or JSON (--json: an array of
// objects with at least "parallel" and "tokens_per_s_mean"); progress on stderr.
using System.CommandLine;
using System.Text.Json;
using Engine.Runtime.Benchmarking;

namespace Engine.Cli.Commands;

public static class BenchParallelCommand
{
    public static Command Create()
    {
        var model = GenerationCommandSupport.ModelOption();
        var synthetic = new Option<string?>("--synthetic") { Description = "Random-weight model of a named shape instead of --model: llama-1b, tiny." };
        var type = new Option<string>("--type") { Description = "Weight type of the synthetic model.", DefaultValueFactory = _ => "q4_0" };
        var parallel = new Option<string>("--parallel") { Description = "Comma-separated concurrent sequence counts.", DefaultValueFactory = _ => "1,4,16" };
        var gen = new Option<int>("-n", "--n-gen") { Description = "Tokens generated per sequence.", DefaultValueFactory = _ => 64 };
        var prompt = new Option<int>("-p", "--n-prompt") { Description = "Prompt tokens per sequence.", DefaultValueFactory = _ => 16 };
        var reps = new Option<int>("-r", "--repetitions") { Description = "Timed repetitions.", DefaultValueFactory = _ => 2 };
        var threads = GenerationCommandSupport.ThreadsOption();
        var json = new Option<bool>("--json") { Description = "Print JSON instead of a table." };
        var attention = new Option<int>("--attention-context") { Description = "Also time paged vs contiguous attention at this context (0 = skip).", DefaultValueFactory = _ => 0 };
        var kvBudget = GenerationCommandSupport.KvBudgetOption();
        var kvDisk = GenerationCommandSupport.KvDiskOption();
        var ttft = new Option<int>("--ttft-prefix") { Description = "Also time TTFT with this many cached vs uncached prefix tokens (0 = skip).", DefaultValueFactory = _ => 0 };

        var cmd = new Command("bench-parallel", "Serving throughput with 1..P concurrent sequences on the paged engine.")
        {
            model, synthetic, type, parallel, gen, prompt, reps, threads, json, attention, ttft, kvBudget, kvDisk,
        };
        cmd.SetAction((pr, ct) => GenerationCommandSupport.Guard(() =>
        {
            void Log(string s) => Console.Error.WriteLine(s);
            string path = pr.GetValue(synthetic) is string shape
                ? SyntheticModel.EnsureNamed(SyntheticModel.Shape(shape), pr.GetValue(type)!, null, Log)
                : GenerationCommandSupport.ResolveModel(pr.GetValue(model));
            var counts = pr.GetValue(parallel)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(s => int.TryParse(s, out int v) ? v : throw new ArgumentException($"--parallel: '{s}' is not a number")).ToArray();
            var rows = ParallelBenchmark.Run(path, counts, pr.GetValue(gen), pr.GetValue(prompt), pr.GetValue(reps), pr.GetValue(threads), log: Log, cancellationToken: ct,
                kvBudgetBytes: GenerationCommandSupport.ParseBytes(pr.GetValue(kvBudget)), kvDiskBytes: GenerationCommandSupport.KvDiskBytes(pr.GetValue(kvDisk)));
            var extra = new Dictionary<string, object>();
            if (pr.GetValue(attention) is int ctx and > 0)
            {
                foreach (int qRows in new[] { 1, 16 })
                    foreach (bool scrambled in new[] { true, false })
                    {
                        var (tc, tp, ratio) = ParallelBenchmark.AttentionPaging(ctx, queryRows: qRows, threads: pr.GetValue(threads), scrambled: scrambled);
                        string layout = scrambled ? "scrambled" : "interleaved";
                        extra[$"attention_q{qRows}_{layout}"] = new { context = ctx, query_rows = qRows, layout, contiguous_us = tc * 1e6, paged_us = tp * 1e6, ratio_contiguous_over_paged = ratio };
                        Log($"attention @ {ctx}, {qRows} query rows, {layout} 16-token blocks: contiguous {tc * 1e6:F1} µs, paged {tp * 1e6:F1} µs, ratio {ratio:F3}");
                    }
            }
            if (pr.GetValue(ttft) is int prefix and > 0)
            {
                var (cold, warm, reused) = ParallelBenchmark.PrefixCacheTtft(path, prefix, repetitions: pr.GetValue(reps), threads: pr.GetValue(threads), log: Log);
                extra["ttft"] = new { prefix_tokens = prefix, reused_tokens = reused, cold_ms = cold, cached_ms = warm };
            }
            if (pr.GetValue(json))
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(rows, new JsonSerializerOptions { WriteIndented = true }));
                if (extra.Count > 0) Console.Out.WriteLine(JsonSerializer.Serialize(extra, new JsonSerializerOptions { WriteIndented = true }));
            }
            else
            {
                Console.Out.WriteLine($"| {"test",-14} | {"parallel",8} | {"t/s",16} | {"ttft ms",8} | {"steps",6} | {"preempt",7} | {"to disk",7} | {"computed",8} |");
                Console.Out.WriteLine($"| {new string('-', 14)} | {new string('-', 8)}:| {new string('-', 16)}:| {new string('-', 8)}:| {new string('-', 6)}:| {new string('-', 7)}:| {new string('-', 7)}:| {new string('-', 8)}:|");
                foreach (var r in rows)
                    Console.Out.WriteLine($"| {r.Test,-14} | {r.Parallel,8} | {r.TokensPerSecondMean,9:F2} ± {r.TokensPerSecondSd,5:F2} | {r.TimeToFirstTokenMs,8:F0} | {r.Steps,6} | {r.Preemptions,7} | {r.BlocksMovedToDisk,7} | {r.TokensComputed,8} |");
                foreach (var (k, v) in extra) Console.Out.WriteLine($"{k}: {JsonSerializer.Serialize(v)}");
            }
            return Task.FromResult(0);
        }));
        return cmd;
    }
}
