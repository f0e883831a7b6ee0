// Owns: the data-only contract between the scheduler and the executor: what one step computes (SchedulePlan,
// ScheduledRequest) and what the executor reports back (StepResult).
// Invariants: a plan is immutable; the executor applies Moves (in order), then Copies, before the forward; for each ScheduledRequest it
// computes positions [StartPosition, StartPosition + TokenIds.Length) writing K/V into BlockTable[p / BlockSize]
// slot p % BlockSize, reading positions < StartPosition from the same table (a request whose KV policy packs its rows —
// StepResult.KeptSlots — uses the table as row slots instead: the executor knows which); when SamplesToken it samples one
// token from the logits of the last position. Blocks named in PreemptedIds/FinishedIds/CancelledIds were already
// returned to the pool.
using Engine.Memory.Paged;

namespace Engine.Scheduling;

/// <summary>One request's share of a step.</summary>
public sealed record ScheduledRequest(
    long RequestId,
    int StartPosition,
    int[] TokenIds,
    int[] BlockTable,
    int[] NewBlocks,
    BlockCopy[] Copies,
    bool SamplesToken)
{
    /// <summary>Tokens computed for this request this step.</summary>
    public int TokenCount => TokenIds.Length;

    /// <summary>True when this chunk still belongs to the (original or resumed) prompt and samples nothing.</summary>
    public bool IsPartialPrefill => !SamplesToken;
}

/// <summary>Everything the executor needs to run one step; pure data.</summary>
public sealed record SchedulePlan(
    long StepIndex,
    IReadOnlyList<ScheduledRequest> Requests,
    IReadOnlyList<BlockCopy> Copies,
    IReadOnlyList<long> PreemptedIds,
    IReadOnlyList<long> FinishedIds,
    IReadOnlyList<long> CancelledIds)
{
    /// <summary>RAM blocks offloaded to the disk tier by this step (block tables already name the destinations); the
    /// executor applies them, in order, before <see cref="Copies"/> and the forward.</summary>
    public IReadOnlyList<BlockMove> Moves { get; init; } = [];

    public int TotalTokens => Requests.Sum(r => r.TokenCount);
    public bool IsEmpty => Requests.Count == 0;
}

/// <summary>
/// The executor's report for one scheduled request: the sampled token (required when the request's
/// ScheduledRequest.SamplesToken is true, unless <paramref name="Finished"/>), whether the runtime ends it
/// (e.g. a stop string matched), and — for a request whose KV policy packs the rows it keeps into the front of its
/// table — <paramref name="KeptSlots"/>: the slots it still uses (≥ 0; the scheduler keeps ceil(KeptSlots / BlockSize)
/// blocks and returns the rest to the pool; later reservations append after KeptSlots). −1 = slots = positions.
/// </summary>
public readonly record struct StepResult(long RequestId, int? SampledToken, bool Finished = false, int KeptSlots = -1);

/// <summary>Scheduler counters.</summary>
public sealed record SchedulerStats(
    long Steps,
    long ComputedTokens,
    long PrefixHitTokens,
    long Preemptions,
    long Finished,
    long Cancelled,
    long Rejected,
    long BlocksMovedToDisk = 0);
