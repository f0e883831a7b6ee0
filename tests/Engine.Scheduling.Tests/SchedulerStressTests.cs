// Owns: load tests of the Scheduler with the fake model: 64 requests in a pool a quarter of their joint need,
// cancellations midway, and a randomized property test over arrivals, cancellations, priorities and budgets.
// Properties checked: every non-cancelled request finishes with exactly its alone-output (FakeModel.RunAlone);
// invariants hold after every step (ref counts match tables, free + used + cached == capacity, waiting requests
// hold no blocks); the pool is entirely unreferenced at the end.
using Engine.Scheduling;

namespace Engine.Scheduling.Tests;

public class SchedulerStressTests
{
    private sealed record Spec(long Id, int[] Prompt, int MaxNew, int Priority, int Arrival, int CancelAt);

    private static int BlocksFor(int tokens, int blockSize) => (tokens + blockSize - 1) / blockSize;

    private static List<Spec> MakeSpecs(Random rng, int count, int vocab, int minPrompt, int maxPrompt, int minNew, int maxNew, int[]? sharedPrefix = null)
    {
        var specs = new List<Spec>();
        for (int i = 0; i < count; i++)
        {
            int len = rng.Next(minPrompt, maxPrompt + 1);
            var prompt = Enumerable.Range(0, len).Select(_ => rng.Next(1, vocab)).ToArray();
            if (sharedPrefix != null && rng.Next(2) == 0) prompt = sharedPrefix.Concat(prompt).ToArray();
            specs.Add(new Spec(i, prompt, rng.Next(minNew, maxNew + 1), 0, 0, -1));
        }
        return specs;
    }

    private static void AssertClean(Scheduler s)
    {
        Assert.That(s.Pool.UsedCount, Is.EqualTo(0), "no block is referenced at the end");
        for (int b = 0; b < s.Pool.Capacity; b++) Assert.That(s.Pool.RefCount(b), Is.EqualTo(0));
        Assert.That(s.Pool.FreeCount + s.Pool.CachedCount, Is.EqualTo(s.Pool.Capacity));
        s.Pool.EvictAllCached();
        Assert.That(s.Pool.FreeCount, Is.EqualTo(s.Pool.Capacity));
        s.Validate();
    }

    [TestCase(false)]
    [TestCase(true)]
    public void SixtyFourRequests_InAQuarterOfTheirMemory_AllMatchTheirAloneOutputs(bool cancelHalf)
    {
        const int vocab = 500, blockSize = 16;
        var rng = new Random(cancelHalf ? 11 : 10);
        var specs = MakeSpecs(rng, 64, vocab, 20, 120, 10, 80);
        int joint = specs.Sum(x => BlocksFor(x.Prompt.Length + x.MaxNew - 1, blockSize));
        int single = specs.Max(x => BlocksFor(x.Prompt.Length + x.MaxNew - 1, blockSize));
        int blocks = Math.Max(joint / 4, single);
        var s = new Scheduler(new SchedulerOptions { BlockCount = blocks, BlockSize = blockSize, MaxTokensPerStep = 256, MaxRunningRequests = 64 });
        var ex = new FakeExecutor(s.Pool, vocab);
        foreach (var x in specs) s.AddRequest(new Request(x.Id, x.Prompt, x.MaxNew));

        var cancelled = new HashSet<long>();
        Driver.Run(s, ex, step =>
        {
            if (cancelHalf && step == 25)
                foreach (var x in specs.Where(x => x.Id % 2 == 1))
                    if (s.Cancel(x.Id)) cancelled.Add(x.Id);
            return cancelHalf && step < 25;
        });

        Assert.That(s.Stats.Preemptions, Is.GreaterThan(0), "the pool is small enough to force preemption");
        if (cancelHalf) Assert.That(cancelled, Has.Count.GreaterThan(16), "most odd requests were still alive at step 25");
        foreach (var x in specs)
        {
            var r = s.GetRequest(x.Id);
            if (cancelled.Contains(x.Id))
            {
                Assert.That(r.Status, Is.EqualTo(RequestStatus.Cancelled));
                continue;
            }
            Assert.That(r.Status, Is.EqualTo(RequestStatus.Finished), $"request {x.Id}");
            Assert.That(r.OutputTokens, Is.EqualTo(FakeModel.RunAlone(x.Prompt, x.MaxNew, vocab)), $"request {x.Id} (preempted {r.PreemptionCount}×)");
        }
        TestContext.Out.WriteLine($"blocks {blocks} (joint need {joint}), steps {s.Stats.Steps}, preemptions {s.Stats.Preemptions}, prefix hits {s.Stats.PrefixHitTokens}, computed {s.Stats.ComputedTokens}");
        AssertClean(s);
    }

    [Test]
    public void RandomizedArrivalsCancellationsAndBudgets_KeepInvariants_AndExactOutputs([Range(0, 39)] int seed)
    {
        var rng = new Random(1000 + seed);
        int vocab = rng.Next(0, 3) == 0 ? 7 : 300; // small vocab: frequent stop tokens and repeated prefixes
        int blockSize = new[] { 1, 2, 3, 4, 8, 16 }[rng.Next(6)];
        int[]? shared = rng.Next(2) == 0 ? Enumerable.Range(0, rng.Next(1, 60)).Select(_ => rng.Next(1, vocab)).ToArray() : null;
        int count = rng.Next(1, 30);
        var baseSpecs = MakeSpecs(rng, count, vocab, 1, 70, 1, 40, shared);
        var specs = baseSpecs.Select(x => x with
        {
            Priority = rng.Next(3),
            Arrival = rng.Next(0, 40),
            CancelAt = rng.Next(5) == 0 ? rng.Next(0, 60) : -1,
        }).ToList();
        int single = specs.Max(x => BlocksFor(x.Prompt.Length + x.MaxNew - 1, blockSize));
        int joint = specs.Sum(x => BlocksFor(x.Prompt.Length + x.MaxNew - 1, blockSize));
        var options = new SchedulerOptions
        {
            BlockSize = blockSize,
            BlockCount = rng.Next(single, Math.Max(single, joint / 2) + 1),
            MaxTokensPerStep = rng.Next(1, 100),
            MaxRunningRequests = rng.Next(1, 12),
            MaxModelLength = 200,
            EnablePrefixCaching = rng.Next(4) != 0,
        };
        var s = new Scheduler(options);
        static int Salt(long id) => (int)id * 7919;
        var ex = new FakeExecutor(s.Pool, vocab, Salt);
        int[] stops = vocab == 7 ? [0] : [];
        // An oversize request arrives too and must be rejected alone.
        var tooBig = new Request(-1, Enumerable.Repeat(1, 150).ToArray(), 60);
        Assert.Throws<RequestRejectedException>(() => s.AddRequest(tooBig));

        var cancelled = new HashSet<long>();
        var forks = new List<(long Child, int[] Prompt, int[] SoFar, int MaxNew)>(); // branches and their history at fork
        int lastArrival = specs.Max(x => x.Arrival), lastCancel = specs.Max(x => x.CancelAt);
        int copies = 0;
        Driver.Run(s, ex, onPlan: p => copies += p.Copies.Count, beforeStep: step =>
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
            // Checked every step by Driver: Validate (ref counts == table entries, free + used + cached == capacity).
            return step < Math.Max(lastArrival, lastCancel);
        });

        foreach (var x in specs)
        {
            var r = s.GetRequest(x.Id);
            if (cancelled.Contains(x.Id))
            {
                Assert.That(r.Status, Is.EqualTo(RequestStatus.Cancelled));
                continue;
            }
            Assert.That(r.Status, Is.EqualTo(RequestStatus.Finished), $"seed {seed}: request {x.Id}");
            Assert.That(r.OutputTokens, Is.EqualTo(FakeModel.RunAlone(x.Prompt, x.MaxNew, vocab, stops, Salt(x.Id))),
                $"seed {seed}: request {x.Id}, B={blockSize}, blocks={options.BlockCount}, budget={options.MaxTokensPerStep}, preempted {r.PreemptionCount}×");
        }
        foreach (var f in forks)
        {
            var r = s.GetRequest(f.Child);
            var expected = f.SoFar.Concat(FakeModel.RunAlone(f.Prompt.Concat(f.SoFar).ToArray(), f.MaxNew - f.SoFar.Length, vocab, stops, Salt(f.Child))).ToArray();
            Assert.That(r.Status, Is.EqualTo(RequestStatus.Finished), $"seed {seed}: fork {f.Child}");
            Assert.That(r.OutputTokens, Is.EqualTo(expected), $"seed {seed}: fork {f.Child}");
        }
        TestContext.Out.WriteLine($"seed {seed}: {specs.Count} requests, {cancelled.Count} cancelled, {forks.Count} forks, {copies} copy-on-write copies, " +
            $"{s.Stats.Preemptions} preemptions, {s.Stats.PrefixHitTokens} prefix-hit tokens, {s.Stats.Steps} steps");
        AssertClean(s);
    }
}
