// Owns: `--depth`: decode time per step against context depth for KV policies, without prefilling through the model.
// For each depth D the KV store (every layer) is filled directly with uniform ±1 K/V rows for positions [0, D) (through
// the policy store, so quest/msa summaries are built as on a real prefill), then single-token model forwards at positions
// D, D+1, … are timed per round (after a JIT warm-up of 2 × --warmup steps per policy at depth 8K; 2 untimed warm-up steps, then `steps` timed; a cell is the minimum over rounds of the per-round median). Policies: full (the plain
// float32 store, no policy layer), quest and msa with a fixed selection budget (--kv-budget-tokens, default 2048 tokens
// per step and KV head), h2o with a retention budget of the same number of tokens (fraction = budget / D; h2o's Retain is
// a per-step O(D) pass). Model: a synthetic random-weight Llama shape (SyntheticModel; `tiny` by default).
// Prints a table of ms/step and the ratio of each depth's time to the 4K time. With --threads 1 (the default) the time is
// the calling thread's CPU time (clock_gettime(CLOCK_THREAD_CPUTIME_ID); the single-threaded backend runs inline), which
// other processes on the shared cores do not inflate; with more threads it is wall time.
// Usage: dotnet run -c Release --project bench/Engine.Bench -- --depth [--shape tiny|llama-1b] [--type q8_0]
//        [--depths 1024,4096,16384,65536,131072] [--budget 2048] [--steps 16] [--rounds 3] [--warmup 60] [--threads 1] [--policies full,quest,msa,h2o]
//        [--shared] (one selection for all KV heads) [--flat] (no two-level super-block selection)
using System.Diagnostics;
using Engine.Formats;
using Engine.Kernels;
using Engine.Memory;
using Engine.Memory.Policies;
using Engine.Model;
using Engine.Runtime.Benchmarking;

namespace Engine.Bench;

public static class SelectionDepthBench
{
    public static void Run(string[] args)
    {
        string Arg(string name, string def) { int i = Array.IndexOf(args, name); return i >= 0 && i + 1 < args.Length ? args[i + 1] : def; }
        var shape = SyntheticModel.Shape(Arg("--shape", "tiny"));
        var type = SyntheticModel.ParseType(Arg("--type", "q8_0"));
        var depths = Arg("--depths", "1024,4096,16384,65536,131072").Split(',').Select(int.Parse).ToArray();
        int budget = int.Parse(Arg("--budget", "2048")), steps = int.Parse(Arg("--steps", "16")), threads = int.Parse(Arg("--threads", "1")), rounds = int.Parse(Arg("--rounds", "3")), warmup = int.Parse(Arg("--warmup", "60"));
        var policies = Arg("--policies", "full,quest,msa,h2o").Split(',');
        bool shared = args.Contains("--shared"), flat = args.Contains("--flat");   // ablations: one shared selection; no super-blocks

        string path = SyntheticModel.Ensure(shape, type, null, Console.Error.WriteLine);
        using var file = ModelFiles.Open(path);
        using var cpu = new CpuBackend(threads);
        var pb = new PolicyBackend(cpu);
        using var model = ModelLoader.LoadAny(file, pb);
        var c = model.Config;
        var logits = new float[c.VocabSize];
        Console.WriteLine($"# depth bench: {shape.Name} {type} ({c.LayerCount} layers, {c.HeadCount}/{c.KvHeadCount} heads × {c.HeadDim}), "
            + $"cpu backend {threads} threads, budget {budget} tokens, {steps} timed steps (median {(threads == 1 ? "thread CPU" : "wall")} time), min over {rounds} rounds"
            + (shared ? ", shared selection" : "") + (flat ? ", flat (no super-blocks)" : ""));

        // warm-up: every policy's path runs enough steps (twice, with a pause) for tiered compilation to promote it
        for (int round = 0; round < 2; round++)
        {
            foreach (var pol in policies) Measure(pol, 8192, warmup);
            Thread.Sleep(300);
        }

        // rounds: the whole (depth × policy) sweep R times; a cell is the minimum over rounds of its per-round median
        var table = new Dictionary<(string, int), double>();
        for (int round = 0; round < rounds; round++)
            foreach (int d in depths)
                foreach (var pol in policies)
                {
                    var (ms, read) = Measure(pol, d, steps);
                    table[(pol, d)] = Math.Min(ms, table.GetValueOrDefault((pol, d), double.PositiveInfinity));
                    Console.Error.WriteLine($"round {round + 1}: {pol,-6} depth {d,7}: {ms,8:F3} ms/step (reads {read} tokens/KV head)");
                }
        Console.WriteLine();
        Console.WriteLine("| policy | " + string.Join(" | ", depths.Select(d => d >= 1024 ? $"{d / 1024}K" : $"{d}")) + " | " + string.Join(" | ", depths.Where(d => d > 4096).Select(d => $"{d / 1024}K/4K")) + " |");
        Console.WriteLine("|---|" + string.Concat(Enumerable.Repeat("---:|", depths.Length + depths.Count(d => d > 4096))));
        foreach (var pol in policies)
        {
            var cells = depths.Select(d => $"{table[(pol, d)]:F3}");
            var ratios = depths.Where(d => d > 4096).Select(d => table.TryGetValue((pol, 4096), out var b) ? $"{table[(pol, d)] / b:F2}×" : "–");
            Console.WriteLine($"| {pol} | " + string.Join(" | ", cells) + " | " + string.Join(" | ", ratios) + " |");
        }

        (double Ms, long Read) Measure(string policy, int depth, int timed)
        {
            var inner = new ContiguousKvStore(c.LayerCount, c.KvDim, depth + timed + 4);
            PolicyKvStore? ps = policy switch
            {
                "full" => null,
                "h2o" => new PolicyKvStore(inner, KvPolicySpec.Parse("h2o", Math.Min(1.0, (double)budget / depth))),
                _ => new PolicyKvStore(inner, KvPolicySpec.Parse(policy, 1.0, budget)),
            };
            if (ps?.Selector is { } sel) { sel.PerKvHead = !shared; sel.TwoLevel = !flat; }
            IKvStore kv = ps ?? (IKvStore)inner;
            pb.Store = ps;
            try
            {
                Fill(kv, depth, c.LayerCount, c.KvDim);
                var rng = new Random(depth);
                var times = new List<double>();
                for (int s = 0; s < timed + 2; s++)
                {
                    long t0 = Stopwatch.GetTimestamp(); double c0 = ThreadCpuMs();
                    model.Forward(ForwardBatch.ForSequence([rng.Next(c.VocabSize)], depth + s), kv, logits, false);
                    if (s >= 2) times.Add(threads == 1 ? ThreadCpuMs() - c0 : Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                }
                times.Sort();
                return (times[times.Count / 2], ps?.LastReadTokens ?? depth + timed + 1);
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

    /// <summary>Positions [0, depth) of sequence 0 in every layer ← uniform ±1 rows (a few distinct chunks, reused).</summary>
    private static void Fill(IKvStore kv, int depth, int layers, int kvDim)
    {
        const int chunk = 256, variants = 7;
        var rng = new Random(1);
        var k = new float[variants][]; var v = new float[variants][];
        for (int i = 0; i < variants; i++)
        {
            k[i] = new float[chunk * kvDim]; v[i] = new float[chunk * kvDim];
            for (int j = 0; j < k[i].Length; j++) { k[i][j] = rng.NextSingle() * 2 - 1; v[i][j] = rng.NextSingle() * 2 - 1; }
        }
        var pos = new int[chunk];
        for (int p0 = 0, n = 0; p0 < depth; p0 += chunk, n++)
        {
            int len = Math.Min(chunk, depth - p0);
            for (int i = 0; i < len; i++) pos[i] = p0 + i;
            for (int l = 0; l < layers; l++)
                kv.Write(l, 0, pos.AsSpan(0, len), k[(n + l) % variants].AsSpan(0, len * kvDim), v[(n + l) % variants].AsSpan(0, len * kvDim));
        }
    }
}
