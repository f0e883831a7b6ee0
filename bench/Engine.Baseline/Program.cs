// Owns: the side-by-side speed table of the engine vs llama.cpp (LLamaSharp 0.30.0, in-process) on the same GGUF files,
// with the same thread count, token ids and warm-up, repetitions interleaved (engine, llama, llama, engine, … so both
// see the same machine load), mean ± sample sd, ratio engine / llama. Tests: pp<P>, tg<N>, tg<N> at depth D (both
// sides pre-fill the same D tokens through the model, untimed), and total tokens/s of P sequences decoded together.
//   dotnet run -c Release --project bench/Engine.Baseline -- --type q4_0,q8_0,f16,q4_k -t 2 -r 3
//   … -- --model path/to/file.gguf   (any GGUF both load)    … --kv f32 (llama.cpp K/V type; default F16 as llama-bench)
// Synthetic files (`--type`, shape `--shape llama-1b`) are the ones `engine bench --synthetic` writes (SyntheticModel).
// A bench program: nothing in src/ references LLamaSharp.
using System.Diagnostics;
using Engine.Baseline;
using Engine.Runtime.Benchmarking;
using LLama.Native;

var o = Options.Parse(args);
if (o == null) return 2;

var nativeLog = new List<string>();
NativeLibraryConfig.All.WithLogCallback((level, message) => { lock (nativeLog) nativeLog.Add(message.TrimEnd()); });

var files = new List<string>(o.Models);
foreach (var t in o.Types)
    files.Add(SyntheticModel.Ensure(SyntheticModel.Shape(o.Shape), SyntheticModel.ParseType(t), null, Console.Error.WriteLine));

var rows = new List<(string File, string Test, double[] E, double[] L)>();
foreach (var path in files)
{
    Console.Error.WriteLine($"== {Path.GetFileName(path)}");
    int depthMax = o.Depth;
    int capacity = depthMax + Math.Max(o.Prompt, 32) + o.Gen + 8;
    var rng = new Random(o.Seed);
    int[] Tokens(int n, int vocab) { var t = new int[n]; for (int i = 0; i < n; i++) t[i] = rng.Next(3, vocab); return t; }

    using (var eng = new EngineSide(path, o.Threads, capacity))
    using (var lla = new LlamaSide(path, o.Threads, (capacity + 255) / 256 * 256, 1, 512, o.KvType))
    {
        if (rows.Count == 0) PrintNativeInfo(nativeLog, lla, eng);
        int vocab = eng.VocabSize;
        if (lla.VocabSize != vocab) throw new InvalidOperationException($"vocab sizes differ: engine {vocab}, llama.cpp {lla.VocabSize}");
        // Same warm-up on both sides: a 32-token batch and 4 decodes, twice, with a pause (tiered JIT).
        for (int round = 0; round < 2; round++)
        {
            var w = Tokens(36, vocab);
            eng.TruncateTo(0); eng.Prompt(w.AsSpan(0, 32), 0); eng.Generate(w.AsSpan(32), 32);
            lla.TruncateTo(0); lla.Prompt(w.AsSpan(0, 32), 0); lla.Generate(w.AsSpan(32), 32);
            Thread.Sleep(200);
        }
        void Measure(string test, int depth, int tokens, Action<int[]> engine, Action<int[]> llama)
        {
            var e = new double[o.Reps]; var l = new double[o.Reps];
            for (int r = 0; r < o.Reps; r++)
            {
                var ids = Tokens(tokens, vocab);
                double E() { eng.TruncateTo(depth); return Time(() => engine(ids), tokens); }
                double L() { lla.TruncateTo(depth); return Time(() => llama(ids), tokens); }
                if (r % 2 == 0) { e[r] = E(); l[r] = L(); } else { l[r] = L(); e[r] = E(); }
                Console.Error.WriteLine($"{test} rep {r + 1}/{o.Reps}: engine {e[r]:F2} t/s, llama.cpp {l[r]:F2} t/s");
            }
            rows.Add((Path.GetFileName(path), test, e, l));
        }
        if (o.Prompt > 0) Measure($"pp{o.Prompt}", 0, o.Prompt, ids => eng.Prompt(ids, 0), ids => lla.Prompt(ids, 0));
        if (o.Gen > 0) Measure($"tg{o.Gen}", 0, o.Gen, ids => eng.Generate(ids, 0), ids => lla.Generate(ids, 0));
        if (o.Gen > 0 && o.Depth > 0)
        {
            var fill = Tokens(o.Depth, vocab);
            var sw = Stopwatch.StartNew();
            eng.TruncateTo(0); eng.Prompt(fill, 0);
            double te = sw.Elapsed.TotalSeconds; sw.Restart();
            lla.TruncateTo(0); lla.Prompt(fill, 0);
            Console.Error.WriteLine($"pre-filled {o.Depth} tokens: engine {o.Depth / te:F1} t/s, llama.cpp {o.Depth / sw.Elapsed.TotalSeconds:F1} t/s");
            Measure($"tg{o.Gen} @ d{o.Depth}", o.Depth, o.Gen, ids => eng.Generate(ids, o.Depth), ids => lla.Generate(ids, o.Depth));
        }
    }
    foreach (int p in o.Parallel)
    {
        const int promptTokens = 16;
        int ctx = (p * (promptTokens + o.ParallelGen + 16) + 255) / 256 * 256;
        using var lla = new LlamaSide(path, o.Threads, ctx, p, Math.Max(512, p * promptTokens), o.KvType);
        var e = new double[o.Reps]; var l = new double[o.Reps];
        var lrng = new Random(o.Seed);
        double L()
        {
            var prompts = Enumerable.Range(0, p).Select(_ => Tokens(promptTokens, lla.VocabSize)).ToArray();
            lla.Parallel(prompts, Math.Min(4, o.ParallelGen));   // warm-up, as the engine's ParallelBenchmark does
            var sw = Stopwatch.StartNew();
            int n = lla.Parallel(prompts, o.ParallelGen);
            return n / sw.Elapsed.TotalSeconds;
        }
        double E() => EngineSide.Parallel(path, p, o.ParallelGen, promptTokens, o.Threads, o.Seed);
        for (int r = 0; r < o.Reps; r++)
        {
            if (r % 2 == 0) { e[r] = E(); l[r] = L(); } else { l[r] = L(); e[r] = E(); }
            Console.Error.WriteLine($"parallel {p} rep {r + 1}/{o.Reps}: engine {e[r]:F2} t/s, llama.cpp {l[r]:F2} t/s");
        }
        rows.Add((Path.GetFileName(path), $"tg{o.ParallelGen} x{p} total", e, l));
    }
}

Console.WriteLine($"engine vs llama.cpp (LLamaSharp 0.30.0), {o.Threads} threads, {o.Reps} interleaved reps, llama.cpp K/V {(o.KvType?.ToString().Replace("GGML_TYPE_", "") ?? "F16")}, engine K/V F32; {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC; {CpuModel()}");
Console.WriteLine();
Console.WriteLine("| file | test | engine t/s | llama.cpp t/s | engine / llama.cpp |");
Console.WriteLine("|---|---|---:|---:|---:|");
foreach (var (file, test, e, l) in rows)
{
    var (em, es) = ModelBenchmark.MeanSd(e);
    var (lm, ls) = ModelBenchmark.MeanSd(l);
    Console.WriteLine($"| {file} | {test} | {em:F2} ± {es:F2} | {lm:F2} ± {ls:F2} | {em / lm:F2} |");
}
return 0;

static double Time(Action body, int tokens)
{
    long t0 = Stopwatch.GetTimestamp();
    body();
    return tokens / Stopwatch.GetElapsedTime(t0).TotalSeconds;
}

static string CpuModel()
{
    try { return File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name"))?.Split(':', 2)[1].Trim() ?? "?"; }
    catch (IOException) { return "?"; }
}

static void PrintNativeInfo(List<string> log, LlamaSide lla, EngineSide eng)
{
    string[] keys = ["PreferredAvxLevel", "system_info", "CPU :", "CPU_REPACK model buffer"];
    lock (log)
        foreach (var line in log.Where(l => keys.Any(k => l.Contains(k, StringComparison.Ordinal))).Distinct().Take(12))
            Console.Error.WriteLine($"[llama.cpp] {line}");
    // The native files actually mapped into this process (LLamaSharp picks runtimes/<rid>/native/<avx level>/ by CPU).
    var libs = File.ReadLines("/proc/self/maps").Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries).LastOrDefault() ?? "")
        .Where(f => f.Contains("libllama", StringComparison.Ordinal) || f.Contains("libggml", StringComparison.Ordinal)).Distinct();
    foreach (var lib in libs) Console.Error.WriteLine($"[llama.cpp] loaded {lib}");
    Console.Error.WriteLine($"[llama.cpp] K/V {lla.KvType}; engine threads {eng.Threads}");
}

sealed record Options(List<string> Models, List<string> Types, string Shape, int Threads, int Reps, int Prompt, int Gen, int Depth,
    List<int> Parallel, int ParallelGen, GGMLType? KvType, int Seed)
{
    public static Options? Parse(string[] a)
    {
        var o = new Options([], [], "llama-1b", 2, 3, 512, 128, 4096, [1, 16], 32, null, 42);
        try
        {
            for (int i = 0; i < a.Length; i++)
            {
                string V() => i + 1 < a.Length ? a[++i] : throw new ArgumentException($"{a[i]} needs a value");
                List<int> Ints(string s) => s.Length == 0 || s == "0" ? [] : s.Split(',').Select(int.Parse).ToList();
                o = a[i] switch
                {
                    "--model" or "-m" => o with { Models = [.. o.Models, V()] },
                    "--type" => o with { Types = [.. o.Types, .. V().Split(',')] },
                    "--shape" => o with { Shape = V() },
                    "-t" or "--threads" => o with { Threads = int.Parse(V()) },
                    "-r" => o with { Reps = int.Parse(V()) },
                    "-p" => o with { Prompt = int.Parse(V()) },
                    "-n" => o with { Gen = int.Parse(V()) },
                    "-d" or "--depth" => o with { Depth = int.Parse(V()) },
                    "--parallel" => o with { Parallel = Ints(V()) },
                    "--parallel-n" => o with { ParallelGen = int.Parse(V()) },
                    "--kv" => o with { KvType = V().ToLowerInvariant() switch { "f16" => GGMLType.GGML_TYPE_F16, "f32" => GGMLType.GGML_TYPE_F32, var k => throw new ArgumentException($"--kv {k}: f16 or f32") } },
                    "--seed" => o with { Seed = int.Parse(V()) },
                    _ => throw new ArgumentException($"unknown option {a[i]}"),
                };
            }
            if (o.Models.Count == 0 && o.Types.Count == 0) throw new ArgumentException("give --type q4_0,… (synthetic files) or --model FILE");
            if (o.Threads < 1 || o.Reps < 1 || o.Prompt < 0 || o.Gen < 0 || o.Depth < 0 || o.ParallelGen < 1 || o.Parallel.Any(p => p < 1))
                throw new ArgumentException("counts must be positive");
            foreach (var m in o.Models) if (!File.Exists(m)) throw new ArgumentException($"model file not found: {m}");
            return o;
        }
        catch (Exception e) when (e is ArgumentException or FormatException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return null;
        }
    }
}
