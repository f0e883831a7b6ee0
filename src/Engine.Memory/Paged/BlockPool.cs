// Owns: the fixed set of KV blocks (ids 0..Capacity-1), their reference counts, the free list, the prefix-cache
// map (content hash → block) and the LRU list of unreferenced cached blocks.
// Invariants (checked by Validate):
//   every block is in exactly one state — Free (on the free stack, no content), Used (RefCount > 0), or
//   Cached (RefCount == 0, mapped by its hash, on the LRU list); FreeCount + UsedCount + CachedCount == Capacity.
//   A committed block's token ids never change until the block is handed out again (Generation bumps then).
//   A mapped block is committed; at most one block is mapped per hash (first commit wins; duplicates stay unmapped).
// Complexity: Allocate, AddRef, Release, cache lookup and eviction are O(1) (array-backed stack and intrusive
// doubly linked LRU list; dictionary lookups), commit is O(BlockSize).
// Source: vLLM v1 core/block_pool.py (free queue + cached-block map, LRU eviction of ref-0 cached blocks) and
// mistral.rs paged_attention/block_pool.rs; the parent-identity check on hits is this engine's own addition.
namespace Engine.Memory.Paged;

/// <summary>Counters of a <see cref="BlockPool"/>.</summary>
public readonly record struct BlockPoolStats(
    int Capacity, int UsedCount, int FreeCount, int CachedCount,
    long Allocations, long Evictions, long CacheHitBlocks);

/// <summary>A fixed pool of KV blocks of <see cref="BlockSize"/> token slots each.</summary>
public sealed class BlockPool
{
    private const int None = -1;

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
    private readonly int[] _freeStack;        // [capacity] ids of free blocks, top at _freeTop - 1
    private int _freeTop;
    private readonly int[] _lruPrev, _lruNext; // [block] intrusive list, head = least recently used
    private readonly bool[] _onLru;           // [block]
    private int _lruHead = None, _lruTail = None, _cachedCount;
    private readonly Dictionary<ulong, int> _cacheMap = new();
    private long _allocations, _evictions, _hitBlocks;

    /// <param name="blockCount">Number of blocks (the memory budget), ≥ 1.</param>
    /// <param name="blockSize">Token slots per block, ≥ 1 (default 16).</param>
    /// <param name="hashFunction">Chained content hash; <see cref="BlockHasher.Hash"/> when null (tests inject a colliding one).</param>
    public BlockPool(int blockCount, int blockSize = 16, BlockHashFunction? hashFunction = null)
    {
        if (blockCount < 1) throw new ArgumentOutOfRangeException(nameof(blockCount), blockCount, "a block pool needs at least one block");
        if (blockSize < 1) throw new ArgumentOutOfRangeException(nameof(blockSize), blockSize, "a block needs at least one token slot");
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
        _freeStack = new int[blockCount];
        _lruPrev = new int[blockCount];
        _lruNext = new int[blockCount];
        _onLru = new bool[blockCount];
        // Push in reverse so the first allocations hand out 0, 1, 2, ... (readable plans and tests).
        for (int b = blockCount - 1; b >= 0; b--) _freeStack[_freeTop++] = b;
        for (int b = 0; b < blockCount; b++) { _meta[b] = BlockMeta.Default; _parentBlock[b] = None; }
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

    public int Capacity { get; }
    public int BlockSize { get; }

    /// <summary>Blocks with no content, ready to hand out.</summary>
    public int FreeCount => _freeTop;

    /// <summary>Unreferenced blocks that still hold reusable prefix content (evicted LRU-first when needed).</summary>
    public int CachedCount => _cachedCount;

    /// <summary>Blocks with RefCount &gt; 0.</summary>
    public int UsedCount => Capacity - _freeTop - _cachedCount;

    /// <summary>Blocks that an allocation can obtain right now (free + evictable cached).</summary>
    public int AvailableCount => _freeTop + _cachedCount;

    public BlockPoolStats Stats => new(Capacity, UsedCount, FreeCount, CachedCount, _allocations, _evictions, _hitBlocks);

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
    /// Hands out a block with RefCount 1 and no content: from the free list, else by evicting the least recently
    /// used cached block. Returns false only when every block is referenced.
    /// </summary>
    public bool TryAllocate(out int block)
    {
        if (_freeTop > 0)
        {
            block = _freeStack[--_freeTop];
        }
        else if (_lruHead != None)
        {
            block = _lruHead;
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
        _meta[block] = BlockMeta.Default;
        _allocations++;
        return true;
    }

    /// <summary>Like <see cref="TryAllocate"/> but throws <see cref="InvalidOperationException"/> when every block is referenced.</summary>
    public int Allocate()
    {
        if (!TryAllocate(out int block))
            throw new InvalidOperationException($"block pool exhausted: all {Capacity} blocks are referenced");
        return block;
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
            _freeStack[_freeTop++] = block;
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

    /// <summary>Evicts every unreferenced cached block to the free list (e.g. a cache reset). Returns how many.</summary>
    public int EvictAllCached()
    {
        int n = 0;
        while (_lruHead != None)
        {
            int b = _lruHead;
            LruRemove(b);
            Unmap(b);
            _committed[b] = false;
            _freeStack[_freeTop++] = b;
            _evictions++;
            n++;
        }
        return n;
    }

    /// <summary>Unreferenced cached blocks, least recently used first (the eviction order).</summary>
    public IReadOnlyList<int> CachedBlocksInEvictionOrder()
    {
        var list = new List<int>(_cachedCount);
        for (int b = _lruHead; b != None; b = _lruNext[b]) list.Add(b);
        return list;
    }

    /// <summary>Checks every invariant in the file header; throws <see cref="InvalidOperationException"/> naming the first broken one.</summary>
    public void Validate()
    {
        var onFree = new bool[Capacity];
        for (int i = 0; i < _freeTop; i++)
        {
            int b = _freeStack[i];
            if (onFree[b]) throw new InvalidOperationException($"block {b} is twice on the free list");
            onFree[b] = true;
        }
        int lruCount = 0;
        for (int b = _lruHead, prev = None; b != None; prev = b, b = _lruNext[b])
        {
            if (_lruPrev[b] != prev) throw new InvalidOperationException($"LRU list broken at block {b}");
            if (!_onLru[b]) throw new InvalidOperationException($"block {b} on the LRU list is not flagged");
            if (++lruCount > Capacity) throw new InvalidOperationException("LRU list has a cycle");
        }
        if (lruCount != _cachedCount) throw new InvalidOperationException($"LRU list holds {lruCount} blocks, counter says {_cachedCount}");
        int used = 0;
        for (int b = 0; b < Capacity; b++)
        {
            int rc = _refCount[b];
            if (rc < 0) throw new InvalidOperationException($"block {b} has negative ref count {rc}");
            int states = (onFree[b] ? 1 : 0) + (_onLru[b] ? 1 : 0) + (rc > 0 ? 1 : 0);
            if (states != 1) throw new InvalidOperationException($"block {b} is in {states} states (free={onFree[b]}, cached={_onLru[b]}, ref={rc})");
            if (rc > 0) used++;
            if (_onLru[b] && !_mapped[b]) throw new InvalidOperationException($"cached block {b} is not in the prefix map");
            if (_mapped[b] && (!_committed[b] || !_cacheMap.TryGetValue(_hash[b], out int m) || m != b))
                throw new InvalidOperationException($"block {b} is flagged mapped but the map disagrees");
        }
        if (_freeTop + _cachedCount + used != Capacity)
            throw new InvalidOperationException($"free {_freeTop} + cached {_cachedCount} + used {used} != capacity {Capacity}");
        foreach (var (hash, b) in _cacheMap)
            if (!_mapped[b] || _hash[b] != hash) throw new InvalidOperationException($"map entry {hash:X16} → {b} is stale");
    }

    private void Unmap(int block)
    {
        if (!_mapped[block]) return;
        _cacheMap.Remove(_hash[block]);
        _mapped[block] = false;
    }

    private void LruAppend(int block)
    {
        _lruPrev[block] = _lruTail;
        _lruNext[block] = None;
        if (_lruTail != None) _lruNext[_lruTail] = block; else _lruHead = block;
        _lruTail = block;
        _onLru[block] = true;
        _cachedCount++;
    }

    private void LruRemove(int block)
    {
        int p = _lruPrev[block], n = _lruNext[block];
        if (p != None) _lruNext[p] = n; else _lruHead = n;
        if (n != None) _lruPrev[n] = p; else _lruTail = p;
        _onLru[block] = false;
        _cachedCount--;
    }

    private int Check(int block)
    {
        if ((uint)block >= (uint)Capacity) throw new ArgumentOutOfRangeException(nameof(block), block, $"block id outside 0..{Capacity - 1}");
        return block;
    }
}
