// Owns: the plain-data descriptors of paged KV blocks that the scheduler and the executor exchange
// (per-block metadata with room for precision tiers, locations and sparse-selection summaries; copy orders).
// Invariants: everything here is data only — no tensors, no behaviour beyond trivial helpers.
// Location follows the block id (ids ≥ the pool's RamCapacity are disk blocks; BlockPool sets it on every hand-out
// and move). Tier/SummarySlot are reserved (int8/int4 demotion, per-block key min/max summaries for sparse page
// selection); the pool keeps them per block and resets them on reallocation.
namespace Engine.Memory.Paged;

/// <summary>Precision tier of a block's K/V payload. Only <see cref="Full"/> is used today.</summary>
public enum BlockTier : byte
{
    /// <summary>The model's native KV precision (f32/f16).</summary>
    Full = 0,
    /// <summary>Demoted to 8-bit per-row quantisation (reserved).</summary>
    Int8 = 1,
    /// <summary>Demoted to 4-bit (reserved).</summary>
    Int4 = 2,
    /// <summary>Payload dropped; only the summary remains (reserved).</summary>
    Evicted = 3,
}

/// <summary>Where a block's payload lives (fixed by its id: see <see cref="BlockPool.RamCapacity"/>).</summary>
public enum BlockLocation : byte
{
    Ram = 0,
    /// <summary>In the memory-mapped disk tier (read in place; never written by a forward).</summary>
    Disk = 1,
}

/// <summary>
/// Per-block metadata kept by <see cref="BlockPool"/> beside the reference count. Reset to <see cref="Default"/>
/// whenever the block is handed out again.
/// </summary>
public struct BlockMeta
{
    /// <summary>Precision tier of the payload (reserved; always <see cref="BlockTier.Full"/> today).</summary>
    public BlockTier Tier;

    /// <summary>Payload location (RAM or the disk tier), matching the block id's tier.</summary>
    public BlockLocation Location;

    /// <summary>
    /// Index of this block's summary row (per-head key min/max over the block's tokens) in the store that
    /// holds summaries, or -1 when the block has none (reserved for sparse page selection).
    /// </summary>
    public int SummarySlot;

    /// <summary>Fresh-block metadata: full precision, in RAM, no summary.</summary>
    public static BlockMeta Default => new() { Tier = BlockTier.Full, Location = BlockLocation.Ram, SummarySlot = -1 };
}

/// <summary>
/// An order for the executor: copy the first <paramref name="TokenCount"/> token slots of every layer's K/V
/// from block <paramref name="SourceBlock"/> into block <paramref name="DestinationBlock"/> (copy-on-write).
/// The executor applies all copies of a plan before running the forward of that plan.
/// </summary>
public readonly record struct BlockCopy(int SourceBlock, int DestinationBlock, int TokenCount);

/// <summary>
/// An order for the executor: move the whole payload (every token slot, K and V, every layer) of block
/// <paramref name="SourceBlock"/> to block <paramref name="DestinationBlock"/> (a RAM block offloaded to the disk tier).
/// The source is free afterwards (it may be handed out again in the same plan, e.g. as a new block or a copy
/// destination), so the executor applies all moves, in order, before the plan's copies and forward.
/// </summary>
public readonly record struct BlockMove(int SourceBlock, int DestinationBlock);
