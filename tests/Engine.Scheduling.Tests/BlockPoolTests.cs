// Owns: unit tests of BlockPool — free list, reference counts, commit/lookup verification, LRU eviction order,
// stats and metadata reset. Expected values are derived by hand from the documented semantics.
using Engine.Memory.Paged;

namespace Engine.Scheduling.Tests;

public class BlockPoolTests
{
    private static int[] Tokens(int start, int count) => Enumerable.Range(start, count).ToArray();

    [Test]
    public void Allocate_HandsOutEveryBlockOnce_ThenFails()
    {
        var pool = new BlockPool(5, 4);
        var got = new HashSet<int>();
        for (int i = 0; i < 5; i++) Assert.That(got.Add(pool.Allocate()), Is.True);
        Assert.Multiple(() =>
        {
            Assert.That(got, Is.EquivalentTo(new[] { 0, 1, 2, 3, 4 }));
            Assert.That(pool.TryAllocate(out _), Is.False);
            Assert.That(pool.UsedCount, Is.EqualTo(5));
            Assert.That(pool.FreeCount, Is.EqualTo(0));
            Assert.Throws<InvalidOperationException>(() => pool.Allocate());
        });
        pool.Release(3);
        Assert.That(pool.Allocate(), Is.EqualTo(3), "a released uncommitted block goes straight back to the free list");
        pool.Validate();
    }

    [Test]
    public void RefCounts_AddRefRelease_AndMisuseThrows()
    {
        var pool = new BlockPool(3, 4);
        int b = pool.Allocate();
        pool.AddRef(b);
        Assert.That(pool.RefCount(b), Is.EqualTo(2));
        pool.Release(b);
        Assert.That(pool.RefCount(b), Is.EqualTo(1));
        Assert.That(pool.UsedCount, Is.EqualTo(1));
        pool.Release(b);
        Assert.Multiple(() =>
        {
            Assert.That(pool.RefCount(b), Is.EqualTo(0));
            Assert.That(pool.FreeCount, Is.EqualTo(3));
            Assert.Throws<InvalidOperationException>(() => pool.Release(b));
            Assert.Throws<InvalidOperationException>(() => pool.AddRef(b));
            Assert.Throws<ArgumentOutOfRangeException>(() => pool.Release(3));
            Assert.Throws<ArgumentOutOfRangeException>(() => new BlockPool(0, 16));
        });
        pool.Validate();
    }

    [Test]
    public void CommittedBlock_IsCachedAfterRelease_AndRevivedByLookup()
    {
        var pool = new BlockPool(4, 4);
        int a = pool.Allocate();
        pool.Commit(a, -1, Tokens(10, 4));
        pool.Release(a);
        Assert.Multiple(() =>
        {
            Assert.That(pool.CachedCount, Is.EqualTo(1));
            Assert.That(pool.FreeCount, Is.EqualTo(3));
            Assert.That(pool.UsedCount, Is.EqualTo(0));
        });
        Assert.That(pool.TryAcquireCached(-1, Tokens(10, 4), out int hit), Is.True);
        Assert.Multiple(() =>
        {
            Assert.That(hit, Is.EqualTo(a));
            Assert.That(pool.RefCount(a), Is.EqualTo(1));
            Assert.That(pool.CachedCount, Is.EqualTo(0));
            Assert.That(pool.Stats.CacheHitBlocks, Is.EqualTo(1));
            Assert.That(pool.TryAcquireCached(-1, Tokens(11, 4), out _), Is.False, "different tokens");
        });
        pool.Validate();
    }

    [Test]
    public void LruEviction_LeastRecentlyReleasedFirst_AndHitRefreshes()
    {
        var pool = new BlockPool(4, 2);
        int a = pool.Allocate(), b = pool.Allocate(), c = pool.Allocate();
        pool.Commit(a, -1, [1, 1]);
        pool.Commit(b, -1, [2, 2]);
        pool.Commit(c, -1, [3, 3]);
        pool.Release(b);
        pool.Release(a);
        pool.Release(c);
        Assert.That(pool.CachedBlocksInEvictionOrder(), Is.EqualTo(new[] { b, a, c }));
        // A hit on a revives it; releasing it again makes it the most recently used.
        Assert.That(pool.TryAcquireCached(-1, [1, 1], out int ra), Is.True);
        Assert.That(ra, Is.EqualTo(a));
        Assert.That(pool.CachedBlocksInEvictionOrder(), Is.EqualTo(new[] { b, c }));
        pool.Release(a);
        Assert.That(pool.CachedBlocksInEvictionOrder(), Is.EqualTo(new[] { b, c, a }));

        int fresh = pool.Allocate(); // the one never-used free block first
        Assert.That(new[] { a, b, c }, Does.Not.Contain(fresh));
        Assert.That(pool.Allocate(), Is.EqualTo(b), "first eviction: least recently used");
        Assert.That(pool.TryAcquireCached(-1, [2, 2], out _), Is.False, "an evicted block is no longer reachable");
        Assert.That(pool.Allocate(), Is.EqualTo(c));
        Assert.That(pool.Allocate(), Is.EqualTo(a));
        Assert.That(pool.Stats.Evictions, Is.EqualTo(3));
        pool.Validate();
    }

    [Test]
    public void Lookup_VerifiesParentIdentity_NotJustTheHash()
    {
        // A hash that collides for everything: hits must still only return blocks with equal tokens and parent.
        var pool = new BlockPool(6, 2, (_, _) => 42UL);
        int p = pool.Allocate();
        pool.Commit(p, -1, [5, 6]);
        int child = pool.Allocate();
        pool.Commit(child, p, [7, 8]);
        Assert.Multiple(() =>
        {
            Assert.That(pool.TryAcquireCached(-1, [7, 8], out _), Is.False, "same tokens, wrong parent (root)");
            Assert.That(pool.TryAcquireCached(-1, [5, 7], out _), Is.False, "colliding hash, different tokens");
        });
        // Only the first of two colliding committed blocks is mapped; the second just misses later.
        int other = pool.Allocate();
        pool.Commit(other, -1, [9, 9]);
        Assert.That(pool.TryAcquireCached(-1, [9, 9], out _), Is.False);
        Assert.That(pool.TryAcquireCached(-1, [5, 6], out int hit), Is.True);
        Assert.That(hit, Is.EqualTo(p));
        pool.Release(hit);
        pool.Validate();
    }

    [Test]
    public void Lookup_RejectsEqualTokensUnderAnotherParent()
    {
        // A hash that ignores the parent: the chain identity must come from the parent check.
        var pool = new BlockPool(6, 2, (_, tokens) => (ulong)tokens[0]);
        int p = pool.Allocate(), q = pool.Allocate(), child = pool.Allocate();
        pool.Commit(p, -1, [5, 6]);
        pool.Commit(q, -1, [8, 8]);
        pool.Commit(child, p, [7, 8]);
        Assert.That(pool.TryAcquireCached(q, [7, 8], out _), Is.False, "same tokens and hash, different parent");
        Assert.That(pool.TryAcquireCached(p, [7, 8], out int hit), Is.True);
        Assert.That(hit, Is.EqualTo(child));
        pool.Validate();
    }

    [Test]
    public void Lookup_MissesWhenParentWasReallocated()
    {
        var pool = new BlockPool(2, 2);
        int p = pool.Allocate();
        pool.Commit(p, -1, [1, 2]);
        int c = pool.Allocate();
        pool.Commit(c, p, [3, 4]);
        pool.Release(p); // p cached; c still used
        int q = pool.Allocate(); // evicts p, so q == p with a new generation
        Assert.That(q, Is.EqualTo(p));
        pool.Commit(q, -1, [1, 2]); // same content again, but a new incarnation
        pool.Release(c);
        Assert.That(pool.TryAcquireCached(q, [3, 4], out _), Is.False, "c's parent was the old incarnation");
        pool.Validate();
    }

    [Test]
    public void BudgetHelpers_MatchHandComputedSizes()
    {
        // Llama-2-7B-like: 32 layers, 32 KV heads, head dim 128, f16, 16-token blocks: 2·32·32·128·16·2 = 8 MiB.
        long perBlock = BlockPool.BytesPerBlock(32, 32, 128, 16, 2);
        Assert.That(perBlock, Is.EqualTo(8L << 20));
        Assert.That(BlockPool.BlockCountForBudget(4L << 30, perBlock), Is.EqualTo(512));
        Assert.That(BlockPool.BlockCountForBudget((8L << 20) - 1, perBlock), Is.EqualTo(0));
    }

    [Test]
    public void Meta_DefaultsAndResetsOnReallocation()
    {
        var pool = new BlockPool(1, 4);
        int b = pool.Allocate();
        Assert.Multiple(() =>
        {
            Assert.That(pool.Meta(b).Tier, Is.EqualTo(BlockTier.Full));
            Assert.That(pool.Meta(b).Location, Is.EqualTo(BlockLocation.Ram));
            Assert.That(pool.Meta(b).SummarySlot, Is.EqualTo(-1));
        });
        pool.Meta(b).Tier = BlockTier.Int8;
        pool.Meta(b).SummarySlot = 3;
        pool.Release(b);
        b = pool.Allocate();
        Assert.That(pool.Meta(b).Tier, Is.EqualTo(BlockTier.Full));
        Assert.That(pool.Meta(b).SummarySlot, Is.EqualTo(-1));
    }

    [Test]
    public void Hasher_IsChainedAndSensitiveToEveryToken()
    {
        ulong h1 = BlockHasher.Hash(BlockHasher.RootHash, [1, 2, 3, 4]);
        Assert.Multiple(() =>
        {
            Assert.That(BlockHasher.Hash(BlockHasher.RootHash, [1, 2, 3, 4]), Is.EqualTo(h1), "deterministic");
            Assert.That(BlockHasher.Hash(BlockHasher.RootHash, [1, 2, 3, 5]), Is.Not.EqualTo(h1));
            Assert.That(BlockHasher.Hash(BlockHasher.RootHash, [2, 1, 3, 4]), Is.Not.EqualTo(h1));
            Assert.That(BlockHasher.Hash(h1, [1, 2, 3, 4]), Is.Not.EqualTo(h1), "the parent enters the hash");
            Assert.That(BlockHasher.Hash(BlockHasher.RootHash, [1 << 24, 0, 0, 0]), Is.Not.EqualTo(BlockHasher.Hash(BlockHasher.RootHash, [0, 0, 0, 0])), "high bytes count");
        });
        // No collisions among 100k distinct single-block contents (a property, not a proof).
        var seen = new HashSet<ulong>();
        int collisions = 0;
        for (int i = 0; i < 100_000; i++) if (!seen.Add(BlockHasher.Hash(BlockHasher.RootHash, [i, i * 7, 0, 1]))) collisions++;
        Assert.That(collisions, Is.EqualTo(0));
    }
}
