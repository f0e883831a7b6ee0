// Owns: the sequences' block tables over one BlockPool — reserving slots (with copy-on-write of a shared partial
// block), prefix-cache matching at admission, committing computed full blocks, forking and freeing sequences.
// Invariants: a block's RefCount equals the number of table entries naming it (Validate checks); a sequence only
// ever writes into blocks it holds alone (RefCount == 1) — a shared partial last block is copied first and the
// copy order is returned as data; committed (full) blocks are never written again. Reservations are atomic:
// they either get every block they need or change nothing. New blocks are always RAM blocks; a full block may later
// move to the disk tier (TryMoveToDisk), its table entries following it.
// Source: vLLM v1 kv_cache_manager.py (get_computed_blocks / allocate_slots / free in reverse order) and the
// copy-on-write fork of vLLM v0's block manager (beam search / n-best).
namespace Engine.Memory.Paged;

/// <summary>Sequences' block tables over a shared <see cref="BlockPool"/>.</summary>
public sealed class BlockManager
{
    private readonly Dictionary<long, BlockTable> _tables = new();
    private long _prefixQueryTokens, _prefixHitTokens;

    public BlockManager(BlockPool pool) => Pool = pool ?? throw new ArgumentNullException(nameof(pool));

    public BlockPool Pool { get; }
    public int BlockSize => Pool.BlockSize;
    public int SequenceCount => _tables.Count;

    /// <summary>Tokens looked up in the prefix cache (<see cref="MatchPrefix"/>) so far.</summary>
    public long PrefixQueryTokens => _prefixQueryTokens;

    /// <summary>Tokens found in the prefix cache so far (their KV is reused, not recomputed).</summary>
    public long PrefixHitTokens => _prefixHitTokens;

    /// <summary>Blocks needed to hold <paramref name="tokenCount"/> positions.</summary>
    public int BlocksFor(int tokenCount) => (tokenCount + BlockSize - 1) / BlockSize;

    public bool Contains(long sequenceId) => _tables.ContainsKey(sequenceId);

    public BlockTable Get(long sequenceId) =>
        _tables.TryGetValue(sequenceId, out var t) ? t : throw new KeyNotFoundException($"no block table for sequence {sequenceId}");

    /// <summary>Creates an empty table for a new sequence.</summary>
    public BlockTable Create(long sequenceId)
    {
        var table = new BlockTable(sequenceId, BlockSize);
        if (!_tables.TryAdd(sequenceId, table)) throw new InvalidOperationException($"sequence {sequenceId} already has a block table");
        return table;
    }

    /// <summary>
    /// Attaches the longest run of cached full blocks that equals a prefix of <paramref name="tokens"/> to an empty
    /// table (automatic prefix caching). Only whole blocks within <paramref name="tokens"/> are considered, so a
    /// caller that must compute at least one token passes all tokens but the last. Returns the tokens reused
    /// (a multiple of BlockSize); the table's TokenCount and CommittedBlockCount become that.
    /// </summary>
    public int MatchPrefix(long sequenceId, ReadOnlySpan<int> tokens)
    {
        var table = Get(sequenceId);
        if (table.TokenCount != 0) throw new InvalidOperationException($"MatchPrefix needs an empty table; sequence {sequenceId} has {table.TokenCount} slots");
        int b = BlockSize, parent = -1, matched = 0;
        for (int i = 0; (i + 1) * b <= tokens.Length; i++)
        {
            if (!Pool.TryAcquireCached(parent, tokens.Slice(i * b, b), out int block)) break;
            table.BlockList.Add(block);
            parent = block;
            matched++;
        }
        table.TokenCount = matched * b;
        table.CommittedBlockCount = matched;
        _prefixQueryTokens += tokens.Length;
        _prefixHitTokens += matched * b;
        return matched * b;
    }

    /// <summary>Pool blocks a reservation of <paramref name="newTokenCount"/> more slots would take (new blocks + a copy-on-write copy).</summary>
    public int BlocksNeeded(long sequenceId, int newTokenCount)
    {
        var table = Get(sequenceId);
        if (newTokenCount <= 0) return 0;
        int need = BlocksFor(table.TokenCount + newTokenCount) - table.BlockList.Count;
        if (NeedsCopyOnWrite(table)) need++;
        return need;
    }

    /// <summary>
    /// Reserves KV slots for the next <paramref name="newTokenCount"/> positions of a sequence. When the sequence's
    /// partial last block is shared (after a fork) it is first copied to a fresh block (a <see cref="BlockCopy"/>
    /// appended to <paramref name="copies"/>). Newly allocated block ids (including a copy's destination) are
    /// appended to <paramref name="newBlocks"/>. Returns false, changing nothing, when the pool cannot supply them.
    /// </summary>
    public bool TryReserve(long sequenceId, int newTokenCount, List<int> newBlocks, List<BlockCopy> copies)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(newTokenCount);
        var table = Get(sequenceId);
        if (newTokenCount == 0) return true;
        if (BlocksNeeded(sequenceId, newTokenCount) > Pool.AvailableCount) return false;
        if (NeedsCopyOnWrite(table))
        {
            int last = table.BlockList.Count - 1;
            int source = table.BlockList[last];
            int destination = Pool.Allocate();
            copies.Add(new BlockCopy(source, destination, table.TokenCount % BlockSize));
            newBlocks.Add(destination);
            table.BlockList[last] = destination;
            Pool.Release(source); // still referenced by the other sharer(s)
        }
        int target = BlocksFor(table.TokenCount + newTokenCount);
        while (table.BlockList.Count < target)
        {
            int block = Pool.Allocate();
            table.BlockList.Add(block);
            newBlocks.Add(block);
        }
        table.TokenCount += newTokenCount;
        return true;
    }

    /// <summary>
    /// Marks the sequence's first <paramref name="computedTokenCount"/> positions as computed: every full block
    /// among them not yet committed is committed (hashed, token ids stored, made reusable by the prefix cache).
    /// <paramref name="tokens"/> are the sequence's token ids from position 0 (at least computedTokenCount of them).
    /// </summary>
    public void Commit(long sequenceId, ReadOnlySpan<int> tokens, int computedTokenCount)
    {
        var table = Get(sequenceId);
        if (computedTokenCount > table.TokenCount || computedTokenCount > tokens.Length)
            throw new ArgumentOutOfRangeException(nameof(computedTokenCount), computedTokenCount,
                $"sequence {sequenceId} has {table.TokenCount} slots and {tokens.Length} tokens");
        int b = BlockSize;
        while ((table.CommittedBlockCount + 1) * b <= computedTokenCount)
        {
            int i = table.CommittedBlockCount;
            int parent = i == 0 ? -1 : table.BlockList[i - 1];
            Pool.Commit(table.BlockList[i], parent, tokens.Slice(i * b, b));
            table.CommittedBlockCount = i + 1;
        }
    }

    /// <summary>
    /// Creates <paramref name="childId"/> sharing every block of <paramref name="parentId"/> (no copy; each block gains
    /// a reference). The first write of either sequence into the shared partial last block triggers copy-on-write.
    /// </summary>
    public BlockTable Fork(long parentId, long childId)
    {
        var parent = Get(parentId);
        var child = Create(childId);
        foreach (int block in parent.BlockList)
        {
            Pool.AddRef(block);
            child.BlockList.Add(block);
        }
        child.TokenCount = parent.TokenCount;
        child.CommittedBlockCount = parent.CommittedBlockCount;
        return child;
    }

    /// <summary>
    /// Moves RAM block <paramref name="from"/> to the disk tier (<see cref="BlockPool.TryMoveToDisk"/>) and rewrites
    /// every table entry naming it. The caller must not move a block that a sequence still writes (a partial block
    /// or one reserved for the step being planned): only full, computed blocks or cached ones. Returns false,
    /// changing nothing, when the disk tier has no block to give.
    /// </summary>
    public bool TryMoveToDisk(int from, out BlockMove move)
    {
        move = default;
        if (!Pool.TryMoveToDisk(from, out int to)) return false;
        if (Pool.RefCount(to) > 0)
        {
            int left = Pool.RefCount(to);
            foreach (var table in _tables.Values)
            {
                var list = table.BlockList;
                for (int i = 0; i < list.Count && left > 0; i++)
                    if (list[i] == from) { list[i] = to; left--; }
                if (left == 0) break;
            }
        }
        move = new BlockMove(from, to);
        return true;
    }

    /// <summary>
    /// Shrinks a sequence's table to its first <paramref name="slotCount"/> slots (≤ TokenCount): the blocks past
    /// ceil(slotCount / BlockSize) go back to the pool (last first). For a sequence whose KV policy packs kept rows into
    /// the front of its table; such a table is never shared or committed (prefix caching off, no fork).
    /// </summary>
    public void Shrink(long sequenceId, int slotCount)
    {
        var table = Get(sequenceId);
        if ((uint)slotCount > (uint)table.TokenCount)
            throw new ArgumentOutOfRangeException(nameof(slotCount), slotCount, $"sequence {sequenceId} has {table.TokenCount} slots");
        int keep = BlocksFor(slotCount);
        for (int i = table.BlockList.Count - 1; i >= keep; i--) Pool.Release(table.BlockList[i]);
        table.BlockList.RemoveRange(keep, table.BlockList.Count - keep);
        table.TokenCount = slotCount;
        table.CommittedBlockCount = Math.Min(table.CommittedBlockCount, slotCount / BlockSize);
    }

    /// <summary>
    /// Releases every block of a sequence and forgets its table. Blocks are released last-first so that, among a
    /// sequence's cached blocks, the tail is evicted before the prefix it depends on. Returns false when unknown.
    /// </summary>
    public bool Free(long sequenceId)
    {
        if (!_tables.Remove(sequenceId, out var table)) return false;
        for (int i = table.BlockList.Count - 1; i >= 0; i--) Pool.Release(table.BlockList[i]);
        table.BlockList.Clear();
        table.TokenCount = 0;
        table.CommittedBlockCount = 0;
        return true;
    }

    /// <summary>Pool invariants plus: every block's RefCount equals the number of table entries naming it.</summary>
    public void Validate()
    {
        Pool.Validate();
        var refs = new int[Pool.Capacity];
        foreach (var table in _tables.Values)
        {
            if (table.BlockList.Count != BlocksFor(table.TokenCount))
                throw new InvalidOperationException($"sequence {table.SequenceId}: {table.BlockList.Count} blocks for {table.TokenCount} slots");
            foreach (int block in table.BlockList) refs[block]++;
        }
        for (int block = 0; block < Pool.Capacity; block++)
            if (refs[block] != Pool.RefCount(block))
                throw new InvalidOperationException($"block {block}: ref count {Pool.RefCount(block)} but {refs[block]} table entries");
    }

    private bool NeedsCopyOnWrite(BlockTable table) =>
        table.TokenCount % BlockSize != 0 && Pool.RefCount(table.BlockList[^1]) > 1;
}
