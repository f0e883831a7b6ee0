// Owns: one sequence's view of paged KV memory — the ordered list of block ids holding its token positions.
// Invariants: position p lives in Blocks[p / BlockSize] at slot p % BlockSize; Blocks.Count ==
// ceil(TokenCount / BlockSize); the first CommittedBlockCount blocks are full, computed and hashed (immutable);
// the table holds exactly one pool reference per entry. Only BlockManager mutates a table.
namespace Engine.Memory.Paged;

/// <summary>The block list of one sequence (read-only outside <see cref="BlockManager"/>).</summary>
public sealed class BlockTable
{
    internal readonly List<int> BlockList = new();

    internal BlockTable(long sequenceId, int blockSize)
    {
        SequenceId = sequenceId;
        BlockSize = blockSize;
    }

    public long SequenceId { get; }
    public int BlockSize { get; }

    /// <summary>Block ids in position order.</summary>
    public IReadOnlyList<int> Blocks => BlockList;

    /// <summary>Token positions with a reserved KV slot (computed or about to be computed by the current step).</summary>
    public int TokenCount { get; internal set; }

    /// <summary>Leading blocks that are full, computed and carry a content hash (shareable through the prefix cache).</summary>
    public int CommittedBlockCount { get; internal set; }

    /// <summary>The block holding position <paramref name="position"/>.</summary>
    public int BlockOf(int position)
    {
        if ((uint)position >= (uint)TokenCount) throw new ArgumentOutOfRangeException(nameof(position), position, $"sequence {SequenceId} has {TokenCount} slots");
        return BlockList[position / BlockSize];
    }

    /// <summary>A copy of the block ids (for a data-only plan).</summary>
    public int[] ToArray() => BlockList.ToArray();
}
