// Tests of the paged continuous-batching engine (InferenceEngine over Serving.ServingLoop) on stories260K with F32 KV:
// concurrent greedy requests give exactly their solo tokens; a shared 400-token prefix is taken from the prefix cache
// (only the new tokens are computed, from the engine's own stats) with identical output; a KV budget of 25 % of what 64
// requests need still completes all of them identically (preemption by recompute), also with half cancelled midway,
// and leaves no referenced block; bad requests fail alone. Expected tokens come from solo runs on a fresh engine.
using Engine.Runtime.Sampling;

namespace Engine.Runtime.Tests;

public class ServingTests
{
    private const int BlockSize = 16;
    private static readonly GenerationOptions Greedy = new() { Sampling = SamplingOptions.Greedy, StopAtEndOfGeneration = false };

    private static InferenceEngine Engine(int maxSequences = 64, long budgetBytes = 0) =>
        InferenceEngine.Load(SharedData.Get("reference/stories260K/stories260K.gguf"), new EngineOptions
        {
            Threads = 2, MaxConcurrentSequences = maxSequences, KvBudgetBytes = budgetBytes, BlockSize = BlockSize,
        });

    /// <summary>BOS + random tokens (3..511), distinct per seed.</summary>
    private static int[] Prompt(int seed, int length)
    {
        var rng = new Random(seed);
        return [1, .. Enumerable.Range(0, length - 1).Select(_ => rng.Next(3, 512))];
    }

    private static async Task<int[]> Ids(InferenceEngine e, int[] prompt, int maxTokens, CancellationToken ct = default) =>
        (await e.GenerateTextAsync(e.GenerateAsync(prompt, Greedy with { MaxTokens = maxTokens }, ct))).TokenIds;

    private static async Task<int[][]> Solo(int[][] prompts, int[] maxTokens)
    {
        using var e = Engine();
        var result = new int[prompts.Length][];
        for (int i = 0; i < prompts.Length; i++) result[i] = await Ids(e, prompts[i], maxTokens[i]);
        return result;
    }

    private static void AssertPoolIdle(InferenceEngine e)
    {
        e.ValidateKvPool();
        var s = e.Stats!;
        Assert.Multiple(() =>
        {
            Assert.That(s.BlocksInUse, Is.EqualTo(0), "no referenced block after all requests ended");
            Assert.That(s.Running + s.Waiting, Is.EqualTo(0));
            Assert.That(s.BlocksFree + s.BlocksCached, Is.EqualTo(s.BlockCount));
        });
        e.EvictPrefixCache();
        Assert.That(e.Stats!.BlocksFree, Is.EqualTo(e.Stats!.BlockCount), "completely free once the prefix cache is dropped");
    }

    [Test]
    public async Task SixteenConcurrentGreedyRequestsEqualTheirSoloRuns()
    {
        var prompts = Enumerable.Range(0, 16).Select(i => Prompt(100 + i, 5 + 3 * i)).ToArray();
        var maxTokens = Enumerable.Range(0, 16).Select(i => 20 + i).ToArray();
        var solo = await Solo(prompts, maxTokens);

        using var e = Engine(maxSequences: 16);
        var got = await EngineBurst.Run(e, 16, i => Ids(e, prompts[i], maxTokens[i]));
        for (int i = 0; i < 16; i++) Assert.That(got[i], Is.EqualTo(solo[i]), $"request {i}");
        var s = e.Stats!;
        int fed = prompts.Sum(p => p.Length) + maxTokens.Sum() - 16;   // the last sampled token is never fed
        Assert.That(s.TokensScheduled, Is.EqualTo(fed), "distinct random prompts: nothing reused, nothing recomputed");
        // How many requests overlap depends on thread timing; that several share one forward batch does not.
        Assert.That(s.MaxRequestsPerStep, Is.EqualTo(16), "all 16 queued requests share a step");
        AssertPoolIdle(e);
    }

    [Test]
    public async Task PerRequestSamplingOptionsAndStopStringsHoldUnderBatching()
    {
        var prompts = Enumerable.Range(0, 6).Select(i => Prompt(300 + i, 6 + i)).ToArray();
        GenerationOptions Options(int i) => new()
        {
            MaxTokens = 30, StopAtEndOfGeneration = false,
            Sampling = i % 2 == 0 ? SamplingOptions.Greedy : new SamplingOptions { Temperature = 0.5f + 0.2f * i, Seed = (ulong)(77 + i), TopK = 20 + i },
            StopStrings = i == 4 ? ["the"] : [],
        };
        async Task<(string, int[])> One(InferenceEngine e, int i)
        {
            var (text, ids, _) = await e.GenerateTextAsync(e.GenerateAsync(prompts[i], Options(i)));
            return (text, ids);
        }
        using var soloEngine = Engine();
        var solo = new List<(string, int[])>();
        for (int i = 0; i < prompts.Length; i++) solo.Add(await One(soloEngine, i));
        using var e = Engine();
        var got = await Task.WhenAll(Enumerable.Range(0, prompts.Length).Select(i => Task.Run(() => One(e, i))));
        for (int i = 0; i < prompts.Length; i++)
        {
            Assert.That(got[i].Item2, Is.EqualTo(solo[i].Item2), $"request {i} ids");
            Assert.That(got[i].Item1, Is.EqualTo(solo[i].Item1), $"request {i} text");
        }
    }

    [Test]
    public async Task SharedFourHundredTokenPrefixComputesOnlyTheNewTokens()
    {
        var prefix = Prompt(7, 400);
        int[] first = [.. prefix, 11, 12, 13, 14, 15];
        int[] second = [.. prefix, 21, 22, 23, 24, 25, 26, 27];
        const int n = 30;
        using var fresh = Engine();
        var expected = await Ids(fresh, second, n);

        using var e = Engine();
        await Ids(e, first, n);
        long before = e.Stats!.TokensScheduled;
        var (_, ids, usage) = await e.GenerateTextAsync(e.GenerateAsync(second, Greedy with { MaxTokens = n }));
        long computed = e.Stats!.TokensScheduled - before;
        Assert.Multiple(() =>
        {
            Assert.That(ids, Is.EqualTo(expected));
            Assert.That(usage.ReusedPromptTokens, Is.EqualTo(400), "25 whole blocks of the shared prefix");
            Assert.That(usage.Serving!.PrefixHitTokens, Is.EqualTo(400));
            Assert.That(usage.Serving.TokensComputed, Is.EqualTo(7 + n - 1), "7 new prompt tokens + the fed-back generated tokens");
            Assert.That(computed, Is.EqualTo(7 + n - 1));
        });
    }

    private static (int[][] Prompts, int[] MaxTokens, int NeededBlocks) SixtyFour()
    {
        var prompts = Enumerable.Range(0, 64).Select(i => Prompt(1000 + i, 8 + i % 29)).ToArray();
        var maxTokens = Enumerable.Range(0, 64).Select(i => 16 + i % 13).ToArray();
        int blocks = prompts.Select((p, i) => (p.Length + maxTokens[i] - 1 + BlockSize - 1) / BlockSize).Sum();
        return (prompts, maxTokens, blocks);
    }

    private static long BudgetBytes(InferenceEngine e, int blocks) =>
        (long)blocks * BlockSize * 2 * e.Config.LayerCount * e.Config.KvDim * sizeof(float);

    private static long BudgetBytes(int blocks)
    {
        using var probe = Engine(1);
        return BudgetBytes(probe, blocks);
    }

    [Test]
    public async Task QuarterBudgetCompletesAllSixtyFourIdentically()
    {
        var (prompts, maxTokens, needed) = SixtyFour();
        using var unconstrained = Engine();
        var expected = await Task.WhenAll(prompts.Select((p, i) => Task.Run(() => Ids(unconstrained, p, maxTokens[i]))));
        Assert.That(unconstrained.Stats!.Preemptions, Is.EqualTo(0));

        using var e = Engine(budgetBytes: BudgetBytes(unconstrained, needed / 4));
        Assert.That(e.Stats!.BlockCount, Is.EqualTo(needed / 4));
        var got = await EngineBurst.Run(e, 64, i => Ids(e, prompts[i], maxTokens[i]));
        for (int i = 0; i < 64; i++) Assert.That(got[i], Is.EqualTo(expected[i]), $"request {i}");
        TestContext.Out.WriteLine($"quarter budget: {e.Stats}");
        Assert.That(e.Stats!.Preemptions, Is.GreaterThan(0), "the quarter budget really forces preemption (recompute)");
        AssertPoolIdle(e);
    }

    [Test]
    public async Task QuarterBudgetWithHalfCancelledMidway()
    {
        var (prompts, maxTokens, needed) = SixtyFour();
        var expected = await Solo(prompts, maxTokens);
        // The cancelled half asks for 200 tokens. The engine never waits for slow consumers, so the cancel point is
        // made deterministic with the serving gate: after a few steps the loop is held, every odd request is cancelled
        // (none can have finished: it needs ≥ 200 steps), then the loop resumes with the even half.
        for (int i = 1; i < 64; i += 2) maxTokens[i] = 200;
        using var e = Engine(budgetBytes: BudgetBytes(needed / 4));
        var cancels = Enumerable.Range(0, 64).Select(_ => new CancellationTokenSource()).ToArray();
        var gate = e.PauseServing();
        var tasks = Enumerable.Range(0, 64).Select(i => Task.Run(async () =>
        {
            var p = prompts[i];
            if (i % 2 == 0) return await Ids(e, p, maxTokens[i]);
            var ids = new List<int>();
            try
            {
                await foreach (var c in e.GenerateAsync(p, Greedy with { MaxTokens = maxTokens[i] }, cancels[i].Token))
                    ids.AddRange(c.TokenIds);
                Assert.Fail($"request {i} was not cancelled");
            }
            catch (OperationCanceledException) { }
            Assert.That(ids, Is.EqualTo(expected[i][..Math.Min(ids.Count, expected[i].Length)]), $"cancelled request {i}: tokens before the cancel");
            Assert.That(ids, Has.Count.LessThan(200), $"request {i} was cancelled midway");
            return (int[]?)null;
        })).ToArray();
        var sw = System.Diagnostics.Stopwatch.StartNew();
        while (e.Stats!.Waiting + e.Stats!.Running < 64 && !tasks.Any(t => t.IsFaulted) && sw.Elapsed < TimeSpan.FromSeconds(30))
            await Task.Delay(1);
        gate.Dispose();
        while (e.Stats!.Steps < 3 && !tasks.Any(t => t.IsCompleted) && sw.Elapsed < TimeSpan.FromSeconds(30)) Thread.SpinWait(50);
        using (e.PauseServing())
            for (int i = 1; i < 64; i += 2) cancels[i].Cancel();
        var got = await Task.WhenAll(tasks);
        for (int i = 0; i < 64; i += 2) Assert.That(got[i], Is.EqualTo(expected[i]), $"request {i}");
        var st = e.Stats!;
        Assert.That(st.Cancelled, Is.EqualTo(32), "every odd request was cancelled while waiting or running");
        Assert.That(st.Finished, Is.EqualTo(32), "every even request finished");
        foreach (var c in cancels) c.Dispose();
        AssertPoolIdle(e);
    }

    [Test]
    public async Task BadRequestsFailAloneWhileOthersContinue()
    {
        var prompts = Enumerable.Range(0, 4).Select(i => Prompt(50 + i, 10 + i)).ToArray();
        var maxTokens = new[] { 40, 40, 40, 40 };
        var expected = await Solo(prompts, maxTokens);

        // A pool of 10 blocks = 160 tokens: enough for each good request, far less than the context (512).
        using var e = Engine(budgetBytes: BudgetBytes(10));
        var tasks = prompts.Select((p, i) => Task.Run(() => Ids(e, p, maxTokens[i]))).ToArray();
        var tooLongForContext = Prompt(9, e.ContextLength + 5);
        var tooLongForBudget = Prompt(9, 200);
        var badToken = new[] { 1, 5, 99999 };
        Assert.Multiple(() =>
        {
            var ctx = Assert.Throws<PromptTooLongException>(() => e.GenerateAsync(tooLongForContext, Greedy));
            Assert.That(ctx!.Message, Does.Contain("context"));
            var budget = Assert.Throws<KvBudgetExceededException>(() => e.GenerateAsync(tooLongForBudget, Greedy));
            Assert.That(budget!.Message, Does.Contain("KV budget holds 160 tokens"));
            Assert.Throws<ArgumentOutOfRangeException>(() => e.GenerateAsync(badToken, Greedy));
        });
        var got = await Task.WhenAll(tasks);
        for (int i = 0; i < 4; i++) Assert.That(got[i], Is.EqualTo(expected[i]), $"request {i}");
        AssertPoolIdle(e);
    }
}
