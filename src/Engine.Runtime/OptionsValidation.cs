// Owns: the one place where EngineOptions, GenerationOptions and SamplingOptions are checked, for the CLI and the API
// alike (InferenceEngine.Load and every GenerateAsync call run it before any work), and the machine-memory check of
// byte budgets. A bad field → ArgumentException naming the field (and its CLI option) and the allowed range.
// Invariants: Validate never changes an option; values the engine treats as "off"/"default" (0 threads = all cores,
// 0 context = the model's, TopK 0 = off, TopP 1 = off, MinP 0 = off, Temperature 0 = greedy) stay accepted; a budget
// above the memory this process may use (GC's TotalAvailableMemoryBytes: physical RAM or the cgroup limit) is refused
// before anything is allocated.
using Engine.Runtime.Sampling;
using Engine.Tensors;

namespace Engine.Runtime;

public static class OptionsValidation
{
    /// <summary>Largest thread count accepted (more threads than cores only slow a compute-bound engine down; the CPU
    /// backend is capped at the core count anyway, see <see cref="EffectiveThreads"/>).</summary>
    public const int MaxThreads = 4096;
    /// <summary>Largest context length accepted (positions are int; the KV index math stays far from overflow).</summary>
    public const int MaxContextLength = 1 << 24;

    /// <summary>Bytes of memory this process may use: physical RAM, or the container's limit when lower.</summary>
    public static long MachineMemoryBytes => GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;

    /// <summary>Threads the CPU backend really starts for <paramref name="threads"/>: 0 = all cores; more than the
    /// cores = the cores.</summary>
    public static int EffectiveThreads(int threads) => threads <= 0 ? Environment.ProcessorCount : Math.Min(threads, Environment.ProcessorCount);

    /// <summary>Throws ArgumentException naming the first bad field of <paramref name="o"/>.</summary>
    public static void Validate(this EngineOptions o)
    {
        ArgumentNullException.ThrowIfNull(o);
        if (string.IsNullOrWhiteSpace(o.Backend)) throw Bad("EngineOptions.Backend", "--backend", "(empty)", "cpu or reference");
        Range("EngineOptions.Threads", "--threads", o.Threads, 0, MaxThreads, "0 = all cores");
        Range("EngineOptions.ContextLength", "--ctx-size", o.ContextLength, 0, MaxContextLength, "0 = the model's trained context");
        Range("EngineOptions.PrefillChunk", null, o.PrefillChunk, 1, MaxContextLength);
        // groups: a null group is a caller error too; fields are named by their group path and their shorthand
        var serving = o.Serving ?? throw Bad("EngineOptions.Serving", null, "null", "a ServingOptions");
        var kv = o.Kv ?? throw Bad("EngineOptions.Kv", null, "null", "a KvCacheOptions");
        _ = o.Policy ?? throw Bad("EngineOptions.Policy", null, "null", "a KvPolicyOptions");
        var docs = o.Documents ?? throw Bad("EngineOptions.Documents", null, "null", "a DocumentMemoryOptions");
        Range("EngineOptions.Serving.MaxConcurrentSequences (EngineOptions.MaxConcurrentSequences)", "--parallel", serving.MaxConcurrentSequences, 1, 1 << 16);
        Range("EngineOptions.Kv.BlockSize (EngineOptions.BlockSize)", null, kv.BlockSize, 1, 1 << 16);
        Range("EngineOptions.Documents.TopK (EngineOptions.MemoryTopK)", null, docs.TopK, 1, 1 << 20);
        const string budget = "EngineOptions.Kv.BudgetBytes (EngineOptions.KvBudgetBytes)";
        if (kv.BudgetBytes < 0) throw Bad(budget, "--kv-budget", kv.BudgetBytes.ToString(), "0 (default) or a positive size");
        CheckMemoryBudget(budget, "--kv-budget", kv.BudgetBytes);
        if (kv.DiskBytes < 0) throw Bad("EngineOptions.Kv.DiskBytes (EngineOptions.KvDiskBytes)", "--kv-disk-mb", kv.DiskBytes.ToString(), "0 (none) or a positive size");
        // Policy (Spec / Budget / BudgetTokens): KvPolicyWiring.Parse (KvPolicyException, an ArgumentException).
    }

    /// <summary>Throws ArgumentException naming the first bad field of <paramref name="o"/>.</summary>
    public static void Validate(this GenerationOptions o)
    {
        ArgumentNullException.ThrowIfNull(o);
        Range("GenerationOptions.MaxTokens", "--max-tokens", o.MaxTokens, 0, int.MaxValue);
        if (o.StopStrings == null || o.StopStrings.Any(string.IsNullOrEmpty))
            throw Bad("GenerationOptions.StopStrings", null, "(null or empty string)", "non-empty strings");
        if (o.LogProbs is int lp) Range("GenerationOptions.LogProbs", "top_logprobs", lp, 0, Engine.Runtime.Sampling.LogProbs.MaxTop, "null = off");
        (o.Sampling ?? throw Bad("GenerationOptions.Sampling", null, "null", "a SamplingOptions")).Validate();
    }

    /// <summary>Throws ArgumentException naming the first bad field of <paramref name="s"/>.</summary>
    public static void Validate(this SamplingOptions s)
    {
        ArgumentNullException.ThrowIfNull(s);
        Real("SamplingOptions.Temperature", "--temperature", s.Temperature, 0, 1e6f, "0 = greedy");
        Range("SamplingOptions.TopK", "--top-k", s.TopK, 0, int.MaxValue, "0 = off");
        Real("SamplingOptions.TopP", "--top-p", s.TopP, 0, 1, "1 = off");
        Real("SamplingOptions.MinP", "--min-p", s.MinP, 0, 1, "0 = off");
        if (!(s.RepetitionPenalty > 0) || !float.IsFinite(s.RepetitionPenalty))
            throw Bad("SamplingOptions.RepetitionPenalty", "--repeat-penalty", Num(s.RepetitionPenalty), "a finite number > 0 (1 = off)");
        Real("SamplingOptions.PresencePenalty", null, s.PresencePenalty, -1e6f, 1e6f, "0 = off");
        Real("SamplingOptions.FrequencyPenalty", null, s.FrequencyPenalty, -1e6f, 1e6f, "0 = off");
        Range("SamplingOptions.PenaltyWindow", null, s.PenaltyWindow, 0, int.MaxValue, "0 = the whole history");
    }

    /// <summary>Refuses a byte budget above the memory this process may use (before anything is allocated).</summary>
    public static void CheckMemoryBudget(string field, string? option, long bytes)
    {
        long machine = MachineMemoryBytes;
        if (bytes > 0 && machine > 0 && bytes > machine)
            throw new ArgumentException($"{Name(field, option)} = {Size(bytes)} is more than the memory this process may use ({Size(machine)}); "
                + "give a smaller budget");
    }

    /// <summary>"1.5 GiB"-style size for messages.</summary>
    public static string Size(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):F1} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):F1} MiB",
        >= 1L << 10 => $"{bytes / 1024.0:F1} KiB",
        _ => $"{bytes} bytes",
    };

    private static void Range(string field, string? option, long value, long min, long max, string? note = null)
    {
        if (value < min || value > max)
            throw Bad(field, option, value.ToString(), (max == int.MaxValue ? $"≥ {min}" : $"{min} .. {max}") + (note != null ? $" ({note})" : ""));
    }

    private static void Real(string field, string? option, float value, float min, float max, string? note = null)
    {
        if (!float.IsFinite(value) || value < min || value > max)
            throw Bad(field, option, Num(value), $"{min:G} .. {max:G}" + (note != null ? $" ({note})" : ""));
    }

    private static string Num(float v) => v.ToString("G", System.Globalization.CultureInfo.InvariantCulture);

    private static string Name(string field, string? option) => option != null ? $"{field} ({option})" : field;

    private static ArgumentException Bad(string field, string? option, string value, string allowed) =>
        new($"{Name(field, option)} = {ErrorText.Quote(value).Trim('\'')} is out of range; allowed: {allowed}");
}
