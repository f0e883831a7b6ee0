// Owns: what the run / chat / logits commands share — locating the bundled default model, the common model and
// sampling options, loading with a progress indication on stderr, and turning failures into one-line errors.
// Invariants: nothing but generated text / requested results ever goes to stdout; every failure is one line on
// stderr and a non-zero exit code (1 = bad input or file, 130 = cancelled).
using System.CommandLine;
using Engine.Runtime;
using Engine.Runtime.Memory;
using Engine.Runtime.Sampling;
using Engine.Runtime.Tools;
using Spectre.Console;

namespace Engine.Cli.Commands;

internal static class GenerationCommandSupport
{
    public const string DefaultModelRelative = "models/stories260K.gguf";

    public static Option<string?> ModelOption() => new("--model", "-m")
    {
        Description = $"Model file (GGUF, rwkv.cpp .bin, llama2.c .bin, safetensors folder). Default: the bundled {DefaultModelRelative}.",
    };

    public static Option<string?> TokenizerOption() => new("--tokenizer")
    {
        Description = "Separate tokenizer (llama2.c tokenizer .bin, tokenizer.json, or a GGUF with tokenizer metadata); default: the model's own.",
    };

    public static Option<int> ThreadsOption() => new("--threads", "-t") { Description = "CPU threads (0 = all cores; more than the cores = the cores).", DefaultValueFactory = _ => 0 };

    /// <summary>`--memory-dir D`: the folder holding persistent memories (run, chat, memory add/ls/rm).</summary>
    public static Option<string?> MemoryDirOption() => new("--memory-dir") { Description = "Folder holding memories (default $ENGINE_MEMORY_DIR or ~/.cache/engine/memories)." };

    /// <summary>Warns on stderr when --threads asks for more threads than cores (the backend starts only the cores).</summary>
    public static void WarnThreads(int threads)
    {
        if (threads > Environment.ProcessorCount)
            Console.Error.WriteLine($"warning: --threads {threads} is more than the {Environment.ProcessorCount} cores; using {Environment.ProcessorCount}");
    }

    public static Option<string> BackendOption() => new("--backend")
    {
        Description = "Compute backend: auto (gpu if a CUDA device is present, else cpu), cpu (SIMD, multi-threaded), reference (scalar, exact, slow), gpu (CUDA via ILGPU), gpu-sim (the GPU kernels on ILGPU's CPU accelerator, slow).",
        DefaultValueFactory = _ => "cpu",
    };

    public static Option<string?> KvBudgetOption() => new("--kv-budget")
    {
        Description = "KV memory budget of the paged engine (bytes, or with K/M/G suffix, e.g. 512M). Default: one full context (run/chat run one stream).",
    };

    /// <summary>`--kv-disk-mb N`: a KV disk tier of N MiB for the paged engine (EngineOptions.Kv.DiskBytes).</summary>
    public static Option<int> KvDiskOption() => new("--kv-disk-mb")
    {
        Description = "Paged engine: MiB of KV disk tier (a memory-mapped temp file, deleted at exit). When the --kv-budget RAM blocks run out, "
            + "cold blocks move there instead of requests being preempted. Default 0 = none.",
        DefaultValueFactory = _ => 0,
    };

    /// <summary>`--kv-disk-mb` in bytes; a negative value is rejected.</summary>
    public static long KvDiskBytes(int mebibytes) =>
        mebibytes >= 0 ? (long)mebibytes << 20 : throw new ArgumentException($"--kv-disk-mb: {mebibytes} is negative; give a size in MiB ≥ 0");

    /// <summary>Parses "123", "64K", "512M", "2G" (binary multiples) into bytes; null/empty = 0 (the engine's default).</summary>
    public static long ParseBytes(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return 0;
        text = text.Trim();
        long mult = char.ToUpperInvariant(text[^1]) switch { 'K' => 1L << 10, 'M' => 1L << 20, 'G' => 1L << 30, _ => 1 };
        var digits = mult == 1 ? text : text[..^1];
        if (!double.TryParse(digits, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double v) || v <= 0)
            throw new ArgumentException($"--kv-budget: '{text}' is not a positive size (e.g. 1073741824, 512M, 2G)");
        return (long)(v * mult);
    }

    /// <summary>The model path given, or the bundled default model: first beside the executable (AppContext.BaseDirectory/models,
    /// where the build and the .NET tool put it), then the repository's models/ folder above it.</summary>
    public static string ResolveModel(string? given)
    {
        if (!string.IsNullOrEmpty(given)) return given;
        var candidates = new List<string>
        {
            Path.Combine(AppContext.BaseDirectory, DefaultModelRelative),
            Path.Combine(AppContext.BaseDirectory, Path.GetFileName(DefaultModelRelative)),
        };
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Engine.sln")))
            {
                candidates.Add(Path.Combine(dir.FullName, DefaultModelRelative));
                break;
            }
        foreach (var c in candidates) if (File.Exists(c)) return c;
        throw new FileNotFoundException($"no --model given and the default model {DefaultModelRelative} was not found (looked in: {string.Join(", ", candidates)})");
    }

    /// <summary>Runs <paramref name="load"/> with a spinner on stderr when stderr is a terminal.</summary>
    public static T WithProgress<T>(string what, Func<T> load)
    {
        if (Console.IsErrorRedirected) return load();
        var err = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        T result = default!;
        err.Status().Start(what, _ => result = load());
        return result;
    }

    /// <summary>`--kv-policy SPEC`: a KV memory policy for the engine (per engine; the runtime picks the store).</summary>
    public static Option<string?> KvPolicyOption() => new("--kv-policy")
    {
        Description = "KV memory policy: full, sinks, h2o, snapkv, arkv, int8, kivi4, optionally +quest or +msa (e.g. arkv+quest); "
            + "kivi2, kivi3 (all tokens, low-bit bulk); mix2, mix3, mix4, auto (composed under a byte budget). "
            + "The runtime picks the store: one stream (run/chat) uses the single-sequence policy store, which frees evicted rows. Default: none.",
    };

    /// <summary>`--kv-budget-fraction F`: the policy's budget, a fraction of the sequence in (0, 1].</summary>
    public static Option<double> KvPolicyBudgetOption() => new("--kv-budget-fraction")
    {
        Description = "The fraction in (0, 1] the KV policy may hold: of the full float32 cache's bytes for mix2/mix3/mix4/auto, "
            + "of the sequence's tokens for the others (quest/msa: tokens read). Given without --kv-policy: the policy is auto.",
        DefaultValueFactory = _ => new KvPolicyOptions().Budget,
    };

    /// <summary>The KV policy a command runs: --kv-policy when given; else "auto" when --kv-budget-fraction was given
    /// explicitly (a byte budget and no policy named); else none.</summary>
    public static string? KvPolicyName(ParseResult pr, Option<string?> kvPolicy, Option<double> kvPolicyBudget)
        => pr.GetValue(kvPolicy) is { Length: > 0 } named ? named
            : pr.GetResult(kvPolicyBudget) is { Implicit: false } ? "auto" : null;

    /// <summary>`--kv-budget-tokens N`: a selection policy's (quest, msa) fixed read budget in tokens per step.</summary>
    public static Option<int?> KvPolicyBudgetTokensOption(string policyOption = "--kv-policy") => new("--kv-budget-tokens")
    {
        Description = $"With {policyOption} ...+quest/msa: tokens read per decode step and KV head, whatever the context length "
            + "(overrides --kv-budget-fraction for selection; retention keeps the fraction). Must be > 0.",
    };

    /// <summary>Prints what the KV policy store holds (stderr; nothing without a policy).</summary>
    public static void PrintKvPolicy(InferenceEngine engine)
    {
        if (engine.KvPolicyUsage is not { } k) return;
        Console.Error.WriteLine($"kv policy {k.Policy} (budget {k.Budget:G3}): {k.Tokens} tokens cached, holds {k.HeldBytesPerToken:F0} bytes/token "
            + $"of {k.FullBytesPerToken:F0} float32 ({(k.FullBytes > 0 ? k.HeldBytes / k.FullBytes : 0):P0})");
    }

    public static InferenceEngine LoadEngine(string? model, string backend, int threads, int contextLength = 0, string? tokenizer = null, long kvBudgetBytes = 0,
        string? memory = null, string? kvPolicy = null, double? kvPolicyBudget = null, int? kvPolicyBudgetTokens = null, long kvDiskBytes = 0,
        string? memoryDir = null)
    {
        string path = ResolveModel(model);
        if (!File.Exists(path) && !Directory.Exists(path)) throw new FileNotFoundException($"model file not found: {path}");
        var sw = System.Diagnostics.Stopwatch.StartNew();
        // run / chat are one stream: the CLI says so (MaxConcurrentSequences = 1) and the runtime picks the store (with a KV
        // policy and no disk tier: the single-sequence policy store, which frees what the policy evicts or quantizes).
        WarnThreads(threads);
        if (memory != null) MemoryStore.OnLockWait(line => Console.Error.WriteLine(line));
        var engine = WithProgress($"loading {Path.GetFileName(path)}…", () =>
            InferenceEngine.Load(path, new EngineOptions
            {
                Backend = backend, Threads = threads, ContextLength = contextLength, TokenizerPath = tokenizer,
                Kv = new KvCacheOptions { BudgetBytes = kvBudgetBytes, DiskBytes = kvDiskBytes },
                Documents = new DocumentMemoryOptions { Name = memory, Directory = memoryDir },
                Policy = new KvPolicyOptions { Spec = kvPolicy, Budget = kvPolicyBudget ?? new KvPolicyOptions().Budget, BudgetTokens = kvPolicyBudgetTokens },
                Serving = new ServingOptions { MaxConcurrentSequences = 1 },
            }));
        var c = engine.ModelInfo;
        Console.Error.WriteLine($"loaded {Path.GetFileName(path)} ({c.Architecture}, {c.LayerCount} layers, dim {c.EmbeddingLength}, vocab {c.VocabSize}, context {engine.ContextLength}) " +
            $"on {engine.BackendName} in {sw.Elapsed.TotalMilliseconds:F0} ms");
        if (engine.ContextLength > c.TrainedContextLength && c.TrainedContextLength > 0)
            Console.Error.WriteLine($"warning: --ctx-size {engine.ContextLength} is beyond the {c.TrainedContextLength} tokens the model was trained on; "
                + "output past that point is usually garbage");
        if (!string.IsNullOrWhiteSpace(kvPolicy))
            Console.Error.WriteLine($"kv policy: {kvPolicy} (budget {kvPolicyBudget ?? new KvPolicyOptions().Budget:G3}"
                + (kvPolicyBudgetTokens is { } bt ? $", selection reads {bt} tokens/step" : "")
                + (engine.IsPaged ? "; paged path with a disk tier: blocks stay allocated)" : "; single-sequence store: evicted / quantized rows are freed)"));
        return engine;
    }

    public static void PrintUsage(GenerationUsage u) =>
        Console.Error.WriteLine($"prompt {u.PromptTokens} tokens ({u.PromptTokensPerSecond:F1} tok/s), generated {u.GeneratedTokens} tokens, " +
            $"first token {u.TimeToFirstToken.TotalMilliseconds:F0} ms, decode {u.DecodeTokensPerSecond:F1} tok/s, finish: {u.FinishReason}");

    /// <summary>Runs a command body, mapping failures to a one-line stderr message and an exit code.</summary>
    public static async Task<int> Guard(Func<Task<int>> body)
    {
        try { return await body(); }
        catch (OperationCanceledException) { Console.Error.WriteLine("cancelled"); return 130; }
        catch (Exception e) when (EngineErrors.IsInputError(e))
        {
            Console.Error.WriteLine($"error: {EngineErrors.Clean(e.Message)}");
            return 1;
        }
    }

    public static SamplingOptions Sampling(float temperature, int topK, float topP, float minP, float repeatPenalty, ulong? seed) => new()
    {
        Temperature = temperature, TopK = topK, TopP = topP, MinP = minP, RepetitionPenalty = repeatPenalty, Seed = seed,
    };
}
