// Owns: tests of the scheduler's disk tier (SchedulerOptions.DiskBlockCount): the pool's RAM → disk move keeps
// ref counts, prefix hits and parent links; the scheduler offloads the exact cold block a hand computation predicts;
// cached prefix blocks move to disk instead of being evicted and still give prefix hits with the right KV;
// offloading is chosen before preemption (the same workload preempts without a disk tier and does not with one);
// no block a step writes is ever on the disk tier; preemption still happens (and outputs stay exact) when the disk
// is too small; a randomized stress run with a disk tier keeps every invariant after every step and gives every
// request its alone-output. Expected outputs come from FakeModel.RunAlone (no paging at all).
using Engine.Memory.Paged;
using Engine.Scheduling;

namespace Engine.Scheduling.Tests;

public class SchedulerDiskTierTests
{
    private static int BlocksFor(int tokens, int blockSize) => (tokens + blockSize - 1) / blockSize;

    private static int[] Tokens(Random rng, int count, int vocab) => Enumerable.Range(0, count).Select(_ => rng.Next(1, vocab)).ToArray();

    /// <summary>No written block lies on disk: every table entry on the disk tier is wholly below the step's start.</summary>
    private static void AssertWritesStayInRam(SchedulePlan plan, BlockPool pool, int blockSize)
    {
        foreach (var m in plan.Moves)
        {
            Assert.That(m.SourceBlock, Is.LessThan(pool.RamCapacity), "a move starts in RAM");
            Assert.That(m.DestinationBlock, Is.GreaterThanOrEqualTo(pool.RamCapacity), "a move ends on disk");
        }
        foreach (var r in plan.Requests)
        {
            for (int k = 0; k < r.BlockTable.Length; k++)
                if (r.BlockTable[k] >= pool.RamCapacity)
                    Assert.That((k + 1) * blockSize, Is.LessThanOrEqualTo(r.StartPosition),
                        $"step {plan.StepIndex}: request {r.RequestId} block {k} is on disk but the step writes positions from {r.StartPosition}");
            foreach (int b in r.NewBlocks) Assert.That(b, Is.LessThan(pool.RamCapacity), "new blocks are RAM blocks");
            foreach (var c in r.Copies) Assert.That(c.DestinationBlock, Is.LessThan(pool.RamCapacity), "copy-on-write destinations are RAM blocks");
        }
    }

    [Test]
    public void PoolMoveToDisk_KeepsRefCountsPrefixHitsAndChildLinks()
    {
        var pool = new BlockPool(4, 2, diskBlockCount: 3);
        Assert.That((pool.Capacity, pool.RamCapacity, pool.DiskCapacity), Is.EqualTo((7, 4, 3)));
        var m = new BlockManager(pool);
        m.Create(1);
        var nb = new List<int>();
        var cp = new List<BlockCopy>();
        Assert.That(m.TryReserve(1, 6, nb, cp), Is.True);
        int[] tokens = [5, 6, 7, 8, 9, 10];
        m.Commit(1, tokens, 6);
        m.Fork(1, 2); // every block now has two references
        int first = m.Get(1).Blocks[0];
        Assert.That(m.TryMoveToDisk(first, out var move), Is.True);
        Assert.That(move.SourceBlock, Is.EqualTo(first));
        Assert.That(pool.IsOnDisk(move.DestinationBlock), Is.True);
        Assert.That(m.Get(1).Blocks[0], Is.EqualTo(move.DestinationBlock), "every table follows the block");
        Assert.That(m.Get(2).Blocks[0], Is.EqualTo(move.DestinationBlock));
        Assert.That(pool.RefCount(move.DestinationBlock), Is.EqualTo(2));
        Assert.That(pool.RefCount(first), Is.EqualTo(0));
        Assert.That(pool.Meta(move.DestinationBlock).Location, Is.EqualTo(BlockLocation.Disk));
        Assert.That(pool.RamFreeCount, Is.EqualTo(2), "the RAM block is free again");
        m.Validate();

        // Both sequences end: the chain (disk block 0 → RAM blocks 1, 2) is still found by a new prefix.
        m.Free(1);
        m.Free(2);
        m.Validate();
        m.Create(3);
        Assert.That(m.MatchPrefix(3, tokens), Is.EqualTo(6), "the moved block and its children still hit");
        Assert.That(m.Get(3).Blocks[0], Is.EqualTo(move.DestinationBlock));
        m.Free(3);

        // A cached (unreferenced) block moves too and stays a cached prefix block on the disk tier.
        int second = pool.CachedBlocksInEvictionOrder().First(b => !pool.IsOnDisk(b));
        Assert.That(pool.TryMoveToDisk(second, out int to), Is.True);
        Assert.That(pool.RefCount(to), Is.EqualTo(0));
        Assert.That(pool.DiskCachedCount, Is.EqualTo(2));
        m.Validate();
        m.Create(4);
        Assert.That(m.MatchPrefix(4, tokens), Is.EqualTo(6));
        m.Free(4);
        Assert.Throws<ArgumentException>(() => pool.TryMoveToDisk(to, out _), "a disk block cannot move to disk");
        Assert.Throws<InvalidOperationException>(() => pool.TryMoveToDisk(first, out _), "a free block cannot move");
    }

    [Test]
    public void PoolWithoutDiskTier_CannotMove_AndAllocateNeverHandsOutDiskBlocks()
    {
        var none = new BlockPool(2, 2);
        int b = none.Allocate();
        Assert.That(none.TryMoveToDisk(b, out _), Is.False);
        var pool = new BlockPool(2, 2, diskBlockCount: 5);
        Assert.That(pool.Allocate(), Is.LessThan(2));
        Assert.That(pool.Allocate(), Is.LessThan(2));
        Assert.That(pool.TryAllocate(out _), Is.False, "the disk tier is not handed out by Allocate");
        Assert.That(pool.AvailableCount, Is.EqualTo(0));
        Assert.That(pool.DiskAvailableCount, Is.EqualTo(5));
        pool.Validate();
    }

    [Test]
    public void FirstDecodePastRam_OffloadsTheColdestBlock_NotTheFirstNorTheWindow()
    {
        // B = 2, RAM = 4 blocks, window 1: an 8-token prompt fills RAM; the first decode (position 8) needs a fifth
        // block. Full blocks 0..3; block 0 is kept, block 3 is the window, so block 1 (id 1) is the coldest.
        var s = new Scheduler(new SchedulerOptions
        {
            BlockCount = 4, DiskBlockCount = 4, BlockSize = 2, RecentWindowBlocks = 1, MaxTokensPerStep = 64, EnablePrefixCaching = false,
        });
        var ex = new FakeExecutor(s.Pool, 50);
        int[] prompt = [3, 1, 4, 1, 5, 9, 2, 6];
        s.AddRequest(new Request(1, prompt, 4));
        var plans = Driver.Run(s, ex);
        Assert.That(plans[0].Moves, Is.Empty);
        Assert.That(plans[0].Requests[0].BlockTable, Is.EqualTo(new[] { 0, 1, 2, 3 }));
        Assert.That(plans[1].Moves, Is.EqualTo(new[] { new BlockMove(1, 4) }));
        Assert.That(plans[1].Requests[0].BlockTable, Is.EqualTo(new[] { 0, 4, 2, 3, 1 }), "block 1 now lives at disk id 4; RAM id 1 is the new block");
        Assert.That(s.GetRequest(1).OutputTokens, Is.EqualTo(FakeModel.RunAlone(prompt, 4, 50)));
        Assert.That(s.Stats.Preemptions, Is.EqualTo(0));
        Assert.That(s.Stats.BlocksMovedToDisk, Is.EqualTo(2), "positions 8..10 need two new blocks: blocks 1 and 2 move");
    }

    [Test]
    public void CachedPrefixBlocksMoveToDiskInsteadOfBeingEvicted_AndStillHit()
    {
        var s = new Scheduler(new SchedulerOptions { BlockCount = 4, DiskBlockCount = 8, BlockSize = 2, MaxTokensPerStep = 64 });
        var ex = new FakeExecutor(s.Pool, 50);
        int[] a = [7, 8, 9, 10, 11, 12], b = [20, 21, 22, 23, 24, 25, 26, 27];
        s.AddRequest(new Request(1, a, 1));
        Driver.Run(s, ex);
        Assert.That(s.Pool.RamCachedCount, Is.EqualTo(3), "A's three full blocks stay cached after it finishes");

        s.AddRequest(new Request(2, b, 1)); // needs all 4 RAM blocks: A's cached blocks go to disk, not away
        var plans = Driver.Run(s, ex);
        Assert.That(plans[0].Moves.Select(m => m.SourceBlock), Is.EquivalentTo(new[] { 0, 1, 2 }));
        Assert.That(s.Pool.DiskCachedCount, Is.EqualTo(3));

        int[] c = [.. a, 13];
        s.AddRequest(new Request(3, c, 2));
        plans = Driver.Run(s, ex);
        Assert.That(s.GetRequest(3).PrefixHitTokens, Is.EqualTo(6), "A's prefix is found on the disk tier");
        Assert.That(plans[0].Requests[0].BlockTable.Take(3).All(s.Pool.IsOnDisk), Is.True);
        Assert.That(s.GetRequest(3).OutputTokens, Is.EqualTo(FakeModel.RunAlone(c, 2, 50)), "the disk blocks hold A's exact KV");
        Assert.That(s.Stats.Preemptions, Is.EqualTo(0));
    }

    [Test]
    public void OffloadIsChosenBeforePreemption()
    {
        const int vocab = 300, blockSize = 4;
        var rng = new Random(5);
        var prompts = Enumerable.Range(0, 6).Select(_ => Tokens(rng, rng.Next(20, 40), vocab)).ToArray();
        const int maxNew = 24;
        int joint = prompts.Sum(p => BlocksFor(p.Length + maxNew - 1, blockSize));
        int ram = joint / 4;

        (SchedulerStats Stats, List<int[]> Outputs, List<SchedulePlan> Plans) Run(int disk)
        {
            var s = new Scheduler(new SchedulerOptions { BlockCount = ram, DiskBlockCount = disk, BlockSize = blockSize, MaxTokensPerStep = 64 });
            var ex = new FakeExecutor(s.Pool, vocab);
            for (int i = 0; i < prompts.Length; i++) s.AddRequest(new Request(i, prompts[i], maxNew));
            var plans = Driver.Run(s, ex, onPlan: p => AssertWritesStayInRam(p, s.Pool, blockSize));
            var outputs = Enumerable.Range(0, prompts.Length).Select(i => s.GetRequest(i).OutputTokens).ToList();
            Assert.That(s.Pool.UsedCount, Is.EqualTo(0));
            return (s.Stats, outputs, plans);
        }

        var noDisk = Run(0);
        var withDisk = Run(joint);
        for (int i = 0; i < prompts.Length; i++)
        {
            var expected = FakeModel.RunAlone(prompts[i], maxNew, vocab);
            Assert.That(noDisk.Outputs[i], Is.EqualTo(expected), $"request {i} without a disk tier");
            Assert.That(withDisk.Outputs[i], Is.EqualTo(expected), $"request {i} with a disk tier");
        }
        TestContext.Out.WriteLine($"RAM {ram} of {joint} blocks: no disk {noDisk.Stats}; disk {withDisk.Stats}");
        Assert.That(noDisk.Stats.Preemptions, Is.GreaterThan(0), "a quarter of the memory forces preemption without a disk tier");
        Assert.That(withDisk.Stats.Preemptions, Is.EqualTo(0), "with room on disk nothing is preempted");
        Assert.That(withDisk.Stats.BlocksMovedToDisk, Is.GreaterThan(0));
        Assert.That(withDisk.Plans.Sum(p => p.Moves.Count), Is.EqualTo(withDisk.Stats.BlocksMovedToDisk));
        Assert.That(withDisk.Stats.ComputedTokens, Is.LessThan(noDisk.Stats.ComputedTokens), "nothing is recomputed");
    }

    [Test]
    public void TinyDiskTier_StillPreemptsWhenFull_AndOutputsStayExact()
    {
        const int vocab = 300, blockSize = 4;
        var rng = new Random(9);
        var prompts = Enumerable.Range(0, 8).Select(_ => Tokens(rng, rng.Next(10, 50), vocab)).ToArray();
        const int maxNew = 30;
        int joint = prompts.Sum(p => BlocksFor(p.Length + maxNew - 1, blockSize));
        int single = prompts.Max(p => BlocksFor(p.Length + maxNew - 1, blockSize));
        var s = new Scheduler(new SchedulerOptions { BlockCount = joint / 5, DiskBlockCount = Math.Max(single, joint / 5), BlockSize = blockSize, MaxTokensPerStep = 48 });
        var ex = new FakeExecutor(s.Pool, vocab);
        for (int i = 0; i < prompts.Length; i++) s.AddRequest(new Request(i, prompts[i], maxNew));
        Driver.Run(s, ex, onPlan: p => AssertWritesStayInRam(p, s.Pool, blockSize));
        for (int i = 0; i < prompts.Length; i++)
            Assert.That(s.GetRequest(i).OutputTokens, Is.EqualTo(FakeModel.RunAlone(prompts[i], maxNew, vocab)), $"request {i}");
        TestContext.Out.WriteLine(s.Stats.ToString());
        Assert.That(s.Stats.Preemptions, Is.GreaterThan(0), "RAM + disk hold 40 % of the joint need: something must be preempted");
        Assert.That(s.Stats.BlocksMovedToDisk, Is.GreaterThan(0));
        Assert.That(ex.Moves, Is.EqualTo(s.Stats.BlocksMovedToDisk));
    }

    [Test]
    public void RejectsOnlyWhatRamAndDiskTogetherCannotHold()
    {
        var s = new Scheduler(new SchedulerOptions { BlockCount = 2, DiskBlockCount = 3, BlockSize = 4 });
        s.AddRequest(new Request(1, Enumerable.Repeat(1, 12).ToArray(), 9)); // 20 positions = 5 blocks: fits RAM + disk
        var e = Assert.Throws<RequestRejectedException>(() => s.AddRequest(new Request(2, Enumerable.Repeat(1, 12).ToArray(), 10)));
        Assert.That(e!.Reason, Is.EqualTo(RejectionReason.ExceedsPool));
        Assert.That(e.Message, Does.Contain("2 in RAM + 3 on disk"));
        Driver.Run(s, new FakeExecutor(s.Pool, 20));
        Assert.That(s.GetRequest(1).OutputTokens, Is.EqualTo(FakeModel.RunAlone(Enumerable.Repeat(1, 12).ToArray(), 9, 20)));
        Assert.That(s.Stats.Preemptions, Is.EqualTo(0));
    }

    [Test]
    public void RandomizedStressWithDiskTier_KeepsInvariantsEveryStep_AndExactOutputs([Range(0, 39)] int seed)
    {
        var rng = new Random(5000 + seed);
        int vocab = rng.Next(0, 3) == 0 ? 7 : 300;
        int blockSize = new[] { 1, 2, 3, 4, 8, 16 }[rng.Next(6)];
        int[]? shared = rng.Next(2) == 0 ? Tokens(rng, rng.Next(1, 60), vocab) : null;
        int count = rng.Next(1, 30);
        var specs = Enumerable.Range(0, count).Select(i =>
        {
            var prompt = Tokens(rng, rng.Next(1, 70), vocab);
            if (shared != null && rng.Next(2) == 0) prompt = [.. shared, .. prompt];
            return (Id: (long)i, Prompt: prompt, MaxNew: rng.Next(1, 40), Priority: rng.Next(3), Arrival: rng.Next(0, 40),
                CancelAt: rng.Next(5) == 0 ? rng.Next(0, 60) : -1);
        }).ToList();
        int single = specs.Max(x => BlocksFor(x.Prompt.Length + x.MaxNew - 1, blockSize));
        int joint = specs.Sum(x => BlocksFor(x.Prompt.Length + x.MaxNew - 1, blockSize));
        int ram = rng.Next(1, Math.Max(2, joint / 3));
        int disk = Math.Max(single - ram, 0) + rng.Next(0, joint);
        var options = new SchedulerOptions
        {
            BlockSize = blockSize,
            BlockCount = ram,
            DiskBlockCount = Math.Max(1, disk),
            RecentWindowBlocks = rng.Next(0, 4),
            KeepFirstBlockInRam = rng.Next(2) == 0,
            MaxTokensPerStep = rng.Next(1, 100),
            MaxRunningRequests = rng.Next(1, 12),
            MaxModelLength = 200,
            EnablePrefixCaching = rng.Next(4) != 0,
        };
        var s = new Scheduler(options);
        static int Salt(long id) => (int)id * 7919;
        var ex = new FakeExecutor(s.Pool, vocab, Salt);
        int[] stops = vocab == 7 ? [0] : [];
        var cancelled = new HashSet<long>();
        var forks = new List<(long Child, int[] Prompt, int[] SoFar, int MaxNew)>();
        int lastEvent = Math.Max(specs.Max(x => x.Arrival), specs.Max(x => x.CancelAt));
        Driver.Run(s, ex, onPlan: p => AssertWritesStayInRam(p, s.Pool, blockSize), beforeStep: step =>
        {
            foreach (var x in specs)
            {
                if (x.Arrival == step) s.AddRequest(new Request(x.Id, x.Prompt, x.MaxNew, x.Priority, stops));
                if (x.CancelAt == step && s.Cancel(x.Id)) cancelled.Add(x.Id);
            }
            if (step < 40 && rng.Next(8) == 0)
            {
                var x = specs[rng.Next(specs.Count)];
                if (s.TryGetRequest(x.Id, out var r) && r!.Status is RequestStatus.Running or RequestStatus.Waiting)
                {
                    long child = 1000 + forks.Count;
                    s.Fork(x.Id, child);
                    forks.Add((child, x.Prompt, r.OutputTokens, x.MaxNew));
                }
            }
            return step < lastEvent; // Driver validates after every step: ref counts, tiers, free + used + cached, disk-free writes
        });

        foreach (var x in specs)
        {
            var r = s.GetRequest(x.Id);
            if (cancelled.Contains(x.Id)) { Assert.That(r.Status, Is.EqualTo(RequestStatus.Cancelled)); continue; }
            Assert.That(r.Status, Is.EqualTo(RequestStatus.Finished), $"seed {seed}: request {x.Id}");
            Assert.That(r.OutputTokens, Is.EqualTo(FakeModel.RunAlone(x.Prompt, x.MaxNew, vocab, stops, Salt(x.Id))),
                $"seed {seed}: request {x.Id}, B={blockSize}, RAM={ram}, disk={options.DiskBlockCount}, preempted {r.PreemptionCount}×");
        }
        foreach (var f in forks)
        {
            var r = s.GetRequest(f.Child);
            var expected = f.SoFar.Concat(FakeModel.RunAlone(f.Prompt.Concat(f.SoFar).ToArray(), f.MaxNew - f.SoFar.Length, vocab, stops, Salt(f.Child))).ToArray();
            Assert.That(r.OutputTokens, Is.EqualTo(expected), $"seed {seed}: fork {f.Child}");
        }
        TestContext.Out.WriteLine($"seed {seed}: RAM {ram}, disk {options.DiskBlockCount}, joint {joint}: {s.Stats}");
        Assert.That(s.Pool.UsedCount, Is.EqualTo(0));
        Assert.That(s.Pool.FreeCount + s.Pool.CachedCount, Is.EqualTo(s.Pool.Capacity));
        s.Pool.EvictAllCached();
        Assert.That(s.Pool.FreeCount, Is.EqualTo(s.Pool.Capacity));
        s.Validate();
    }

    [Test]
    public void StressRunsDoMoveBlocks()
    {
        // The randomized runs above must exercise the disk tier, not just tolerate it.
        long moves = 0;
        for (int seed = 0; seed < 5; seed++)
        {
            var rng = new Random(77 + seed);
            var s = new Scheduler(new SchedulerOptions { BlockCount = 6, DiskBlockCount = 200, BlockSize = 2, MaxTokensPerStep = 20, MaxRunningRequests = 6 });
            var ex = new FakeExecutor(s.Pool, 300);
            var prompts = Enumerable.Range(0, 5).Select(_ => Tokens(rng, rng.Next(5, 30), 300)).ToArray();
            for (int i = 0; i < prompts.Length; i++) s.AddRequest(new Request(i, prompts[i], 20));
            Driver.Run(s, ex, onPlan: p => AssertWritesStayInRam(p, s.Pool, 2));
            for (int i = 0; i < prompts.Length; i++)
                Assert.That(s.GetRequest(i).OutputTokens, Is.EqualTo(FakeModel.RunAlone(prompts[i], 20, 300)));
            Assert.That(s.Stats.Preemptions, Is.EqualTo(0), "6 RAM blocks for 5 requests and a large disk: no preemption");
            moves += s.Stats.BlocksMovedToDisk;
        }
        Assert.That(moves, Is.GreaterThan(100));
    }
}
