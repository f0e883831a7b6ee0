// Owns: the serving loop's counters as the public API reports them (EngineStats).
namespace Engine.Runtime.Serving;

/// <summary>Engine-wide counters of the serving loop (cumulative unless named otherwise).</summary>
/// <param name="Steps">Non-empty steps run.</param>
/// <param name="TokensScheduled">Tokens computed by all steps (prefill chunks + decodes + recomputes).</param>
/// <param name="LastStepTokens">Tokens of the most recent step.</param>
/// <param name="PrefixHitTokens">Tokens taken from the prefix cache instead of computed.</param>
/// <param name="Preemptions">Requests preempted (recompute) for lack of blocks.</param>
/// <param name="BlocksInUse">Blocks referenced by running requests now.</param>
/// <param name="BlocksCached">Unreferenced blocks holding reusable prefixes now (evictable).</param>
/// <param name="BlocksFree">Empty blocks now.</param>
/// <param name="MaxRequestsPerStep">The most requests that shared one step (one forward batch) so far.</param>
/// <param name="BlockCount">All blocks of the pool: RAM + disk tier (BlocksInUse/Cached/Free count both tiers).</param>
/// <param name="DiskBlockCount">Blocks of the disk tier (0 = none).</param>
/// <param name="DiskBlocksInUse">Disk-tier blocks referenced by running requests now.</param>
/// <param name="BlocksMovedToDisk">RAM blocks offloaded to the disk tier so far (instead of preempting).</param>
public sealed record EngineStats(long Steps, long TokensScheduled, int LastStepTokens, long PrefixHitTokens, long Preemptions,
    long Finished, long Cancelled, int Running, int Waiting, int BlockCount, int BlockSize, int BlocksInUse, int BlocksCached, int BlocksFree,
    int MaxRequestsPerStep = 0, int DiskBlockCount = 0, int DiskBlocksInUse = 0, long BlocksMovedToDisk = 0);

