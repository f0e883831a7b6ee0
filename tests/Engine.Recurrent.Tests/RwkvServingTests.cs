// Tests: RWKV requests served by the scheduler loop of InferenceEngine (one recurrent state slot per running request).
// Expected values come from the single-sequence path (EngineOptions.Paged = false: one request at a time, its own
// state store) — a separate executor — so batching, per-request sampling / stop strings and cancellation must not
// change any request's output. PauseServing makes the batching deterministic (every request queued before step 1).
using Engine.Runtime;
using Engine.Runtime.Sampling;

namespace Engine.Recurrent.Tests;

public class RwkvServingTests
{
    private static InferenceEngine Load(string file, bool paged, int maxSeq = 16) =>
        InferenceEngine.Load(SharedData.Get("models/rwkv/" + file),
            new EngineOptions { Threads = 2, Backend = "reference", Paged = paged, MaxConcurrentSequences = maxSeq });

    // Distinct first bytes: no prompt is a prefix of another, so nothing can be restored from a checkpoint.
    private static readonly string[] Prompts =
    [
        "Once upon a time", "The little robot", "A cat sat", "Why is the sky blue? Because", "In", "Hello, world! This is a longer prompt",
    ];

    private static GenerationOptions Greedy(int maxTokens) =>
        new() { Sampling = SamplingOptions.Greedy, StopAtEndOfGeneration = false, MaxTokens = maxTokens };

    [TestCase("tiny-rwkv-5v2-730K-FP32.bin")]
    [TestCase("tiny-rwkv-7v0-834K-FP32.bin")]
    public async Task ConcurrentGreedyRequests_EqualEachRunAlone_AndShareSteps(string file)
    {
        int n = Prompts.Length;
        int[] maxTokens = [.. Enumerable.Range(0, n).Select(i => 5 + 3 * i)];
        var solo = new int[n][];
        using (var single = Load(file, paged: false))
        {
            Assert.That(single.IsPaged, Is.False);
            for (int i = 0; i < n; i++) solo[i] = (await single.GenerateTextAsync(single.GenerateAsync(Prompts[i], Greedy(maxTokens[i])))).TokenIds;
        }

        using var e = Load(file, paged: true);
        Assert.That(e.IsPaged, Is.True, "RWKV engines are served by the scheduler loop by default");
        var got = await EngineBurst.Run(e, n, async i => (await e.GenerateTextAsync(e.GenerateAsync(Prompts[i], Greedy(maxTokens[i])))).TokenIds);
        for (int i = 0; i < n; i++)
        {
            Assert.That(got[i], Has.Length.EqualTo(maxTokens[i]), $"request {i} length");
            Assert.That(got[i], Is.EqualTo(solo[i]), $"request {i}");
        }
        var s = e.Stats!;
        Assert.Multiple(() =>
        {
            Assert.That(s.MaxRequestsPerStep, Is.EqualTo(n), "all queued requests share one forward batch");
            Assert.That(s.Finished, Is.EqualTo(n));
            Assert.That(s.Running + s.Waiting, Is.EqualTo(0));
            // Every prompt byte and every generated token except each request's last is fed exactly once.
            Assert.That(s.TokensScheduled, Is.EqualTo(Prompts.Sum(p => p.Length) + maxTokens.Sum() - n));
            // Steps run together: one prefill step, then one step per token of the longest request.
            Assert.That(s.Steps, Is.EqualTo(maxTokens.Max()));
        });
    }

    [Test]
    public async Task CancellingOneRequest_LeavesTheOthersUnchanged()
    {
        const string file = "tiny-rwkv-7v0-834K-FP32.bin";
        const int n = 4, max = 20, cancelled = 1;
        var solo = new int[n][];
        using (var single = Load(file, paged: false))
            for (int i = 0; i < n; i++) solo[i] = (await single.GenerateTextAsync(single.GenerateAsync(Prompts[i], Greedy(max)))).TokenIds;

        using var e = Load(file, paged: true);
        var got = await EngineBurst.Run(e, n, async i =>
        {
            using var cts = new CancellationTokenSource();
            var ids = new List<int>();
            try
            {
                // The cancelled request asks for far more tokens than the others, so it is still live at its cancel.
                await foreach (var c in e.GenerateAsync(Prompts[i], Greedy(i == cancelled ? 100_000 : max), cts.Token))
                {
                    ids.AddRange(c.TokenIds);
                    if (i == cancelled && ids.Count >= 3) cts.Cancel();
                }
            }
            catch (OperationCanceledException) when (i == cancelled) { return (ids.ToArray(), true); }
            return (ids.ToArray(), false);
        });
        Assert.That(got[cancelled].Item2, Is.True, "the cancelled request ends with OperationCanceledException");
        int k = Math.Min(max, got[cancelled].Item1.Length);
        Assert.That(got[cancelled].Item1.Take(k), Is.EqualTo(solo[cancelled].Take(k)), "tokens before the cancel");
        for (int i = 0; i < n; i++)
            if (i != cancelled) Assert.That(got[i].Item1, Is.EqualTo(solo[i]), $"request {i}");
        var s = e.Stats!;
        Assert.That((s.Cancelled, s.Finished, s.Running, s.Waiting), Is.EqualTo((1L, (long)n - 1, 0, 0)));

        // The engine keeps serving after the cancel (the cancelled request's state slot was released).
        var again = await e.GenerateTextAsync(e.GenerateAsync(Prompts[0], Greedy(max)));
        Assert.That(again.TokenIds, Is.EqualTo(solo[0]));
    }

    [Test]
    public async Task PerRequestSamplingAndStopStrings_HoldUnderBatching()
    {
        const string file = "tiny-rwkv-5v2-730K-FP32.bin";
        int n = Prompts.Length;
        GenerationOptions Options(int i) => new()
        {
            MaxTokens = 24, StopAtEndOfGeneration = false,
            Sampling = i % 2 == 0 ? SamplingOptions.Greedy : new SamplingOptions { Temperature = 0.7f + 0.1f * i, Seed = (ulong)(11 + i), TopK = 40 },
            StopStrings = i == 2 ? [" "] : [],
        };
        var solo = new (string Text, int[] Ids, FinishReason Finish)[n];
        using (var single = Load(file, paged: false))
            for (int i = 0; i < n; i++)
            {
                var r = await single.GenerateTextAsync(single.GenerateAsync(Prompts[i], Options(i)));
                solo[i] = (r.Text, r.TokenIds, r.Usage.FinishReason);
            }
        Assert.That(solo[2].Finish, Is.EqualTo(FinishReason.StopString), "the fixture's stop string occurs (else the test proves nothing)");

        using var e = Load(file, paged: true);
        var got = await EngineBurst.Run(e, n, async i =>
        {
            var r = await e.GenerateTextAsync(e.GenerateAsync(Prompts[i], Options(i)));
            return (r.Text, r.TokenIds, r.Usage.FinishReason);
        });
        for (int i = 0; i < n; i++) Assert.That(got[i], Is.EqualTo(solo[i]), $"request {i}");
        Assert.That(e.Stats!.MaxRequestsPerStep, Is.EqualTo(n));
    }
}

public class RwkvBudgetTests
{
    private const string File = "tiny-rwkv-7v0-834K-FP32.bin";

    private static InferenceEngine Load(long budget, int maxSeq = 8, bool paged = true) =>
        InferenceEngine.Load(SharedData.Get("models/rwkv/" + File),
            new EngineOptions { Threads = 2, Backend = "reference", Paged = paged, MaxConcurrentSequences = maxSeq, KvBudgetBytes = budget });

    private static long StateBytes()
    {
        using var backend = RwkvFixtures.Backend("reference");
        using var model = RwkvFixtures.Load(File, backend);
        return model.StateBytesPerSequence;
    }

    [Test]
    public async Task KvBudget_BoundsRunningStatesAndCheckpoints()
    {
        long state = StateBytes();
        long budget = 2 * state + state / 2;   // two live states fit, plus half a state of slack
        string[] prompts = ["Once upon a time", "The little robot", "A cat sat", "Why is the sky blue?"];
        var solo = new int[prompts.Length][];
        using (var single = Load(0, paged: false))
            for (int i = 0; i < prompts.Length; i++)
                solo[i] = (await single.GenerateTextAsync(single.GenerateAsync(prompts[i], new GenerationOptions
                    { Sampling = Engine.Runtime.Sampling.SamplingOptions.Greedy, StopAtEndOfGeneration = false, MaxTokens = 12 }))).TokenIds;

        using var e = Load(budget);
        var store = e.RecurrentStates!;
        Assert.That(store.Budget.Capacity, Is.EqualTo(budget), "the KV budget is the state store's budget");
        Assert.That(e.Stats!.BlockCount, Is.EqualTo(2), "scheduler blocks are whole states: ⌊budget / state bytes⌋");
        Task<int[]>[] tasks;
        using (e.PauseServing())
        {
            tasks = [.. prompts.Select(p => Task.Run(async () => (await e.GenerateTextAsync(e.GenerateAsync(p, new GenerationOptions
                { Sampling = Engine.Runtime.Sampling.SamplingOptions.Greedy, StopAtEndOfGeneration = false, MaxTokens = 12 }))).TokenIds))];
            var sw = System.Diagnostics.Stopwatch.StartNew();
            while (e.Stats!.Waiting + e.Stats!.Running < prompts.Length && sw.Elapsed < TimeSpan.FromSeconds(30)) await Task.Delay(1);
        }
        var got = await Task.WhenAll(tasks);
        for (int i = 0; i < prompts.Length; i++) Assert.That(got[i], Is.EqualTo(solo[i]), $"request {i}");
        Assert.Multiple(() =>
        {
            Assert.That(e.Stats!.MaxRequestsPerStep, Is.EqualTo(2), "only two states fit the budget at once");
            Assert.That(e.Stats!.Finished, Is.EqualTo(prompts.Length));
            Assert.That(store.Budget.Used, Is.LessThanOrEqualTo(budget));
            Assert.That(store.CheckpointBytesInMemory, Is.LessThanOrEqualTo(budget), "checkpoints live in the same budget");
            // Two live states leave half a state free: the end-of-prompt checkpoints do not fit and are dropped
            // rather than counted beyond the budget.
            Assert.That(store.Stats.Dropped, Is.GreaterThan(0), "checkpoints compete with live states for the same budget");
        });
    }

    [Test]
    public async Task KvBudget_WithRoomForCheckpoints_KeepsThemAndReusesPrefixes()
    {
        long state = StateBytes();
        long budget = 4 * state;   // two running states + two checkpoints
        using var e = Load(budget, maxSeq: 2);
        var store = e.RecurrentStates!;
        Assert.That(e.Stats!.BlockCount, Is.EqualTo(2), "MaxConcurrentSequences caps the state slots");
        var greedy = new GenerationOptions { Sampling = Engine.Runtime.Sampling.SamplingOptions.Greedy, StopAtEndOfGeneration = false, MaxTokens = 8 };
        string first = "Once upon a time there was";
        await e.GenerateTextAsync(e.GenerateAsync(first, greedy));
        Assert.That(store.Stats.CheckpointsSaved, Is.GreaterThan(0));
        var (_, ids, usage) = await e.GenerateTextAsync(e.GenerateAsync(first + " a robot", greedy));
        Assert.That(usage.ReusedPromptTokens, Is.EqualTo(first.Length), "the end-of-prompt checkpoint is restored");
        Assert.That(store.Budget.Used, Is.LessThanOrEqualTo(budget));

        using var fresh = Load(0, paged: false);
        var (_, freshIds, _) = await fresh.GenerateTextAsync(fresh.GenerateAsync(first + " a robot", greedy));
        Assert.That(ids, Is.EqualTo(freshIds));
    }

    [TestCase(true)]
    [TestCase(false)]
    public void KvBudget_BelowOneState_IsRejectedClearly(bool paged)
    {
        long state = StateBytes();
        var ex = Assert.Throws<ArgumentException>(() => Load(state - 1, paged: paged).Dispose());
        Assert.That(ex!.Message, Does.Contain("recurrent state").And.Contain(state.ToString()));
    }
}
