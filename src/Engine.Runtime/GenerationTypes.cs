// Owns: the plain data types of the runtime's public API: generation options, streamed chunks, usage.
using Engine.Runtime.Sampling;

namespace Engine.Runtime;

/// <summary>Per-request generation settings.</summary>
public sealed record GenerationOptions
{
    public int MaxTokens { get; init; } = 256;
    public SamplingOptions Sampling { get; init; } = new();
    /// <summary>Generation stops before the first occurrence of any of these strings (the string itself is not emitted).</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];
    /// <summary>KV policy for this request (same syntax as EngineOptions.KvPolicy); null = the engine's. Needs an engine loaded
    /// with a KvPolicy ("full" keeps everything); single-sequence path: switching policy drops the cached prefix; paged path: requests with different policies batch together.</summary>
    public string? KvPolicy { get; init; }
    /// <summary>Budget fraction for this request's KV policy; null = the engine's KvPolicyBudget.</summary>
    public double? KvPolicyBudget { get; init; }
    /// <summary>Stop at an end-of-generation token (EOS / end of turn).</summary>
    public bool StopAtEndOfGeneration { get; init; } = true;
    /// <summary>Prepend BOS to a text prompt (the tokenizer's convention when null).</summary>
    public bool AddBos { get; init; } = true;
    /// <summary>null = no log-probabilities; k in 0..20: every generated token's chunk carries its log-probability and the k
    /// most likely alternatives (GenerationChunk.LogProbs; see Sampling.LogProbs).</summary>
    public int? LogProbs { get; init; }
}

public enum FinishReason { Stop, Length, StopString, ContextFull }

/// <summary>Timing and counts of one generation. ReusedPromptTokens: prompt prefix whose KV was kept from the previous
/// generation (not recomputed); PromptTokensPerSecond counts only recomputed tokens.</summary>
public sealed record GenerationUsage(int PromptTokens, int GeneratedTokens, TimeSpan TimeToFirstToken, TimeSpan Total,
    double PromptTokensPerSecond, double DecodeTokensPerSecond, FinishReason FinishReason, int ReusedPromptTokens = 0,
    RequestServingStats? Serving = null);

/// <summary>Scheduler view of one finished request (paged engine only). TokensComputed: positions this request ran
/// through the model (prompt not found in the prefix cache, generated tokens fed back, recomputation after
/// preemption); PrefixHitTokens: positions taken from the prefix cache over all its admissions; Steps: steps it took
/// part in; BlocksInUse / BlocksAvailable: the pool right after it finished (available = free + evictable cached).</summary>
public sealed record RequestServingStats(int TokensComputed, int PrefixHitTokens, int Preemptions, int Steps, int BlocksInUse, int BlocksAvailable);

/// <summary>A prompt that needs more KV than the engine's whole KV budget (thrown before any work).</summary>
public sealed class KvBudgetExceededException : ArgumentException
{
    public KvBudgetExceededException(int promptTokens, int budgetTokens)
        : base($"the prompt has {promptTokens} tokens but the KV budget holds {budgetTokens} tokens in all; raise the KV budget")
    {
        PromptTokens = promptTokens; BudgetTokens = budgetTokens;
    }

    public int PromptTokens { get; }
    public int BudgetTokens { get; }
}

/// <summary>A streamed piece: text (complete UTF-8) and the token ids that produced it; the last chunk carries Usage.</summary>
public sealed record GenerationChunk(string Text, IReadOnlyList<int> TokenIds, GenerationUsage? Usage = null)
{
    /// <summary>With GenerationOptions.LogProbs: one entry per id of TokenIds (same order); else null.</summary>
    public IReadOnlyList<TokenLogProb>? LogProbs { get; init; }
}

/// <summary>A prompt that does not fit in the context (thrown before any work).</summary>
public sealed class PromptTooLongException : ArgumentException
{
    public PromptTooLongException(int promptTokens, int contextLength)
        : base($"the prompt has {promptTokens} tokens but the context holds {contextLength} (need room for at least one generated token)")
    {
        PromptTokens = promptTokens; ContextLength = contextLength;
    }

    public int PromptTokens { get; }
    public int ContextLength { get; }
}
