// Owns: what a caller submits to the scheduler (Request), what it can read back (RequestSnapshot, status, finish
// reason) and the typed rejection of a request that can never fit.
// Invariants: a Request is immutable after construction (prompt copied); Priority: larger = more important.
namespace Engine.Scheduling;

/// <summary>A generation request: prompt token ids and a budget of new tokens.</summary>
public sealed class Request
{
    private readonly int[] _prompt;
    private readonly int[] _stopTokenIds;

    /// <param name="id">Caller-chosen id, unique among requests the scheduler still knows.</param>
    /// <param name="promptTokens">Prompt token ids (at least one).</param>
    /// <param name="maxNewTokens">Most tokens to generate (at least one).</param>
    /// <param name="priority">Larger = more important: admitted first, preempted last. Ties: earlier arrival first.</param>
    /// <param name="stopTokenIds">Sampling one of these finishes the request (the token is kept in the output).</param>
    public Request(long id, IEnumerable<int> promptTokens, int maxNewTokens, int priority = 0, IEnumerable<int>? stopTokenIds = null)
    {
        ArgumentNullException.ThrowIfNull(promptTokens);
        Id = id;
        _prompt = promptTokens.ToArray();
        MaxNewTokens = maxNewTokens;
        Priority = priority;
        _stopTokenIds = stopTokenIds?.ToArray() ?? [];
    }

    public long Id { get; }
    public ReadOnlySpan<int> PromptTokens => _prompt;
    public int PromptLength => _prompt.Length;
    public int MaxNewTokens { get; }
    public int Priority { get; }
    public IReadOnlyList<int> StopTokenIds => _stopTokenIds;

    internal int[] PromptArray => _prompt;
    internal bool IsStop(int token) => Array.IndexOf(_stopTokenIds, token) >= 0;
}

/// <summary>Lifecycle of a request inside the scheduler.</summary>
public enum RequestStatus
{
    /// <summary>Queued (new, or preempted and waiting to resume); holds no blocks.</summary>
    Waiting,
    /// <summary>Admitted; holds blocks; scheduled each step while budget allows.</summary>
    Running,
    Finished,
    Cancelled,
}

/// <summary>Why a request finished.</summary>
public enum FinishReason
{
    None,
    /// <summary>Sampled a stop token.</summary>
    Stop,
    /// <summary>Generated MaxNewTokens tokens.</summary>
    Length,
    /// <summary>The runtime reported it finished (e.g. a stop string).</summary>
    External,
}

/// <summary>A read-only copy of a request's state.</summary>
/// <param name="OutputTokens">Generated tokens so far (a fork's include its parent's at the fork).</param>
/// <param name="ComputedTokens">Positions whose KV is computed (reset to 0 by a preemption, then catches up).</param>
/// <param name="TargetTokens">Prompt + generated tokens: the count ComputedTokens catches up to (one more than it while decoding).</param>
/// <param name="PrefixHitTokens">Tokens taken from the prefix cache at admissions instead of computed.</param>
/// <param name="PreemptionCount">How often it was preempted (recompute).</param>
public sealed record RequestSnapshot(
    long Id,
    RequestStatus Status,
    FinishReason FinishReason,
    int[] OutputTokens,
    int ComputedTokens,
    int TargetTokens,
    int PrefixHitTokens,
    int PreemptionCount);

/// <summary>Why <see cref="Scheduler.AddRequest"/> refused a request.</summary>
public enum RejectionReason
{
    EmptyPrompt,
    InvalidMaxNewTokens,
    DuplicateId,
    /// <summary>Prompt + MaxNewTokens exceeds the model's context length.</summary>
    ExceedsContextLength,
    /// <summary>Its KV would need more blocks than the whole pool holds.</summary>
    ExceedsPool,
}

/// <summary>
/// Thrown by <see cref="Scheduler.AddRequest"/> for a request that could never run; the scheduler and all other
/// requests are unaffected.
/// </summary>
public sealed class RequestRejectedException : Exception
{
    public RequestRejectedException(long requestId, RejectionReason reason, string message)
        : base($"request {requestId} rejected: {message}")
    {
        RequestId = requestId;
        Reason = reason;
    }

    public long RequestId { get; }
    public RejectionReason Reason { get; }
}
