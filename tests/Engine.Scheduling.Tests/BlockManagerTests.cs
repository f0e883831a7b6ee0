// Owns: tests of BlockManager — slot reservation, prefix matching, commit, fork and copy-on-write, freeing.
// Expected block counts and copy orders are derived by hand from positions and the block size.
using Engine.Memory.Paged;

namespace Engine.Scheduling.Tests;

public class BlockManagerTests
{
    private static int[] Tokens(int start, int count) => Enumerable.Range(start, count).ToArray();

    [Test]
    public void Reserve_AllocatesCeilOfTokensOverBlockSize()
    {
        var m = new BlockManager(new BlockPool(10, 4));
        m.Create(1);
        var nb = new List<int>();
        var cp = new List<BlockCopy>();
        Assert.That(m.TryReserve(1, 5, nb, cp), Is.True);
        Assert.That(nb, Has.Count.EqualTo(2));
        Assert.That(m.TryReserve(1, 3, nb, cp), Is.True, "positions 5..7 fit in block 2");
        Assert.That(nb, Has.Count.EqualTo(2));
        Assert.That(m.TryReserve(1, 1, nb, cp), Is.True);
        Assert.That(nb, Has.Count.EqualTo(3));
        Assert.That(m.Get(1).TokenCount, Is.EqualTo(9));
        Assert.That(cp, Is.Empty);
        m.Validate();
    }

    [Test]
    public void Reserve_IsAtomic_WhenThePoolIsShort()
    {
        var pool = new BlockPool(3, 4);
        var m = new BlockManager(pool);
        m.Create(1);
        var nb = new List<int>();
        Assert.That(m.TryReserve(1, 13, nb, new()), Is.False, "13 tokens need 4 blocks");
        Assert.Multiple(() =>
        {
            Assert.That(nb, Is.Empty);
            Assert.That(pool.FreeCount, Is.EqualTo(3));
            Assert.That(m.Get(1).TokenCount, Is.EqualTo(0));
        });
        Assert.That(m.TryReserve(1, 12, nb, new()), Is.True);
        m.Validate();
    }

    [Test]
    public void ForkAndCopyOnWrite_SharesPrefix_CopiesOnlyTheSharedPartialBlock()
    {
        var pool = new BlockPool(8, 4);
        var m = new BlockManager(pool);
        m.Create(1);
        var nb = new List<int>();
        var cp = new List<BlockCopy>();
        m.TryReserve(1, 6, nb, cp); // [full x][partial y: 2 of 4]
        m.Commit(1, Tokens(0, 6), 6);
        var parent = m.Get(1);
        int x = parent.Blocks[0], y = parent.Blocks[1];
        var child = m.Fork(1, 2);
        Assert.Multiple(() =>
        {
            Assert.That(child.Blocks, Is.EqualTo(new[] { x, y }), "fork shares without copying");
            Assert.That(child.TokenCount, Is.EqualTo(6));
            Assert.That(pool.RefCount(x), Is.EqualTo(2));
            Assert.That(pool.RefCount(y), Is.EqualTo(2));
            Assert.That(pool.UsedCount, Is.EqualTo(2));
        });

        // Child writes position 6 (inside shared y): y is copied (2 valid slots) into a fresh block z.
        nb.Clear(); cp.Clear();
        Assert.That(m.TryReserve(2, 1, nb, cp), Is.True);
        int z = child.Blocks[1];
        Assert.Multiple(() =>
        {
            Assert.That(cp, Is.EqualTo(new[] { new BlockCopy(y, z, 2) }));
            Assert.That(nb, Is.EqualTo(new[] { z }));
            Assert.That(child.Blocks[0], Is.EqualTo(x), "the full block stays shared");
            Assert.That(pool.RefCount(x), Is.EqualTo(2));
            Assert.That(pool.RefCount(y), Is.EqualTo(1));
            Assert.That(pool.RefCount(z), Is.EqualTo(1));
        });

        // Parent now owns y alone: writing needs no copy.
        nb.Clear(); cp.Clear();
        Assert.That(m.TryReserve(1, 1, nb, cp), Is.True);
        Assert.That(cp, Is.Empty);
        Assert.That(nb, Is.Empty);
        m.Validate();

        m.Free(1);
        m.Free(2);
        Assert.That(pool.UsedCount, Is.EqualTo(0));
        m.Validate();
    }

    [Test]
    public void ForkAtBlockBoundary_NeedsNoCopy()
    {
        var pool = new BlockPool(8, 4);
        var m = new BlockManager(pool);
        m.Create(1);
        m.TryReserve(1, 8, new(), new());
        m.Fork(1, 2);
        var nb = new List<int>();
        var cp = new List<BlockCopy>();
        Assert.That(m.TryReserve(2, 1, nb, cp), Is.True);
        Assert.That(cp, Is.Empty);
        Assert.That(nb, Has.Count.EqualTo(1));
        Assert.That(m.Get(2).Blocks.Take(2), Is.EqualTo(m.Get(1).Blocks));
        m.Validate();
    }

    [Test]
    public void CopyOnWrite_PreservesContent_WithAFakeKvStore()
    {
        // Values written into blocks by the parent must survive the child's divergent writes, and vice versa.
        const int B = 4;
        var pool = new BlockPool(8, B);
        var m = new BlockManager(pool);
        var kv = new int[8 * B]; // [block, slot]
        void Write(long seq, int count, int value)
        {
            var cp = new List<BlockCopy>();
            int start = m.Get(seq).TokenCount;
            Assert.That(m.TryReserve(seq, count, new(), cp), Is.True);
            foreach (var c in cp) Array.Copy(kv, c.SourceBlock * B, kv, c.DestinationBlock * B, c.TokenCount);
            for (int p = start; p < start + count; p++)
            {
                int block = m.Get(seq).BlockOf(p);
                Assert.That(pool.RefCount(block), Is.EqualTo(1), "writes only go to exclusively held blocks");
                kv[block * B + p % B] = value + p;
            }
        }
        int[] Read(long seq) => Enumerable.Range(0, m.Get(seq).TokenCount).Select(p => kv[m.Get(seq).BlockOf(p) * B + p % B]).ToArray();

        m.Create(1);
        Write(1, 6, 100);
        m.Fork(1, 2);
        m.Fork(1, 3);
        Write(2, 3, 200);
        Write(1, 1, 300);
        Write(3, 5, 400);
        Assert.Multiple(() =>
        {
            Assert.That(Read(1), Is.EqualTo(new[] { 100, 101, 102, 103, 104, 105, 306 }));
            Assert.That(Read(2), Is.EqualTo(new[] { 100, 101, 102, 103, 104, 105, 206, 207, 208 }));
            Assert.That(Read(3), Is.EqualTo(new[] { 100, 101, 102, 103, 104, 105, 406, 407, 408, 409, 410 }));
        });
        m.Validate();
        m.Free(1); m.Free(2); m.Free(3);
        Assert.That(pool.FreeCount, Is.EqualTo(8));
    }

    [Test]
    public void MatchPrefix_ReusesLongestCommittedRun_AndCountsHits()
    {
        var pool = new BlockPool(16, 4);
        var m = new BlockManager(pool);
        var prompt = Tokens(0, 14); // 3 full blocks + 2
        m.Create(1);
        m.TryReserve(1, 14, new(), new());
        m.Commit(1, prompt, 14);
        Assert.That(m.Get(1).CommittedBlockCount, Is.EqualTo(3));
        var owner = m.Get(1).ToArray();
        m.Free(1);
        Assert.That(pool.CachedCount, Is.EqualTo(3), "full blocks stay cached; the partial one is freed");

        m.Create(2);
        Assert.That(m.MatchPrefix(2, prompt), Is.EqualTo(12));
        Assert.That(m.Get(2).Blocks, Is.EqualTo(owner.Take(3)));

        var diverging = (int[])prompt.Clone();
        diverging[5] = 99; // inside block 1
        m.Create(3);
        Assert.That(m.MatchPrefix(3, diverging), Is.EqualTo(4));
        m.Create(4);
        Assert.That(m.MatchPrefix(4, prompt.AsSpan(0, 11)), Is.EqualTo(8), "only whole blocks inside the given tokens");
        Assert.That(m.PrefixHitTokens, Is.EqualTo(24));
        Assert.That(pool.RefCount(owner[0]), Is.EqualTo(3));
        m.Validate();
    }

    [Test]
    public void Free_ReleasesTailFirst_SoTheTailIsEvictedBeforeItsPrefix()
    {
        var pool = new BlockPool(3, 2);
        var m = new BlockManager(pool);
        m.Create(1);
        m.TryReserve(1, 6, new(), new());
        m.Commit(1, Tokens(0, 6), 6);
        var blocks = m.Get(1).ToArray();
        m.Free(1);
        Assert.That(pool.CachedBlocksInEvictionOrder(), Is.EqualTo(blocks.Reverse()));
    }
}
