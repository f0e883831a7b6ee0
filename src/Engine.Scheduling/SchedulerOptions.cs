// Owns: the knobs of the scheduler (memory budget in blocks, per-step token budget, concurrency cap, context length).
// Invariants: validated once by the Scheduler constructor (all counts ≥ 1).
using Engine.Memory.Paged;

namespace Engine.Scheduling;

/// <summary>Scheduler configuration.</summary>
public sealed record SchedulerOptions
{
    /// <summary>KV blocks in the pool (the memory budget).</summary>
    public int BlockCount { get; init; } = 1024;

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
