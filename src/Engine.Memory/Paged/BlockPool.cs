// Owns: the fixed set of KV blocks (ids 0..Capacity-1), their reference counts, the free lists, the prefix-cache
// map (content hash → block) and the LRU lists of unreferenced cached blocks — per tier: RAM blocks are ids
// 0..RamCapacity-1, disk-tier blocks RamCapacity..Capacity-1 (DiskCapacity of them, 0 without a disk tier).
// Invariants (checked by Validate):
//   every block is in exactly one state — Free (on its tier's free stack, no content), Used (RefCount > 0), or
//   Cached (RefCount == 0, mapped by its hash, on its tier's LRU list); FreeCount + UsedCount + CachedCount == Capacity.
//   Allocate hands out RAM blocks only (a forward writes only RAM blocks); a disk block is obtained only by moving a
//   RAM block's whole state to it (TryMoveToDisk: ref count, content, hash, prefix-map entry, children's parent links),
//   after which the RAM block is free. Meta(b).Location always names b's tier.
//   A committed block's token ids never change until the block is handed out again (Generation bumps then).
//   A mapped block is committed; at most one block is mapped per hash (first commit wins; duplicates stay unmapped).
// Complexity: Allocate, AddRef, Release, cache lookup and eviction are O(1) (array-backed stacks and intrusive
// doubly linked LRU lists; dictionary lookups), commit is O(BlockSize), a move O(Capacity) (children are relinked).
// Source: vLLM v1 core/block_pool.py (free queue + cached-block map, LRU eviction of ref-0 cached blocks) and
// mistral.rs paged_attention/block_pool.rs; the parent-identity check on hits is this engine's own addition.
namespace Engine.Memory.Paged;

/// <summary>Counters of a <see cref="BlockPool"/>.</summary>
public readonly record struct BlockPoolStats(
    int Capacity, int UsedCount, int FreeCount, int CachedCount,
    long Allocations, long Evictions, long CacheHitBlocks, long MovesToDisk = 0, int DiskCapacity = 0, int DiskUsedCount = 0);

/// <summary>A fixed pool of KV blocks of <see cref="BlockSize"/> token slots each.</summary>
public sealed class BlockPool
{
    private const int None = -1;
    private const int Ram = 0, Disk = 1; // tier index

    private readonly BlockHashFunction _hashFunction;
    private readonly int[] _refCount;         // [block]
    private readonly int[] _generation;       // [block] bumped every time the block is handed out fresh
    private readonly bool[] _committed;       // [block] token ids stored and immutable
    private readonly bool[] _mapped;          // [block] reachable from _cacheMap
    private readonly ulong[] _hash;           // [block] chained content hash, valid when committed
    private readonly int[] _parentBlock;      // [block] previous block of the chain at commit, -1 for a first block
    private readonly int[] _parentGeneration; // [block] that parent's generation at commit
    private readonly int[] _tokens;           // [block, blockSize] token ids of committed blocks
    private readonly BlockMeta[] _meta;       // [block]
    private readonly int[][] _freeStack;      // [tier] -> ids of free blocks of that tier, top at _freeTop[tier] - 1
    private readonly int[] _freeTop = new int[2];
    private readonly int[] _lruPrev, _lruNext; // [block] intrusive lists (one per tier), head = least recently used
    private readonly bool[] _onLru;           // [block]
    private readonly int[] _lruHead = [None, None], _lruTail = [None, None], _cachedCount = new int[2]; // [tier]
    private readonly Dictionary<ulong, int> _cacheMap = new();
    private long _allocations, _evictions, _hitBlocks, _moves;

    /// <param name="blockCount">Number of blocks (the memory budget), ≥ 1.</param>
    /// <param name="blockSize">Token slots per block, ≥ 1 (default 16).</param>
    /// <param name="hashFunction">Chained content hash; <see cref="BlockHasher.Hash"/> when null (tests inject a colliding one).</param>
    /// <param name="diskBlockCount">Blocks of the disk tier (ids blockCount..blockCount+diskBlockCount-1), ≥ 0.</param>
    public BlockPool(int blockCount, int blockSize = 16, BlockHashFunction? hashFunction = null, int diskBlockCount = 0)
    {
        if (blockCount < 1) throw new ArgumentOutOfRangeException(nameof(blockCount), blockCount, "a block pool needs at least one block");
        if (blockSize < 1) throw new ArgumentOutOfRangeException(nameof(blockSize), blockSize, "a block needs at least one token slot");
        if (diskBlockCount < 0) throw new ArgumentOutOfRangeException(nameof(diskBlockCount), diskBlockCount, "the disk tier cannot have a negative block count");
        RamCapacity = blockCount;
        DiskCapacity = diskBlockCount;
        blockCount = checked(blockCount + diskBlockCount);
        Capacity = blockCount;
        BlockSize = blockSize;
        _hashFunction = hashFunction ?? BlockHasher.Hash;
        _refCount = new int[blockCount];
        _generation = new int[blockCount];
        _committed = new bool[blockCount];
        _mapped = new bool[blockCount];
        _hash = new ulong[blockCount];
        _parentBlock = new int[blockCount];
        _parentGeneration = new int[blockCount];
        _tokens = new int[checked(blockCount * blockSize)];
        _meta = new BlockMeta[blockCount];
        _freeStack = [new int[RamCapacity], new int[DiskCapacity]];
        _lruPrev = new int[blockCount];
        _lruNext = new int[blockCount];
        _onLru = new bool[blockCount];
        // Push in reverse so the first allocations hand out 0, 1, 2, ... (readable plans and tests).
        for (int b = blockCount - 1; b >= 0; b--) PushFree(b);
        for (int b = 0; b < blockCount; b++) { _meta[b] = FreshMeta(b); _parentBlock[b] = None; }
    }

    /// <summary>
    /// Bytes one block's K and V take for every layer: 2 · layers · kvHeads · headDim · blockSize · bytesPerElement.
    /// </summary>
    public static long BytesPerBlock(int layerCount, int kvHeadCount, int headDim, int blockSize, int bytesPerElement) =>
        2L * layerCount * kvHeadCount * headDim * blockSize * bytesPerElement;

    /// <summary>How many whole blocks a memory budget holds (the pool capacity for that budget).</summary>
    public static int BlockCountForBudget(long budgetBytes, long bytesPerBlock)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytesPerBlock);
        ArgumentOutOfRangeException.ThrowIfNegative(budgetBytes);
        return (int)Math.Min(int.MaxValue / 2, budgetBytes / bytesPerBlock);
    }

    /// <summary>All blocks, both tiers (RamCapacity + DiskCapacity).</summary>
    public int Capacity { get; }

    /// <summary>RAM blocks: ids 0..RamCapacity-1 (the only ones <see cref="Allocate"/> hands out).</summary>
    public int RamCapacity { get; }

    /// <summary>Disk-tier blocks: ids RamCapacity..Capacity-1 (0 = no disk tier).</summary>
    public int DiskCapacity { get; }

    public int BlockSize { get; }

    /// <summary>Blocks with no content, ready to hand out (both tiers).</summary>
    public int FreeCount => _freeTop[Ram] + _freeTop[Disk];

    /// <summary>Unreferenced blocks that still hold reusable prefix content (evicted LRU-first when needed; both tiers).</summary>
    public int CachedCount => _cachedCount[Ram] + _cachedCount[Disk];

    /// <summary>Blocks with RefCount &gt; 0 (both tiers).</summary>
    public int UsedCount => Capacity - FreeCount - CachedCount;

    /// <summary>RAM blocks that an allocation can obtain right now (free + evictable cached RAM blocks).</summary>
    public int AvailableCount => _freeTop[Ram] + _cachedCount[Ram];

    public int RamFreeCount => _freeTop[Ram];
    public int RamCachedCount => _cachedCount[Ram];
    public int DiskFreeCount => _freeTop[Disk];
    public int DiskCachedCount => _cachedCount[Disk];

    /// <summary>Disk blocks a move can obtain right now (free + evictable cached disk blocks).</summary>
    public int DiskAvailableCount => _freeTop[Disk] + _cachedCount[Disk];

    /// <summary>Disk blocks with RefCount &gt; 0.</summary>
    public int DiskUsedCount => DiskCapacity - DiskAvailableCount;

    /// <summary>RAM blocks moved to the disk tier so far.</summary>
    public long MovesToDisk => _moves;

    /// <summary>True for a disk-tier block id.</summary>
    public bool IsOnDisk(int block) => Check(block) >= RamCapacity;

    /// <summary>The least recently used unreferenced cached RAM block, or -1 when there is none.</summary>
    public int LeastRecentCachedRamBlock => _lruHead[Ram];

    public BlockPoolStats Stats => new(Capacity, UsedCount, FreeCount, CachedCount, _allocations, _evictions, _hitBlocks, _moves,
        DiskCapacity, DiskUsedCount);

    /// <summary>The chained hash function this pool verifies hits with.</summary>
    public BlockHashFunction HashFunction => _hashFunction;

    public int RefCount(int block) => _refCount[Check(block)];

    /// <summary>Incremented each time the block is handed out with fresh (empty) content.</summary>
    public int Generation(int block) => _generation[Check(block)];

    public bool IsCommitted(int block) => _committed[Check(block)];

    /// <summary>The chained hash of a committed block.</summary>
    public ulong HashOf(int block)
    {
        if (!_committed[Check(block)]) throw new InvalidOperationException($"block {block} is not committed; it has no content hash");
        return _hash[block];
    }

    /// <summary>Mutable per-block metadata (tier, location, summary slot).</summary>
    public ref BlockMeta Meta(int block) => ref _meta[Check(block)];

    /// <summary>
    /// Hands out a RAM block with RefCount 1 and no content: from the free list, else by evicting the least recently
    /// used cached RAM block. Returns false only when every RAM block is referenced.
    /// </summary>
    public bool TryAllocate(out int block)
    {
        if (!TryTake(Ram, out block)) return false;
        _allocations++;
        return true;
    }

    /// <summary>Like <see cref="TryAllocate"/> but throws <see cref="InvalidOperationException"/> when every RAM block is referenced.</summary>
    public int Allocate()
    {
        if (!TryAllocate(out int block))
            throw new InvalidOperationException($"block pool exhausted: all {RamCapacity} RAM blocks are referenced");
        return block;
    }

    /// <summary>
    /// Moves RAM block <paramref name="from"/> (used or cached) to a disk block <paramref name="to"/> taken from the
    /// disk tier's free list, else by evicting its least recently used cached block: the ref count, committed content,
    /// hash, prefix-map entry, parent link and LRU membership go with it, committed blocks whose parent was
    /// <paramref name="from"/> now name <paramref name="to"/>, and <paramref name="from"/> becomes free. The caller
    /// rewrites its block tables (BlockManager.TryMoveToDisk) and orders the executor to copy the payload.
    /// Returns false, changing nothing, when every disk block is referenced.
    /// </summary>
    public bool TryMoveToDisk(int from, out int to)
    {
        if (Check(from) >= RamCapacity) throw new ArgumentException($"block {from} is already on the disk tier", nameof(from));
        if (_refCount[from] == 0 && !_onLru[from]) throw new InvalidOperationException($"block {from} is free; only a used or cached block can move");
        if (!TryTake(Disk, out to)) return false;
        bool cached = _onLru[from];
        if (cached) LruRemove(from);
        _refCount[to] = _refCount[from];
        _committed[to] = _committed[from];
        _hash[to] = _hash[from];
        _parentBlock[to] = _parentBlock[from];
        _parentGeneration[to] = _parentGeneration[from];
        if (_committed[from]) _tokens.AsSpan(from * BlockSize, BlockSize).CopyTo(_tokens.AsSpan(to * BlockSize, BlockSize));
        _meta[to] = _meta[from];
        _meta[to].Location = BlockLocation.Disk;
        if (_mapped[from])
        {
            _cacheMap[_hash[from]] = to;
            _mapped[to] = true;
            _mapped[from] = false;
        }
        // Committed children verified against (from, its generation) now follow the block to its new id (only a
        // committed block can be a parent).
        if (_committed[from])
            for (int b = 0; b < Capacity; b++)
                if (_committed[b] && b != to && _parentBlock[b] == from && _parentGeneration[b] == _generation[from])
                {
                    _parentBlock[b] = to;
                    _parentGeneration[b] = _generation[to];
                }
        if (cached) LruAppend(to);
        _refCount[from] = 0;
        _committed[from] = false;
        _parentBlock[from] = None;
        _generation[from]++; // anything still naming (from, old generation) is stale from now on
        _meta[from] = FreshMeta(from);
        PushFree(from);
        _moves++;
        return true;
    }

    /// <summary>Adds a reference to a used block (sharing, e.g. a fork).</summary>
    public void AddRef(int block)
    {
        if (_refCount[Check(block)] <= 0)
            throw new InvalidOperationException($"AddRef on block {block} which is not in use (ref count {_refCount[block]})");
        _refCount[block]++;
    }

    /// <summary>
    /// Drops one reference. At zero the block becomes Cached (most recently used end of the LRU list) when it is
    /// mapped in the prefix cache, else Free.
    /// </summary>
    public void Release(int block)
    {
        if (_refCount[Check(block)] <= 0)
            throw new InvalidOperationException($"Release on block {block} whose ref count is already {_refCount[block]}");
        if (--_refCount[block] > 0) return;
        if (_mapped[block]) LruAppend(block);
        else
        {
            _committed[block] = false;
            PushFree(block);
        }
    }

    /// <summary>
    /// Marks a used block full and computed: stores its token ids and chained hash and, when no other block holds
    /// that hash yet, maps it so later prefixes can reuse it. Idempotent for an already committed block.
    /// </summary>
    /// <param name="parentBlock">The sequence's previous block (-1 for its first block); must be committed.</param>
    /// <param name="tokens">Exactly <see cref="BlockSize"/> token ids.</param>
    /// <returns>The block's chained hash.</returns>
    public ulong Commit(int block, int parentBlock, ReadOnlySpan<int> tokens)
    {
        if (_refCount[Check(block)] <= 0) throw new InvalidOperationException($"Commit on block {block} which is not in use");
        if (tokens.Length != BlockSize) throw new ArgumentException($"a committed block holds exactly {BlockSize} tokens, got {tokens.Length}", nameof(tokens));
        if (_committed[block]) return _hash[block];
        ulong parentHash = BlockHasher.RootHash;
        if (parentBlock != None)
        {
            if (!_committed[Check(parentBlock)]) throw new InvalidOperationException($"parent block {parentBlock} of block {block} is not committed");
            parentHash = _hash[parentBlock];
        }
        ulong hash = _hashFunction(parentHash, tokens);
        tokens.CopyTo(_tokens.AsSpan(block * BlockSize, BlockSize));
        _hash[block] = hash;
        _parentBlock[block] = parentBlock;
        _parentGeneration[block] = parentBlock == None ? 0 : _generation[parentBlock];
        _committed[block] = true;
        if (_cacheMap.TryAdd(hash, block)) _mapped[block] = true;
        return hash;
    }

    /// <summary>
    /// Prefix-cache lookup of the block that follows <paramref name="parentBlock"/> (-1 for a first block) with
    /// exactly <paramref name="tokens"/>. A hit is verified (stored token ids, parent block and its generation),
    /// gains a reference (reviving it from the LRU list when unreferenced) and is returned.
    /// </summary>
    public bool TryAcquireCached(int parentBlock, ReadOnlySpan<int> tokens, out int block)
    {
        block = None;
        if (tokens.Length != BlockSize) return false;
        ulong parentHash = BlockHasher.RootHash;
        if (parentBlock != None)
        {
            if (!_committed[Check(parentBlock)]) return false;
            parentHash = _hash[parentBlock];
        }
        ulong hash = _hashFunction(parentHash, tokens);
        if (!_cacheMap.TryGetValue(hash, out int candidate)) return false;
        if (_parentBlock[candidate] != parentBlock) return false;
        if (parentBlock != None && _parentGeneration[candidate] != _generation[parentBlock]) return false;
        if (!_tokens.AsSpan(candidate * BlockSize, BlockSize).SequenceEqual(tokens)) return false;
        if (_refCount[candidate] == 0) LruRemove(candidate);
        _refCount[candidate]++;
        _hitBlocks++;
        block = candidate;
        return true;
    }

    /// <summary>Evicts every unreferenced cached block (both tiers) to the free lists (e.g. a cache reset). Returns how many.</summary>
    public int EvictAllCached()
    {
        int n = 0;
        for (int tier = Ram; tier <= Disk; tier++)
            while (_lruHead[tier] != None)
            {
                int b = _lruHead[tier];
                LruRemove(b);
                Unmap(b);
                _committed[b] = false;
                PushFree(b);
                _evictions++;
                n++;
            }
        return n;
    }

    /// <summary>Unreferenced cached blocks, least recently used first (the eviction order): RAM blocks, then disk blocks.</summary>
    public IReadOnlyList<int> CachedBlocksInEvictionOrder()
    {
        var list = new List<int>(CachedCount);
        for (int tier = Ram; tier <= Disk; tier++)
            for (int b = _lruHead[tier]; b != None; b = _lruNext[b]) list.Add(b);
        return list;
    }

    /// <summary>Checks every invariant in the file header; throws <see cref="InvalidOperationException"/> naming the first broken one.</summary>
    public void Validate()
    {
        var onFree = new bool[Capacity];
        for (int tier = Ram; tier <= Disk; tier++)
        {
            for (int i = 0; i < _freeTop[tier]; i++)
            {
                int b = _freeStack[tier][i];
                if (onFree[b]) throw new InvalidOperationException($"block {b} is twice on the free list");
                if (TierOf(b) != tier) throw new InvalidOperationException($"block {b} is on the free list of the other tier");
                onFree[b] = true;
            }
            int lruCount = 0;
            for (int b = _lruHead[tier], prev = None; b != None; prev = b, b = _lruNext[b])
            {
                if (_lruPrev[b] != prev) throw new InvalidOperationException($"LRU list broken at block {b}");
                if (!_onLru[b]) throw new InvalidOperationException($"block {b} on the LRU list is not flagged");
                if (TierOf(b) != tier) throw new InvalidOperationException($"block {b} is on the LRU list of the other tier");
                if (++lruCount > Capacity) throw new InvalidOperationException("LRU list has a cycle");
            }
            if (lruCount != _cachedCount[tier]) throw new InvalidOperationException($"LRU list holds {lruCount} blocks, counter says {_cachedCount[tier]}");
        }
        int used = 0;
        for (int b = 0; b < Capacity; b++)
        {
            int rc = _refCount[b];
            if (rc < 0) throw new InvalidOperationException($"block {b} has negative ref count {rc}");
            int states = (onFree[b] ? 1 : 0) + (_onLru[b] ? 1 : 0) + (rc > 0 ? 1 : 0);
            if (states != 1) throw new InvalidOperationException($"block {b} is in {states} states (free={onFree[b]}, cached={_onLru[b]}, ref={rc})");
            if (rc > 0) used++;
            var location = TierOf(b) == Disk ? BlockLocation.Disk : BlockLocation.Ram;
            if (_meta[b].Location != location) throw new InvalidOperationException($"block {b} is a {location} block but its metadata says {_meta[b].Location}");
            if (_onLru[b] && !_mapped[b]) throw new InvalidOperationException($"cached block {b} is not in the prefix map");
            if (_mapped[b] && (!_committed[b] || !_cacheMap.TryGetValue(_hash[b], out int m) || m != b))
                throw new InvalidOperationException($"block {b} is flagged mapped but the map disagrees");
        }
        if (FreeCount + CachedCount + used != Capacity)
            throw new InvalidOperationException($"free {FreeCount} + cached {CachedCount} + used {used} != capacity {Capacity}");
        foreach (var (hash, b) in _cacheMap)
            if (!_mapped[b] || _hash[b] != hash) throw new InvalidOperationException($"map entry {hash:X16} → {b} is stale");
    }

    private void Unmap(int block)
    {
        if (!_mapped[block]) return;
        _cacheMap.Remove(_hash[block]);
        _mapped[block] = false;
    }

    private int TierOf(int block) => block < RamCapacity ? Ram : Disk;

    private BlockMeta FreshMeta(int block)
    {
        var m = BlockMeta.Default;
        if (TierOf(block) == Disk) m.Location = BlockLocation.Disk;
        return m;
    }

    private void PushFree(int block)
    {
        int tier = TierOf(block);
        _freeStack[tier][_freeTop[tier]++] = block;
    }

    /// <summary>A block of <paramref name="tier"/> with RefCount 1 and no content (free list first, then LRU eviction).</summary>
    private bool TryTake(int tier, out int block)
    {
        if (_freeTop[tier] > 0)
        {
            block = _freeStack[tier][--_freeTop[tier]];
        }
        else if (_lruHead[tier] != None)
        {
            block = _lruHead[tier];
            LruRemove(block);
            Unmap(block);
            _evictions++;
        }
        else
        {
            block = None;
            return false;
        }
        _refCount[block] = 1;
        _generation[block]++;
        _committed[block] = false;
        _parentBlock[block] = None;
        _meta[block] = FreshMeta(block);
        return true;
    }

    private void LruAppend(int block)
    {
        int tier = TierOf(block);
        _lruPrev[block] = _lruTail[tier];
        _lruNext[block] = None;
        if (_lruTail[tier] != None) _lruNext[_lruTail[tier]] = block; else _lruHead[tier] = block;
        _lruTail[tier] = block;
        _onLru[block] = true;
        _cachedCount[tier]++;
    }

    private void LruRemove(int block)
    {
        int tier = TierOf(block);
        int p = _lruPrev[block], n = _lruNext[block];
        if (p != None) _lruNext[p] = n; else _lruHead[tier] = n;
        if (n != None) _lruPrev[n] = p; else _lruTail[tier] = p;
        _onLru[block] = false;
        _cachedCount[tier]--;
    }

    private int Check(int block)
    {
        if ((uint)block >= (uint)Capacity) throw new ArgumentOutOfRangeException(nameof(block), block, $"block id outside 0..{Capacity - 1}");
        return block;
    }
}
