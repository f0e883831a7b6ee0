// Owns: behavioural tests of the Scheduler with the fake model: chunked prefill splits, decode during a long
// prefill, admission order, preemption order, prefix reuse, rejection, step protocol errors.
// Expected splits/orders are derived by hand from budgets and block sizes; outputs are compared with
// FakeModel.RunAlone (the request run alone, unpaged).
using Engine.Memory.Paged;
using Engine.Scheduling;

namespace Engine.Scheduling.Tests;

public class SchedulerTests
{
    private const int Vocab = 1000; // no stop tokens unless a test sets them

    private static int[] Prompt(int seed, int length)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, length).Select(_ => rng.Next(1, Vocab)).ToArray();
    }

    private static (Scheduler, FakeExecutor) Make(SchedulerOptions o)
    {
        var s = new Scheduler(o);
        return (s, new FakeExecutor(s.Pool, Vocab));
    }

    [Test]
    public void ChunkedPrefill_SplitsUnderTheTokenBudget()
    {
        var (s, ex) = Make(new SchedulerOptions { BlockCount = 64, BlockSize = 16, MaxTokensPerStep = 64 });
        var prompt = Prompt(1, 200);
        s.AddRequest(new Request(7, prompt, 3));
        var plans = Driver.Run(s, ex);
        var chunks = plans.Select(p => (p.Requests.Single().StartPosition, p.Requests.Single().TokenCount, p.Requests.Single().SamplesToken)).ToArray();
        // 200 = 64 + 64 + 64 + 8 (the last chunk samples the first token), then 2 decode steps.
        Assert.That(chunks, Is.EqualTo(new[] { (0, 64, false), (64, 64, false), (128, 64, false), (192, 8, true), (200, 1, true), (201, 1, true) }));
        Assert.That(s.GetRequest(7).OutputTokens, Is.EqualTo(FakeModel.RunAlone(prompt, 3, Vocab)));
        Assert.That(s.GetRequest(7).FinishReason, Is.EqualTo(FinishReason.Length));
    }

    [Test]
    public void Decode_RunsEveryStep_WhileALongPrefillProceeds()
    {
        var (s, ex) = Make(new SchedulerOptions { BlockCount = 64, BlockSize = 16, MaxTokensPerStep = 32 });
        var a = Prompt(2, 10);
        var b = Prompt(3, 300);
        s.AddRequest(new Request(1, a, 40));
        var plans = Driver.Run(s, ex, step =>
        {
            // B is more important than A: only the decode-first rule keeps A from starving behind B's chunks.
            if (step == 2) s.AddRequest(new Request(2, b, 5, priority: 1));
            return step < 2;
        });
        // Steps 0-1: A alone. From step 2 on: A decodes first (1 token), B gets the remaining 31 of the budget,
        // until its 300-token prompt is done: 9 chunks of 31 + 21.
        var bChunks = new List<int>();
        foreach (var plan in plans.Skip(2))
        {
            var ra = plan.Requests.FirstOrDefault(r => r.RequestId == 1);
            var rb = plan.Requests.FirstOrDefault(r => r.RequestId == 2);
            if (rb == null || !rb.IsPartialPrefill && rb.StartPosition >= 300) break;
            Assert.That(ra, Is.Not.Null, $"A must decode in step {plan.StepIndex}");
            Assert.That(plan.Requests[0].RequestId, Is.EqualTo(1), "decode is scheduled before prefill chunks");
            Assert.That(ra!.TokenCount, Is.EqualTo(1));
            bChunks.Add(rb.TokenCount);
        }
        Assert.That(bChunks, Is.EqualTo(Enumerable.Repeat(31, 9).Append(21)));
        Assert.That(s.GetRequest(1).OutputTokens, Is.EqualTo(FakeModel.RunAlone(a, 40, Vocab)));
        Assert.That(s.GetRequest(2).OutputTokens, Is.EqualTo(FakeModel.RunAlone(b, 5, Vocab)));
    }

    [Test]
    public void Admission_IsFifoWithinPriority_HigherPriorityFirst()
    {
        var (s, ex) = Make(new SchedulerOptions { BlockCount = 64, BlockSize = 4, MaxRunningRequests = 1 });
        s.AddRequest(new Request(1, Prompt(1, 5), 2, priority: 0));
        s.AddRequest(new Request(2, Prompt(2, 5), 2, priority: 0));
        s.AddRequest(new Request(3, Prompt(3, 5), 2, priority: 9));
        s.AddRequest(new Request(4, Prompt(4, 5), 2, priority: 9));
        var order = new List<long>();
        Driver.Run(s, ex, onPlan: p => { foreach (var r in p.Requests) if (!order.Contains(r.RequestId)) order.Add(r.RequestId); });
        Assert.That(order, Is.EqualTo(new long[] { 3, 4, 1, 2 }));
    }

    [Test]
    public void Preemption_TakesLowestPriorityThenNewest_AndResumesExactly()
    {
        // Block size 4, pool 6 blocks. Three requests with 4-token prompts: after 8 positions each holds 2 blocks
        // (6 in all); position 8 needs a third block each. Importance: R1 (priority 5) > R0 > R2 (same priority,
        // later). Expected: R2 is preempted first, then R0 (when R1 needs its 4th block); R1 never.
        var (s, ex) = Make(new SchedulerOptions { BlockCount = 6, BlockSize = 4, MaxTokensPerStep = 64 });
        var prompts = new[] { Prompt(10, 4), Prompt(11, 4), Prompt(12, 4) };
        s.AddRequest(new Request(0, prompts[0], 12, priority: 0));
        s.AddRequest(new Request(1, prompts[1], 16, priority: 5));
        s.AddRequest(new Request(2, prompts[2], 12, priority: 0));
        var preempted = new List<long>();
        Driver.Run(s, ex, onPlan: p => preempted.AddRange(p.PreemptedIds));
        Assert.That(preempted.Take(2), Is.EqualTo(new long[] { 2, 0 }));
        Assert.That(preempted, Does.Not.Contain(1L));
        Assert.That(s.GetRequest(1).PreemptionCount, Is.EqualTo(0));
        for (int i = 0; i < 3; i++)
            Assert.That(s.GetRequest(i).OutputTokens, Is.EqualTo(FakeModel.RunAlone(prompts[i], i == 1 ? 16 : 12, Vocab)), $"request {i}");
        Assert.That(s.Pool.UsedCount, Is.EqualTo(0));
    }

    [Test]
    public void PrefixSharing_400TokenPrefix_ComputesOnlyNewTokens()
    {
        var (s, ex) = Make(new SchedulerOptions { BlockCount = 128, BlockSize = 16, MaxTokensPerStep = 128 });
        var prefix = Prompt(5, 400); // 25 full blocks
        var first = prefix.Concat(Prompt(6, 9)).ToArray();
        var second = prefix.Concat(Prompt(7, 7)).ToArray();
        s.AddRequest(new Request(1, first, 6));
        Driver.Run(s, ex);
        long computedBefore = s.Stats.ComputedTokens;
        Assert.That(computedBefore, Is.EqualTo(409 + 5), "alone: the whole prompt plus one position per fed-back token");

        s.AddRequest(new Request(2, second, 6));
        Driver.Run(s, ex);
        Assert.Multiple(() =>
        {
            Assert.That(s.GetRequest(2).PrefixHitTokens, Is.EqualTo(400));
            Assert.That(s.Stats.PrefixHitTokens, Is.EqualTo(400));
            Assert.That(s.Stats.ComputedTokens - computedBefore, Is.EqualTo(7 + 5), "only the 7 new prompt tokens and 5 fed-back tokens");
            Assert.That(s.GetRequest(2).OutputTokens, Is.EqualTo(FakeModel.RunAlone(second, 6, Vocab)));
        });

        // The same 400 tokens as the whole prompt: the last prompt token's block is never reused (≥ 1 token computed).
        s.AddRequest(new Request(3, prefix, 2));
        Driver.Run(s, ex);
        Assert.That(s.GetRequest(3).PrefixHitTokens, Is.EqualTo(384));
        Assert.That(s.GetRequest(3).OutputTokens, Is.EqualTo(FakeModel.RunAlone(prefix, 2, Vocab)));
    }

    [Test]
    public void PrefixSharing_WithConcurrentRequests_AndCollidingHashes_StaysCorrect()
    {
        foreach (var hash in new BlockHashFunction?[] { null, (_, _) => 1234UL })
        {
            var (s, ex) = Make(new SchedulerOptions { BlockCount = 40, BlockSize = 8, MaxTokensPerStep = 48, HashFunction = hash });
            var system = Prompt(1, 37);
            // 12 prompts share a 37-token system prefix; 4 more share nothing (with the colliding hash their first
            // blocks collide with the system prompt's and must miss).
            var prompts = Enumerable.Range(0, 16).Select(i => i < 12 ? system.Concat(Prompt(100 + i, 3 + i)).ToArray() : Prompt(200 + i, 20 + i)).ToArray();
            for (int i = 0; i < prompts.Length; i++) s.AddRequest(new Request(i, prompts[i], 10 + i));
            Driver.Run(s, ex);
            for (int i = 0; i < prompts.Length; i++)
                Assert.That(s.GetRequest(i).OutputTokens, Is.EqualTo(FakeModel.RunAlone(prompts[i], 10 + i, Vocab)), $"request {i}, hash {(hash == null ? "default" : "colliding")}");
            if (hash == null) Assert.That(s.Stats.PrefixHitTokens, Is.GreaterThan(0));
            Assert.That(s.Pool.UsedCount, Is.EqualTo(0));
        }
    }

    [Test]
    public void TooBigRequests_AreRejectedAlone_OthersUnaffected()
    {
        // Pool: 10 blocks of 16 = 160 slots. Context 200.
        var (s, ex) = Make(new SchedulerOptions { BlockCount = 10, BlockSize = 16, MaxModelLength = 200, MaxTokensPerStep = 64 });
        var ok1 = Prompt(1, 150);
        s.AddRequest(new Request(1, ok1, 11)); // 161 total, 160 slots: exactly the whole pool
        var e1 = Assert.Throws<RequestRejectedException>(() => s.AddRequest(new Request(2, Prompt(2, 150), 12)))!;
        var e2 = Assert.Throws<RequestRejectedException>(() => s.AddRequest(new Request(3, Prompt(3, 150), 51)))!;
        var e3 = Assert.Throws<RequestRejectedException>(() => s.AddRequest(new Request(4, Array.Empty<int>(), 5)))!;
        var e4 = Assert.Throws<RequestRejectedException>(() => s.AddRequest(new Request(1, Prompt(1, 5), 5)))!;
        Assert.That(s.TryAddRequest(new Request(5, Prompt(5, 3), 0), out var e5), Is.False);
        Assert.Multiple(() =>
        {
            Assert.That(e1.Reason, Is.EqualTo(RejectionReason.ExceedsPool));
            Assert.That(e1.RequestId, Is.EqualTo(2));
            Assert.That(e1.Message, Does.Contain("11 KV blocks"));
            Assert.That(e2.Reason, Is.EqualTo(RejectionReason.ExceedsContextLength));
            Assert.That(e3.Reason, Is.EqualTo(RejectionReason.EmptyPrompt));
            Assert.That(e4.Reason, Is.EqualTo(RejectionReason.DuplicateId));
            Assert.That(e5!.Reason, Is.EqualTo(RejectionReason.InvalidMaxNewTokens));
            Assert.That(s.Stats.Rejected, Is.EqualTo(5));
        });
        var ok2 = Prompt(6, 20);
        s.AddRequest(new Request(6, ok2, 30));
        Driver.Run(s, ex);
        Assert.That(s.GetRequest(1).OutputTokens, Is.EqualTo(FakeModel.RunAlone(ok1, 11, Vocab)));
        Assert.That(s.GetRequest(6).OutputTokens, Is.EqualTo(FakeModel.RunAlone(ok2, 30, Vocab)));
        Assert.That(s.TryGetRequest(2, out _), Is.False);
    }

    [Test]
    public void StopToken_FinishesEarly_AndFreesBlocks()
    {
        // Vocab 5 with stop token 0: some requests stop early; each must match the alone run (which stops too).
        var s = new Scheduler(new SchedulerOptions { BlockCount = 50, BlockSize = 4, MaxTokensPerStep = 16 });
        var ex = new FakeExecutor(s.Pool, 5);
        var prompts = Enumerable.Range(0, 10).Select(i => Prompt(i, 6).Select(t => t % 5).ToArray()).ToArray();
        for (int i = 0; i < 10; i++) s.AddRequest(new Request(i, prompts[i], 30, stopTokenIds: [0]));
        Driver.Run(s, ex);
        int stopped = 0;
        for (int i = 0; i < 10; i++)
        {
            var r = s.GetRequest(i);
            Assert.That(r.OutputTokens, Is.EqualTo(FakeModel.RunAlone(prompts[i], 30, 5, [0])));
            if (r.FinishReason == FinishReason.Stop) { stopped++; Assert.That(r.OutputTokens[^1], Is.EqualTo(0)); }
        }
        Assert.That(stopped, Is.GreaterThan(0), "with vocab 5 and 30 tokens some request must hit the stop token");
        Assert.That(s.Pool.UsedCount, Is.EqualTo(0));
    }

    [Test]
    public void FinishedAndCancelledIds_AreReportedInTheNextPlan()
    {
        var (s, ex) = Make(new SchedulerOptions { BlockCount = 20, BlockSize = 4 });
        s.AddRequest(new Request(1, Prompt(1, 3), 1));
        s.AddRequest(new Request(2, Prompt(2, 3), 5));
        s.AddRequest(new Request(3, Prompt(3, 3), 5));
        var p0 = s.Step();
        var results0 = ex.Execute(p0);
        Assert.That(s.Cancel(3), Is.True, "cancel while its step is in flight");
        Assert.That(s.Pool.UsedCount, Is.EqualTo(2), "its blocks are freed at once");
        s.OnStepCompleted(results0); // its result is ignored
        Assert.That(s.GetRequest(1).Status, Is.EqualTo(RequestStatus.Finished));
        var p1 = s.Step();
        Assert.Multiple(() =>
        {
            Assert.That(p1.FinishedIds, Is.EqualTo(new long[] { 1 }));
            Assert.That(p1.CancelledIds, Is.EqualTo(new long[] { 3 }));
            Assert.That(p1.Requests.Select(r => r.RequestId), Is.EqualTo(new long[] { 2 }));
            Assert.That(s.GetRequest(3).Status, Is.EqualTo(RequestStatus.Cancelled));
            Assert.That(s.GetRequest(3).OutputTokens, Is.Empty);
            Assert.That(s.Cancel(3), Is.False);
            Assert.That(s.Cancel(1), Is.False);
            Assert.That(s.Cancel(99), Is.False);
        });
        s.OnStepCompleted(ex.Execute(p1));
        Assert.That(s.Forget(1), Is.True);
        Assert.That(s.Forget(2), Is.False, "still running");
        s.AddRequest(new Request(1, Prompt(9, 3), 2)); // the id is free again
    }

    [Test]
    public void StepProtocol_MisuseThrows_WithoutCorruptingState()
    {
        var (s, ex) = Make(new SchedulerOptions { BlockCount = 20, BlockSize = 4 });
        s.AddRequest(new Request(1, Prompt(1, 3), 4));
        s.AddRequest(new Request(2, Prompt(2, 3), 4));
        var plan = s.Step();
        Assert.Throws<InvalidOperationException>(() => s.Step());
        var good = ex.Execute(plan);
        Assert.Throws<ArgumentException>(() => s.OnStepCompleted([good[0]]), "missing sampled token for request 2");
        Assert.Throws<ArgumentException>(() => s.OnStepCompleted([.. good, new StepResult(77, 1)]), "unknown request");
        Assert.Throws<ArgumentException>(() => s.OnStepCompleted([.. good, good[0]]), "duplicate result");
        s.OnStepCompleted(good);
        Assert.Throws<InvalidOperationException>(() => s.OnStepCompleted(good));
        Driver.Run(s, ex);
        Assert.That(s.GetRequest(1).OutputTokens, Is.EqualTo(FakeModel.RunAlone(Prompt(1, 3), 4, Vocab)));
        Assert.That(s.GetRequest(2).OutputTokens, Is.EqualTo(FakeModel.RunAlone(Prompt(2, 3), 4, Vocab)));
    }

    [Test]
    public void Fork_SharesBlocks_CopiesOnWrite_AndEachBranchMatchesItsAloneContinuation()
    {
        var s = new Scheduler(new SchedulerOptions { BlockCount = 64, BlockSize = 4, MaxTokensPerStep = 64 });
        static int Salt(long id) => (int)id * 7919; // each branch samples differently
        var ex = new FakeExecutor(s.Pool, Vocab, Salt);
        var prompt = Prompt(3, 9);
        s.AddRequest(new Request(1, prompt, 12));
        for (int i = 0; i < 3; i++) s.OnStepCompleted(ex.Execute(s.Step()));
        // 9 prompt + 3 sampled tokens; 11 positions computed → blocks [4][4][3 of 4].
        var sofar = s.GetRequest(1).OutputTokens;
        Assert.That(sofar, Has.Length.EqualTo(3));
        var parentBlocks = s.Blocks.Get(1).ToArray();
        Assert.That(parentBlocks, Has.Length.EqualTo(3));

        s.Fork(1, 2);
        s.Fork(1, 3, priority: 0);
        Assert.Multiple(() =>
        {
            Assert.That(s.Pool.UsedCount, Is.EqualTo(3), "forking copies nothing");
            Assert.That(parentBlocks.Select(b => s.Pool.RefCount(b)), Is.All.EqualTo(3));
            Assert.That(s.GetRequest(2).OutputTokens, Is.EqualTo(sofar));
            Assert.Throws<RequestRejectedException>(() => s.Fork(1, 3));
            Assert.Throws<InvalidOperationException>(() => s.Fork(42, 43));
        });

        var plan = s.Step();
        Assert.Throws<InvalidOperationException>(() => s.Fork(1, 4), "not while a step is in flight");
        // All three write position 11 into the shared partial block: the first two copy it, the last owns it.
        Assert.That(plan.Copies, Has.Count.EqualTo(2));
        Assert.That(plan.Copies.Select(c => c.SourceBlock), Is.All.EqualTo(parentBlocks[2]));
        Assert.That(plan.Copies.Select(c => c.TokenCount), Is.All.EqualTo(3));
        s.OnStepCompleted(ex.Execute(plan));
        Assert.That(s.Pool.RefCount(parentBlocks[0]), Is.EqualTo(3), "full blocks stay shared");
        Driver.Run(s, ex);

        Assert.That(s.GetRequest(1).OutputTokens, Is.EqualTo(FakeModel.RunAlone(prompt, 12, Vocab, salt: Salt(1))));
        foreach (long child in new long[] { 2, 3 })
        {
            var expected = sofar.Concat(FakeModel.RunAlone(prompt.Concat(sofar).ToArray(), 12 - 3, Vocab, salt: Salt(child))).ToArray();
            Assert.That(s.GetRequest(child).OutputTokens, Is.EqualTo(expected), $"branch {child}");
        }
        Assert.That(s.GetRequest(2).OutputTokens, Is.Not.EqualTo(s.GetRequest(3).OutputTokens), "branches diverge");
        Assert.That(s.Pool.UsedCount, Is.EqualTo(0));
    }

    [Test]
    public void ExternalFinish_EndsTheRequest()
    {
        var (s, ex) = Make(new SchedulerOptions { BlockCount = 20, BlockSize = 4 });
        s.AddRequest(new Request(1, Prompt(1, 3), 50));
        var plan = s.Step();
        var res = ex.Execute(plan)[0];
        s.OnStepCompleted([res with { Finished = true }]);
        var r = s.GetRequest(1);
        Assert.That(r.Status, Is.EqualTo(RequestStatus.Finished));
        Assert.That(r.FinishReason, Is.EqualTo(FinishReason.External));
        Assert.That(r.OutputTokens, Is.EqualTo(new[] { res.SampledToken!.Value }));
        Assert.That(s.Pool.UsedCount, Is.EqualTo(0));
    }
}
