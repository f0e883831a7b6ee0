// Owns: the knobs of the scheduler (memory budget in blocks — RAM and an optional disk tier —, per-step token budget,
// concurrency cap, context length, which blocks stay in RAM when blocks are offloaded to disk).
// Invariants: validated once by the Scheduler constructor (block/token counts ≥ 1; disk blocks and window ≥ 0).
using Engine.Memory.Paged;

namespace Engine.Scheduling;

/// <summary>Scheduler configuration.</summary>
public sealed record SchedulerOptions
{
    /// <summary>KV blocks in RAM (the memory budget); block ids 0..BlockCount-1.</summary>
    public int BlockCount { get; init; } = 1024;

    /// <summary>KV blocks of the disk tier (ids BlockCount..BlockCount+DiskBlockCount-1); 0 = none. When RAM runs short
    /// the scheduler moves cold full blocks there (plan.Moves) before it preempts anything.</summary>
    public int DiskBlockCount { get; init; }

    /// <summary>With a disk tier: the last full blocks of each running sequence that are offloaded only when no colder
    /// block is left (its partial last block and the blocks a step writes are never offloaded).</summary>
    public int RecentWindowBlocks { get; init; } = 2;

    /// <summary>With a disk tier: keep each sequence's first block (attention sink) in RAM while colder blocks remain.</summary>
    public bool KeepFirstBlockInRam { get; init; } = true;

    /// <summary>Token slots per block.</summary>
    public int BlockSize { get; init; } = 16;

    /// <summary>Most tokens computed in one step, over all requests (decode tokens + prefill chunks).</summary>
    public int MaxTokensPerStep { get; init; } = 512;

    /// <summary>Most requests running (holding blocks) at once.</summary>
    public int MaxRunningRequests { get; init; } = 64;

    /// <summary>The model's context length: prompt + MaxNewTokens must not exceed it.</summary>
    public int MaxModelLength { get; init; } = 4096;

    /// <summary>Reuse cached full blocks of identical prefixes.</summary>
    public bool EnablePrefixCaching { get; init; } = true;

    /// <summary>Chained block hash (null = <see cref="BlockHasher.Hash"/>); tests inject a colliding one.</summary>
    public BlockHashFunction? HashFunction { get; init; }
}
