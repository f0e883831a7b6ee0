// Owns: the one interface between the serving loop (ServingLoop: plan → forward → sample → update) and the executor of
// one memory kind: PagedKvExecutor (paged KV blocks, prefix cache, disk tier, KV policies), RecurrentPlanExecutor
// (one recurrent state slot per running request) and ContiguousKvExecutor (the adapter for a caller-built contiguous
// KV store: Paged = false, a persistent memory, a KV store decorator — one sequence at a time).
// Invariants: every method runs on the loop thread; Release and Finished run under the loop's lock (they may read which
// requests are live), Forward outside it. The executor owns its memory and frees it on Dispose, which the loop calls
// only after its last step has returned (no forward is in flight then).
using Engine.Scheduling;

namespace Engine.Runtime.Serving;

internal interface IStepExecutor : IDisposable
{
    /// <summary>Scheduler blocks in RAM (recurrent / contiguous: one block = one whole sequence).</summary>
    int BlockCount { get; }
    /// <summary>Scheduler blocks of a disk tier (0 = none).</summary>
    int DiskBlockCount { get; }
    /// <summary>Token positions per scheduler block.</summary>
    int BlockSize { get; }
    /// <summary>Most requests running at once.</summary>
    int MaxSequences { get; }
    /// <summary>Whether the scheduler may reuse cached prefix blocks (false: the executor restores prefixes itself, if at all).</summary>
    bool SchedulerPrefixCaching { get; }
    /// <summary>Token positions the memory holds for requests in all.</summary>
    int BudgetTokens { get; }

    /// <summary>Under the loop lock, right after the plan was made: drop the state of requests that are gone
    /// (preempted, finished, cancelled; <paramref name="isLive"/> tells whether a request is still live).</summary>
    void Release(SchedulePlan plan, Func<long, bool> isLive);

    /// <summary>Runs the plan (block moves and copies, one forward). <paramref name="skipped"/>[i] receives the leading
    /// tokens of request i's chunk that were not computed (a prefix the executor restored). Returns the logits
    /// [k, vocab] of the k-th request whose SamplesToken is set (valid until the next call). <paramref name="keptSlots"/>[i]
    /// (−1 on entry) receives the slots request i's KV policy still uses when it packs kept rows into its table
    /// (StepResult.KeptSlots: the scheduler returns the blocks past them to the pool).</summary>
    Span<float> Forward(SchedulePlan plan, LiveRequest?[] lives, int[] skipped, int[] keptSlots);

    /// <summary>Before the first token of <paramref name="id"/> is sampled: its memory holds exactly its prompt.</summary>
    void PromptDone(long id);

    /// <summary>Under the loop lock, when <paramref name="id"/> finished normally (before its state is released).</summary>
    void Finished(long id);

    /// <summary>What the KV policy store held for the most recently finished policy request; null without policies.</summary>
    KvPolicyUsage? PolicyUsage { get; }
}
