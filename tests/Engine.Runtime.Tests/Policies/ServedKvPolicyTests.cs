// Tests of KV policies batched in the paged serving loop (PolicyKvRouter), on stories260K: concurrent greedy requests with
// mixed per-request policies (sinks, h2o, quest with a token budget, snapkv, int8, none = the engine's "full") batched in
// one loop give exactly the tokens each gives alone on the single-sequence policy path (Paged = false, a fresh engine per
// request: an independent store layout — the policy's own row blocks over a contiguous cache); the policies change the
// output (so a request silently run without its policy would fail); a request reusing a finished request's policy
// sequence id starts clean; a request cancelled midway leaves the others identical; stats show the requests shared
// forward steps; preemption (tiny pool) restarts a policy request cleanly. Also: KvDiskBytes off the paged path is an
// ArgumentException (the CLI prints one error line), and the router never disposes the paged store it routes to.
using Engine.Memory.Paged;
using Engine.Memory.Policies;
using Engine.Runtime.Sampling;

namespace Engine.Runtime.Tests.Policies;

[NonParallelizable]
public class ServedKvPolicyTests
{
    private static string Model => SharedData.Get("reference/stories260K/stories260K.gguf");
    private const int QuestTokens = 8;
    private static readonly GenerationOptions Greedy = new() { Sampling = SamplingOptions.Greedy, StopAtEndOfGeneration = false };

    private static EngineOptions Options(bool paged, int maxSequences = 8, long budgetBytes = 0) => new()
    {
        Threads = 2, Paged = paged, KvPolicy = "full", KvPolicyBudgetTokens = QuestTokens, MaxConcurrentSequences = maxSequences,
        KvBudgetBytes = budgetBytes, BlockSize = 16,
    };

    /// <summary>(policy, budget) per request; null policy = the engine's ("full", i.e. no eviction or selection).</summary>
    private static readonly (string? Policy, double? Budget)[] Mix =
        [("sinks", 0.5), ("h2o", 0.5), ("quest", null), (null, null), ("snapkv", 0.5), ("int8", null)];

    private static GenerationOptions For(int i, int maxTokens) =>
        Greedy with { MaxTokens = maxTokens, KvPolicy = Mix[i % Mix.Length].Policy, KvPolicyBudget = Mix[i % Mix.Length].Budget };

    /// <summary>BOS + random tokens (3..511), distinct per seed.</summary>
    private static int[] Prompt(int seed, int length)
    {
        var rng = new Random(seed);
        return [1, .. Enumerable.Range(0, length - 1).Select(_ => rng.Next(3, 512))];
    }

    private static async Task<int[]> Ids(InferenceEngine e, int[] prompt, GenerationOptions o, CancellationToken ct = default) =>
        (await e.GenerateTextAsync(e.GenerateAsync(prompt, o, ct))).TokenIds;

    /// <summary>Each request alone on the single-sequence policy path, on a fresh engine.</summary>
    private static async Task<int[]> Solo(int[] prompt, GenerationOptions o)
    {
        using var e = InferenceEngine.Load(Model, Options(paged: false));
        Assert.That(e.IsPaged, Is.False);
        return await Ids(e, prompt, o);
    }

    [Test]
    public async Task MixedPoliciesBatchedEqualTheirSoloSingleSequenceRuns()
    {
        int n = Mix.Length;
        var prompts = Enumerable.Range(0, n).Select(i => Prompt(300 + i, 24 + 5 * i)).ToArray();
        var maxTokens = Enumerable.Range(0, n).Select(i => 70 + 3 * i).ToArray();
        var solo = new int[n][];
        for (int i = 0; i < n; i++) solo[i] = await Solo(prompts[i], For(i, maxTokens[i]));

        using var e = InferenceEngine.Load(Model, Options(paged: true));
        Assert.That(e.IsPaged, Is.True, "a KV policy runs in the serving loop by default");
        var got = await EngineBurst.Run(e, n, i => Ids(e, prompts[i], For(i, maxTokens[i])));
        for (int i = 0; i < n; i++)
            Assert.That(got[i], Is.EqualTo(solo[i]), $"request {i} ({Mix[i].Policy ?? "none"}): batched tokens equal its solo tokens");

        var s = e.Stats!;
        Assert.Multiple(() =>
        {
            Assert.That(s.MaxRequestsPerStep, Is.EqualTo(n), "all requests shared a forward step");
            Assert.That(s.Steps, Is.LessThanOrEqualTo(maxTokens.Max()), "one step per generated token of the longest request");
            Assert.That(s.TokensScheduled, Is.EqualTo(prompts.Sum(p => p.Length) + maxTokens.Sum() - n), "nothing reused (prefix caching off), nothing recomputed");
            Assert.That(s.PrefixHitTokens, Is.Zero);
            Assert.That(s.BlocksInUse, Is.Zero);
        });
        e.ValidateKvPool();
        Assert.That(e.KvPolicyUsage, Is.Not.Null, "the last finished policy request's usage is reported");

        // the policies matter on these prompts: the evicting ones differ from the same prompt without eviction
        for (int i = 0; i < 2; i++)
        {
            var plain = await Solo(prompts[i], Greedy with { MaxTokens = maxTokens[i] });
            Assert.That(solo[i], Is.Not.EqualTo(plain), $"{Mix[i].Policy} changes the greedy tokens of prompt {i}");
        }
    }

    [Test]
    public async Task PolicyRequestOnAReusedSequenceIdStartsClean()
    {
        var a = Prompt(401, 40);
        var b = Prompt(402, 33);
        var o = Greedy with { MaxTokens = 60, KvPolicy = "h2o", KvPolicyBudget = 0.4 };
        var expectedA = await Solo(a, o);
        var expectedB = await Solo(b, o);
        // two policy sequence ids handed out last-in-first-out: each request (one at a time) reuses id 0 of the one before
        // (MaxConcurrentSequences = 1 would make the runtime pick the single-sequence policy store instead)
        using var e = InferenceEngine.Load(Model, Options(paged: true, maxSequences: 2));
        Assert.That(e.IsPaged, Is.True);
        Assert.Multiple(async () =>
        {
            Assert.That(await Ids(e, a, o), Is.EqualTo(expectedA));
            Assert.That(await Ids(e, b, o), Is.EqualTo(expectedB), "second request on the same (only) id");
            Assert.That(await Ids(e, a, o with { KvPolicy = "sinks" }), Is.EqualTo(await Solo(a, o with { KvPolicy = "sinks" })),
                "another policy on the same id");
            Assert.That(await Ids(e, a, o), Is.EqualTo(expectedA), "the first request again");
        });
        var u = e.KvPolicyUsage!;
        Assert.That(u.Policy, Is.EqualTo("h2o"));
        Assert.That(u.Tokens, Is.EqualTo(a.Length + 60 - 1), "usage of the last request alone, not accumulated");
    }

    [Test]
    public async Task CancelMidwayLeavesTheOthersIdentical()
    {
        int n = Mix.Length;
        var prompts = Enumerable.Range(0, n).Select(i => Prompt(500 + i, 20 + 4 * i)).ToArray();
        var solo = new int[n][];
        for (int i = 0; i < n; i++) solo[i] = await Solo(prompts[i], For(i, 50));
        const int victim = 1;   // h2o
        using var e = InferenceEngine.Load(Model, Options(paged: true));
        using var cancel = new CancellationTokenSource();
        var gate = e.PauseServing();
        var tasks = Enumerable.Range(0, n).Select(i => Task.Run(async () =>
        {
            if (i != victim) return await Ids(e, prompts[i], For(i, 50));
            var ids = new List<int>();
            try
            {
                await foreach (var c in e.GenerateAsync(prompts[i], For(i, 400), cancel.Token)) ids.AddRange(c.TokenIds);
                Assert.Fail("the victim was not cancelled");
            }
            catch (OperationCanceledException) { }
            return ids.ToArray();
        })).ToArray();
        var sw = System.Diagnostics.Stopwatch.StartNew();
        while (e.Stats!.Waiting + e.Stats!.Running < n && !tasks.Any(t => t.IsFaulted) && sw.Elapsed < TimeSpan.FromSeconds(30)) await Task.Delay(1);
        gate.Dispose();
        while (e.Stats!.Steps < 10 && !tasks.Any(t => t.IsCompleted) && sw.Elapsed < TimeSpan.FromSeconds(30)) Thread.SpinWait(50);
        using (e.PauseServing()) cancel.Cancel();
        var got = await Task.WhenAll(tasks);
        for (int i = 0; i < n; i++)
            if (i != victim) Assert.That(got[i], Is.EqualTo(solo[i]), $"request {i}");
        Assert.That(got[victim], Is.EqualTo(solo[victim][..Math.Min(got[victim].Length, solo[victim].Length)]), "the victim's tokens before the cancel");
        Assert.That(got[victim], Has.Length.LessThan(400));
        Assert.That(e.Stats!.Cancelled, Is.EqualTo(1));
        // its policy id is free and clean again
        Assert.That(await Ids(e, prompts[victim], For(victim, 50)), Is.EqualTo(solo[victim]));
        e.ValidateKvPool();
    }

    [Test]
    public async Task PreemptedPolicyRequestsRestartCleanlyAndComplete()
    {
        // a pool of 12 blocks (192 tokens) for 6 requests needing ~100 tokens each: some are preempted (recompute from 0)
        int n = Mix.Length;
        var prompts = Enumerable.Range(0, n).Select(i => Prompt(600 + i, 30)).ToArray();
        Engine.Model.ModelConfig c;
        using (var probe = InferenceEngine.Load(Model, Options(paged: true))) c = probe.Config;
        long perToken = 2L * c.LayerCount * c.KvDim * sizeof(float);
        using var e = InferenceEngine.Load(Model, Options(paged: true, budgetBytes: 12 * 16 * perToken));
        var got = await EngineBurst.Run(e, n, i => Ids(e, prompts[i], For(i, 70)));
        var s = e.Stats!;
        Assert.That(s.Preemptions, Is.GreaterThan(0), "the pool is too small for all at once");
        Assert.That(got.Select(g => g.Length), Is.All.EqualTo(70), "every request completes");
        // requests never preempted equal their solo runs (a preempted one recomputes its prompt + output as one prefill,
        // which a policy may compress differently); the plain one always does
        Assert.That(got[3], Is.EqualTo(await Solo(prompts[3], For(3, 70))), "the request without a policy");
        Assert.That(s.BlocksInUse, Is.Zero);
        e.ValidateKvPool();
    }

    [Test]
    public void TheRuntimePicksTheStoreFromTheEnginesShape()
    {
        // one sequence at a time, no disk tier: the single-sequence policy store (frees evicted rows); concurrent requests
        // or a disk tier: the paged executor. The caller (the CLI) states the shape, it does not pick the path.
        using (var one = InferenceEngine.Load(Model, Options(paged: true, maxSequences: 1))) Assert.That(one.IsPaged, Is.False);
        using (var many = InferenceEngine.Load(Model, Options(paged: true, maxSequences: 2))) Assert.That(many.IsPaged, Is.True);
        using (var disk = InferenceEngine.Load(Model, Options(paged: true, maxSequences: 1) with { KvDiskBytes = 1 << 20 }))
            Assert.That(disk.IsPaged, Is.True);
        using (var plain = InferenceEngine.Load(Model, new EngineOptions { Threads = 2, MaxConcurrentSequences = 1 }))
            Assert.That(plain.IsPaged, Is.True, "without a policy the paged pool serves one sequence too");
    }

    [Test]
    public void KvDiskBytesOffThePagedPathIsAnError()
    {
        var single = Assert.Throws<ArgumentException>(() => InferenceEngine.Load(Model, new EngineOptions { Paged = false, KvDiskBytes = 1 << 20 }))!;
        Assert.That(single.Message, Does.Contain("KvDiskBytes").And.Contain("Paged = false"));
        var decorated = Assert.Throws<ArgumentException>(() => InferenceEngine.Load(Model, new EngineOptions { KvDiskBytes = 1 << 20, KvStoreDecorator = kv => kv }))!;
        Assert.That(decorated.Message, Does.Contain("KvDiskBytes").And.Contain("decorator"));
        var rwkv = Assert.Throws<ArgumentException>(() => InferenceEngine.Load(SharedData.Get("models/rwkv/tiny-rwkv-5v2-730K-FP32.bin"),
            new EngineOptions { KvDiskBytes = 1 << 20 }))!;
        Assert.That(rwkv.Message, Does.Contain("KvDiskBytes").And.Contain("recurrent"));
        // the paged path with a policy takes it
        using var e = InferenceEngine.Load(Model, Options(paged: true) with { KvDiskBytes = 1 << 20 });
        Assert.That(e.KvDiskFile, Is.Not.Null);
    }

    [Test]
    public void CliRejectsKvDiskOnARecurrentModelWithOneErrorLine()
    {
        var root = new System.CommandLine.RootCommand { Engine.Cli.Commands.RunCommand.Create() };
        var (oldOut, oldErr, oldIn) = (Console.Out, Console.Error, Console.In);
        var (o, err) = (new StringWriter(), new StringWriter());
        Console.SetOut(o); Console.SetError(err); Console.SetIn(new StringReader(""));
        int code;
        try
        {
            code = root.Parse(["run", "--model", SharedData.Get("models/rwkv/tiny-rwkv-5v2-730K-FP32.bin"), "--prompt", "a",
                "--max-tokens", "2", "--kv-disk-mb", "1"]).Invoke();
        }
        finally { Console.SetOut(oldOut); Console.SetError(oldErr); Console.SetIn(oldIn); }
        string stderr = err.ToString();
        Assert.Multiple(() =>
        {
            Assert.That(code, Is.EqualTo(1));
            Assert.That(o.ToString(), Is.Empty);
            Assert.That(stderr.TrimEnd('\n').Split('\n'), Has.Length.EqualTo(1), stderr);
            Assert.That(stderr, Does.StartWith("error: ").And.Contain("--kv-disk-mb"));
        });
    }

    [Test]
    public void RouterSharesThePagedStoreWithoutDisposingIt()
    {
        using var paged = new PagedKvStore(2, 8, 4, 8, 32, 2);   // 2 layers, kvDim 8, 8 blocks of 4 tokens
        using var cpu = new Engine.Kernels.CpuBackend(1);
        var backend = new PolicyBackend(cpu);
        var router = new PolicyKvRouter(paged, backend, 2, blockTokens: 4);
        var sinks = KvPolicySpec.Parse("sinks", 0.5, null);
        paged.Bind(0, [0, 1, 2, 3], 16);   // a packing policy's slot is bound over its whole table (16 row slots)
        paged.Bind(1, [4, 5, 6, 7], 0);
        router.Route(0, sinks, 1);
        router.Route(1, null);
        var row = Enumerable.Range(0, 8).Select(x => (float)x).ToArray();
        int presented = 0;
        for (int p = 0; p < 16; p++)
            for (int l = 0; l < 2; l++)
            {
                router.Write(l, 0, [p], row, row); router.Write(l, 1, [p], row, row);
                if (p == 15 && l == 0) foreach (var pg in router.Pages(0, 0)) presented += pg.TokenCount;
                else router.Pages(l, 0);
            }
        var store = router.StoreFor(sinks);
        Assert.Multiple(() =>
        {
            Assert.That(store.RowStorage, Is.EqualTo(PolicyRowStorage.Slots), "an evicting policy packs its rows into the pool's blocks");
            Assert.That(router.Length(0, 0), Is.EqualTo(16));
            Assert.That(router.Length(0, 1), Is.EqualTo(16));
            Assert.That(presented, Is.InRange(1, 8), "sinks at 0.5 presents at most half the tokens");
            Assert.That(store.SlotsUsed(1), Is.InRange(presented, presented + 3), "kept rows packed: at most one partly used block above them");
        });
        Assert.That(backend.Store, Is.SameAs(store), "attention goes to the store that returned the pages");
        router.Pages(0, 1);
        Assert.That(backend.Store, Is.Null, "a plain sequence: pass-through attention");
        router.Release(sinks, 1);
        Assert.That(store.Length(0, 1), Is.Zero, "released state is gone");
        Assert.That(store.SlotsUsed(1), Is.Zero);
        router.Dispose();
        Assert.That(paged.Pages(0, 1).Length, Is.GreaterThan(0), "the paged store is still usable after the router is disposed");
    }
}
