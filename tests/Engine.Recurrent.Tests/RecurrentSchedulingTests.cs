// Tests: the continuous-batching Scheduler serving RWKV requests through RecurrentPlanExecutor — chunked prefill,
// interleaved decodes of several requests in one batch, queueing beyond the running cap, preemption by recompute
// (a tight block pool) — and every request's greedy output equals a solo argmax loop over the same model.
using Engine.Memory.Recurrent;
using Engine.Model;
using Engine.Runtime;
using Engine.Scheduling;

namespace Engine.Recurrent.Tests;

public class RecurrentSchedulingTests
{
    private static int[] Bytes(string s) => System.Text.Encoding.UTF8.GetBytes(s).Select(b => (int)b).ToArray();

    private static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }

    private static int[] Solo(RwkvModel model, int[] prompt, int n)
    {
        using var store = model.CreateStateStore(1, new RecurrentStoreOptions { CheckpointInterval = 0 });
        var logits = new float[256];
        model.Forward(ForwardBatch.ForSequence(prompt, 0), store, logits, false);
        var output = new List<int>();
        for (int i = 0; i < n; i++)
        {
            int t = ArgMax(logits);
            output.Add(t);
            model.Forward(ForwardBatch.ForSequence([t], prompt.Length + i), store, logits, false);
        }
        return output.ToArray();
    }

    [TestCase(64, 2, 512)]   // roomy pool: queueing beyond 2 running requests
    [TestCase(10, 3, 12)]     // tight pool + small steps: chunked prefill and preemption by recompute
    public void SchedulerServesRwkvRequests_OutputsEqualSoloRuns(int blockCount, int maxRunning, int tokensPerStep)
    {
        using var backend = RwkvFixtures.Backend("reference");
        using var model = RwkvFixtures.Load("tiny-rwkv-7v0-834K-FP32.bin", backend);
        var prompts = new[]
        {
            Bytes("Once upon a time, "), Bytes("Once upon a time, a robot"), Bytes("In the beginning"), Bytes("Hello"),
        };
        const int newTokens = 10;
        var scheduler = new Scheduler(new SchedulerOptions
        {
            BlockCount = blockCount, BlockSize = 4, MaxRunningRequests = maxRunning, MaxTokensPerStep = tokensPerStep,
            MaxModelLength = 64, EnablePrefixCaching = false,
        });
        using var store = model.CreateStateStore(maxRunning, new RecurrentStoreOptions { CheckpointInterval = 8 });
        var executor = new RecurrentPlanExecutor(model, store);
        for (int i = 0; i < prompts.Length; i++) scheduler.AddRequest(new Request(i, prompts[i], newTokens));

        int steps = 0;
        while (scheduler.HasUnfinishedRequests)
        {
            var plan = scheduler.Step();
            scheduler.OnStepCompleted(executor.Execute(plan, (_, logits) => ArgMax(logits)));
            Assert.That(++steps, Is.LessThan(1000), "scheduler must make progress");
        }
        Assert.That(executor.ActiveSlots, Is.LessThanOrEqualTo(maxRunning));
        for (int i = 0; i < prompts.Length; i++) executor.Release(i);
        Assert.Multiple(() =>
        {
            for (int i = 0; i < prompts.Length; i++)
                Assert.That(scheduler.GetRequest(i).OutputTokens, Is.EqualTo(Solo(model, prompts[i], newTokens)), $"request {i}");
            Assert.That(executor.ActiveSlots, Is.EqualTo(0), "all slots released");
            if (blockCount == 10)
            {
                Assert.That(scheduler.Stats.Preemptions, Is.GreaterThan(0), "the tight pool exercises preemption by recompute");
                Assert.That(executor.TokensReused, Is.GreaterThan(0), "resumed requests restart from checkpoints");
            }
        });
        TestContext.Out.WriteLine($"steps {steps}, preemptions {scheduler.Stats.Preemptions}, tokens reused from checkpoints {executor.TokensReused}");
    }
}
