// Owns: `engine bench` — llama-bench-style pp/tg tokens/s of a GGUF (or of a cached random-weight synthetic model of a
// named shape in the asked weight types) at context depths, as a table (default) or a JSON array (--json) on stdout.
// Progress, load figures and the optional per-op profile go to stderr. The logic lives in Engine.Runtime.Benchmarking.
using System.CommandLine;
using Engine.Runtime.Benchmarking;
using Spectre.Console;

namespace Engine.Cli.Commands;

public static class BenchCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model", "-m") { Description = "Model file (any GGUF)." };
        var synthetic = new Option<string?>("--synthetic") { Description = "Random-weight model of a named shape instead: llama-1b (Llama-3.2-1B), tiny." };
        var types = new Option<string>("--type") { Description = "Weight type(s) of the synthetic model, comma-separated: f16, q8_0, q4_0, q4_k, q6_k, …", DefaultValueFactory = _ => "q4_0" };
        var cacheDir = new Option<string?>("--cache-dir") { Description = "Where synthetic models are cached (default ~/.cache/engine)." };
        var prompt = new Option<string>("-p", "--n-prompt") { Description = "Prompt tokens per pp test, comma-separated (0 = skip).", DefaultValueFactory = _ => "512" };
        var gen = new Option<string>("-n", "--n-gen") { Description = "Generated tokens per tg test, comma-separated (0 = skip).", DefaultValueFactory = _ => "128" };
        var depth = new Option<string>("-d", "--n-depth") { Description = "Context depths (tokens pre-filled, untimed), comma-separated.", DefaultValueFactory = _ => "0" };
        var reps = new Option<int>("-r", "--repetitions") { Description = "Repetitions per test.", DefaultValueFactory = _ => 5 };
        var threads = new Option<string>("--threads", "-t") { Description = "CPU threads, comma-separated (0 = all cores).", DefaultValueFactory = _ => "0" };
        var backend = GenerationCommandSupport.BackendOption();
        var json = new Option<bool>("--json") { Description = "Print a JSON array instead of a table." };
        var randomKv = new Option<bool>("--random-kv") { Description = "Fill the depth's KV with random rows instead of running the model over it (fast; same decode cost)." };
        var profile = new Option<bool>("--profile") { Description = "Time every op and print the breakdown per test to stderr." };
        var parallel = new Option<string?>("--parallel")
        {
            Description = "Concurrent sequences, comma-separated (e.g. 1,4,16): total generated tokens/s of the paged engine with -n tokens per " +
                "sequence, one row each (pp rows of -p still run; tg rows are skipped).",
        };

        var cmd = new Command("bench", "Measure prompt processing (pp) and decode (tg) speed, llama-bench style.")
        {
            model, synthetic, types, cacheDir, prompt, gen, depth, reps, threads, backend, json, randomKv, profile, parallel,
        };
        cmd.SetAction((pr, ct) => GenerationCommandSupport.Guard(() =>
        {
            string? path = pr.GetValue(model), shapeName = pr.GetValue(synthetic);
            if ((path == null) == (shapeName == null)) throw new ArgumentException("give exactly one of --model PATH or --synthetic SHAPE");
            var files = new List<string>();
            if (path != null)
            {
                if (!File.Exists(path)) throw new FileNotFoundException($"model file not found: {path}");
                files.Add(path);
            }
            else
            {
                var shape = SyntheticModel.Shape(shapeName!);
                foreach (var t in Ints.Split(pr.GetValue(types)!))
                    files.Add(SyntheticModel.EnsureNamed(shape, t, pr.GetValue(cacheDir), Log));
            }
            var results = new List<BenchResult>();
            int[]? parallelCounts = pr.GetValue(parallel) is string pl ? Ints.Parse(pl, "--parallel") : null;
            var parallelResults = new List<ParallelBenchResult>();
            foreach (string f in files)
                foreach (int th in Ints.Parse(pr.GetValue(threads)!, "--threads"))
                    foreach (int p in Ints.Parse(pr.GetValue(prompt)!, "-p"))
                        foreach (int n in parallelCounts != null ? [0] : Ints.Parse(pr.GetValue(gen)!, "-n"))
                        {
                            ct.ThrowIfCancellationRequested();
                            if (p == 0 && n == 0) continue;   // --parallel without pp
                            var o = new BenchOptions
                            {
                                PromptTokens = p, GenTokens = n, Depths = Ints.Parse(pr.GetValue(depth)!, "-d"),
                                Repetitions = pr.GetValue(reps), Threads = th, Backend = pr.GetValue(backend)!, Profile = pr.GetValue(profile),
                                RandomKvFill = pr.GetValue(randomKv),
                            };
                            if (th > Environment.ProcessorCount) GenerationCommandSupport.WarnThreads(th);
                            var rs = ModelBenchmark.Run(f, o, Log, ct);
                            foreach (var r in rs.Where(r => r.Profile != null)) PrintProfile(r);
                            results.AddRange(rs);
                        }
            if (parallelCounts != null)
                foreach (string f in files)
                    foreach (int th in Ints.Parse(pr.GetValue(threads)!, "--threads"))
                        foreach (int n in Ints.Parse(pr.GetValue(gen)!, "-n"))
                            parallelResults.AddRange(ParallelBenchmark.Run(f, parallelCounts, n, repetitions: Math.Min(pr.GetValue(reps), 3),
                                threads: th, backend: pr.GetValue(backend)!, log: Log, cancellationToken: ct));
            if (pr.GetValue(json))
            {
                if (parallelCounts == null) Console.Out.WriteLine(ModelBenchmark.ToJson(results));
                else
                {
                    var all = new System.Text.Json.Nodes.JsonArray();
                    foreach (var r in results) all.Add(System.Text.Json.JsonSerializer.SerializeToNode(r));
                    foreach (var r in parallelResults) all.Add(System.Text.Json.JsonSerializer.SerializeToNode(r));
                    Console.Out.WriteLine(all.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
                }
            }
            else
            {
                if (results.Count > 0) PrintTable(results);
                foreach (var r in parallelResults)
                    Console.Out.WriteLine($"parallel {r.Parallel,3}: {r.Test,-12} {r.TokensPerSecondMean,9:F2} ± {r.TokensPerSecondSd:F2} t/s total " +
                        $"(ttft {r.TimeToFirstTokenMs:F0} ms, {r.Steps} steps)");
            }
            return Task.FromResult(0);
        }));
        return cmd;
    }

    private static void Log(string line) => Console.Error.WriteLine(line);

    private static void PrintTable(IReadOnlyList<BenchResult> results)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Out) });
        console.Profile.Width = Math.Max(console.Profile.Width, 120);   // redirected output: don't wrap cells at 80
        var table = new Table().AddColumns("model", "type", "size", "backend", "threads", "test", "t/s", "peak RSS");
        foreach (var r in results)
            table.AddRow(r.Model, r.Type, $"{r.FileBytes / 1048576.0:F0} MiB", r.Backend, r.Threads.ToString(),
                r.Label, $"{r.TokensPerSecondMean:F2} ± {r.TokensPerSecondSd:F2}", $"{r.PeakRssBytes / 1048576.0:F0} MiB");
        console.Write(table);
    }

    private static void PrintProfile(BenchResult r)
    {
        double total = r.Profile!.Sum(e => e.Seconds);
        Console.Error.WriteLine($"profile {r.Model} {r.Type} {r.Label} ({r.Repetitions} reps, {total:F2} s in ops):");
        foreach (var (op, s, calls) in r.Profile!)
            Console.Error.WriteLine($"  {op,-34} {s,8:F3} s {100 * s / total,5:F1} %  {calls,7} calls  {1e6 * s / calls,9:F1} µs/call");
    }

    private static class Ints
    {
        public static string[] Split(string text) => text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

        public static int[] Parse(string text, string option)
        {
            var parts = Split(text);
            if (parts.Length == 0) throw new ArgumentException($"{option} is empty");
            return parts.Select(p => int.TryParse(p, out int v) && v >= 0 ? v : throw new ArgumentException($"{option}: '{p}' is not a non-negative integer")).ToArray();
        }
    }
}
