// Owns: `--ingest`: prompt-ingest (prefill) speed against prompt length for KV policies, through the real model forward.
// For each length L a fresh KV store is filled by model.Forward over random tokens in chunks of --chunk tokens (positions
// 0 … L−1, every layer, through PolicyBackend so quest/msa select per chunk as at decode); the cost of the whole ingest
// is timed and reported as tokens/s, with the ratio of the per-token cost at each length to the 4K one (linear ingest ⇒
// ≈ 1×; full attention is quadratic ⇒ grows ∝ L). Policies: full (the plain float32 store, no policy layer), quest and
// msa with a fixed token budget (--budget, default 2048 tokens per chunk and KV head beyond the chunk + local window).
// Before timing, every policy ingests 4K tokens twice (JIT warm-up). A (policy, length) cell whose predicted time (the
// previous length's per-token cost × L, scaled by L/previous for full) exceeds --max-seconds is skipped ("–").
// With --threads 1 (the default) the time is the calling thread's CPU time (the single-threaded backend runs inline),
// which other processes on the shared cores do not inflate; with more threads it is wall time.
// Usage: dotnet run -c Release --project bench/Engine.Bench -- --ingest [--shape tiny|llama-1b] [--type q8_0]
//        [--lengths 4096,16384,65536,131072] [--chunk 512] [--budget 2048] [--threads 1] [--policies full,quest,msa] [--max-seconds 120]
using System.Diagnostics;
using Engine.Kernels;
using Engine.Memory;
using Engine.Memory.Policies;
using Engine.Model;
using Engine.Runtime.Benchmarking;

namespace Engine.Bench;

public static class IngestBench
{
    public static void Run(string[] args)
    {
        string Arg(string name, string def) { int i = Array.IndexOf(args, name); return i >= 0 && i + 1 < args.Length ? args[i + 1] : def; }
        var shape = SyntheticModel.Shape(Arg("--shape", "tiny"));
        var type = SyntheticModel.ParseType(Arg("--type", "q8_0"));
        var lengths = Arg("--lengths", "4096,16384,65536,131072").Split(',').Select(int.Parse).ToArray();
        int chunk = int.Parse(Arg("--chunk", "512")), budget = int.Parse(Arg("--budget", "2048")), threads = int.Parse(Arg("--threads", "1"));
        double maxSeconds = double.Parse(Arg("--max-seconds", "120"), System.Globalization.CultureInfo.InvariantCulture);
        var policies = Arg("--policies", "full,quest,msa").Split(',');
        if (chunk <= 0 || lengths.Any(l => l <= 0)) throw new ArgumentException("--chunk and --lengths must be positive");

        string path = SyntheticModel.Ensure(shape, type, null, Console.Error.WriteLine);
        using var file = Engine.Formats.ModelFiles.Open(path);
        using var cpu = new CpuBackend(threads);
        var pb = new PolicyBackend(cpu);
        using var model = ModelLoader.LoadAny(file, pb);
        var c = model.Config;
        var logits = new float[c.VocabSize];
        Console.WriteLine($"# ingest bench: {shape.Name} {type} ({c.LayerCount} layers, {c.HeadCount}/{c.KvHeadCount} heads × {c.HeadDim}), "
            + $"cpu backend {threads} threads, chunks of {chunk} tokens, budget {budget} tokens, {(threads == 1 ? "thread CPU" : "wall")} time");

        for (int round = 0; round < 2; round++)
            foreach (var pol in policies) Ingest(pol, 4096);

        var table = new Dictionary<(string, int), (double Seconds, long Read)>();
        foreach (var pol in policies)
        {
            double lastPerToken = 0; int lastLen = 0;
            foreach (int len in lengths)
            {
                double predicted = lastLen == 0 ? 0 : lastPerToken * len * (pol == "full" ? (double)len / lastLen : 1);
                if (predicted > maxSeconds) { Console.Error.WriteLine($"{pol,-6} {len,8}: skipped (predicted {predicted:F0} s > {maxSeconds} s)"); continue; }
                var r = Ingest(pol, len);
                table[(pol, len)] = r;
                lastPerToken = r.Seconds / len; lastLen = len;
                Console.Error.WriteLine($"{pol,-6} {len,8}: {r.Seconds,8:F2} s, {len / r.Seconds,9:F0} tokens/s (last chunk reads {r.Read} tokens/KV head)");
            }
        }
        string L(int d) => d >= 1024 ? $"{d / 1024}K" : $"{d}";
        Console.WriteLine();
        Console.WriteLine("| policy | " + string.Join(" | ", lengths.Select(d => $"{L(d)} tok/s")) + " | " + string.Join(" | ", lengths.Where(d => d > 4096).Select(d => $"{L(d)}/4K per-token cost")) + " | last chunk reads (longest) |");
        Console.WriteLine("|---|" + string.Concat(Enumerable.Repeat("---:|", lengths.Length + lengths.Count(d => d > 4096) + 1)));
        foreach (var pol in policies)
        {
            var cells = lengths.Select(d => table.TryGetValue((pol, d), out var r) ? $"{d / r.Seconds:F0}" : "–");
            var ratios = lengths.Where(d => d > 4096).Select(d => table.TryGetValue((pol, d), out var r) && table.TryGetValue((pol, 4096), out var b)
                ? $"{r.Seconds / d / (b.Seconds / 4096):F2}×" : "–");
            int longest = lengths.Where(d => table.ContainsKey((pol, d))).DefaultIfEmpty(0).Max();
            string reads = longest > 0 ? $"{table[(pol, longest)].Read} of {longest}" : "–";
            Console.WriteLine($"| {pol} | " + string.Join(" | ", cells) + " | " + string.Join(" | ", ratios) + $" | {reads} |");
        }

        (double Seconds, long Read) Ingest(string policy, int length)
        {
            var inner = new ContiguousKvStore(c.LayerCount, c.KvDim, length + 1);
            PolicyKvStore? ps = policy == "full" ? null : new PolicyKvStore(inner, KvPolicySpec.Parse(policy, 1.0, budget));
            IKvStore kv = ps ?? (IKvStore)inner;
            pb.Store = ps;
            try
            {
                var rng = new Random(length);
                var tokens = new int[chunk];
                long t0 = Stopwatch.GetTimestamp(); double c0 = ThreadCpuMs();
                for (int start = 0; start < length; start += chunk)
                {
                    int n = Math.Min(chunk, length - start);
                    for (int i = 0; i < n; i++) tokens[i] = rng.Next(c.VocabSize);
                    model.Forward(ForwardBatch.ForSequence(tokens.AsSpan(0, n), start), kv, logits, false);
                }
                double s = threads == 1 ? (ThreadCpuMs() - c0) / 1e3 : Stopwatch.GetElapsedTime(t0).TotalSeconds;
                return (s, ps?.LastReadTokens ?? length);
            }
            finally { pb.Store = null; kv.Dispose(); }
        }
    }

    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
    private struct Timespec { public long Sec, Nsec; }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "clock_gettime")]
    private static extern int ClockGetTime(int clock, out Timespec ts);

    /// <summary>CPU time of the calling thread in ms (CLOCK_THREAD_CPUTIME_ID = 3).</summary>
    private static double ThreadCpuMs() => ClockGetTime(3, out var ts) == 0 ? ts.Sec * 1e3 + ts.Nsec / 1e6 : throw new InvalidOperationException("clock_gettime failed");
}
