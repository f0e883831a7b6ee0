// Tests that a KV policy on the serving path frees real memory of the ONE pool the scheduler admits from (issue 14): a
// packing policy (sinks, h2o, snapkv, arkv, int8, kivi4) keeps its float32 rows in its own blocks of the paged pool,
// packed to the front of its table, and the scheduler takes back every block past them after each step.
// On stories260K and the random-weight synthetic "tiny" model (GQA).
// Oracles from outside the code under test: the byte bound of each policy is computed here from the spec's semantics
// (budget · length float32 rows, or recent window float32 + older tokens at int8 / int4 sizes) plus at most one partly
// used block per tier and layer; outputs are compared with the single-sequence policy store (Paged = false: the policy's
// own native row blocks over a contiguous cache — an independent layout) run alone on a fresh engine; pool invariants
// come from BlockManager / Scheduler.Validate and the pool counters.
using Engine.Kernels;
using Engine.Memory.Paged;
using Engine.Runtime.Sampling;
using Engine.Runtime.Benchmarking;
using Engine.Runtime.Serving;
using Engine.Scheduling;

namespace Engine.Runtime.Tests.Policies;

[NonParallelizable]
public class PooledKvPolicyTests
{
    private static string _tinyDir = "";

    /// <summary>stories260K (MHA, 5 layers) or the random-weight "tiny" synthetic model (GQA: 4 heads over 2 KV heads, 2 layers).</summary>
    private static string ModelPath(string model) => model switch
    {
        "stories" => SharedData.Get("reference/stories260K/stories260K.gguf"),
        "tiny" => SyntheticModel.Ensure(SyntheticModel.Tiny, Engine.Tensors.DType.F32, _tinyDir),
        _ => throw new ArgumentException(model),
    };

    private static string Model => ModelPath("stories");

    [OneTimeSetUp]
    public void MakeTinyDir()
    {
        _tinyDir = Path.Combine(Path.GetTempPath(), "engine-pooled-policy-test-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_tinyDir);
    }

    [OneTimeTearDown]
    public void RemoveTinyDir() { if (Directory.Exists(_tinyDir)) Directory.Delete(_tinyDir, true); }
    private const int BlockSize = 16, Recent = 32, Group = 16;   // KvPolicySpec defaults: RecentFullPrecision, BlockSize (G)
    private static readonly GenerationOptions Greedy = new() { Sampling = SamplingOptions.Greedy, StopAtEndOfGeneration = false };

    private static EngineOptions Options(bool paged, int maxSequences = 4, long budgetBytes = 0, int prefillChunk = 512) => new()
    {
        Threads = 2, Paged = paged, KvPolicy = "full", KvPolicyBudgetTokens = 8, MaxConcurrentSequences = maxSequences,
        KvBudgetBytes = budgetBytes, BlockSize = BlockSize, PrefillChunk = prefillChunk,
    };

    private static int[] Prompt(int seed, int length)
    {
        var rng = new Random(seed);
        return [1, .. Enumerable.Range(0, length - 1).Select(_ => rng.Next(3, 512))];
    }

    private static async Task<int[]> Ids(InferenceEngine e, int[] prompt, GenerationOptions o, CancellationToken ct = default) =>
        (await e.GenerateTextAsync(e.GenerateAsync(prompt, o, ct))).TokenIds;

    /// <summary>Alone on the single-sequence policy path, on a fresh engine, prefilling in the same chunks (a policy compresses
    /// after each chunk, so the chunking is part of its output).</summary>
    private static async Task<int[]> Solo(int[] prompt, GenerationOptions o, int prefillChunk = 512, string model = "stories")
    {
        using var e = InferenceEngine.Load(ModelPath(model), Options(paged: false, prefillChunk: prefillChunk));
        Assert.That(e.IsPaged, Is.False);
        return await Ids(e, prompt, o);
    }

    /// <summary>Bytes the policy may hold at <paramref name="len"/> cached positions after a step that wrote
    /// <paramref name="fresh"/> of them (written tokens are always presented that step), all layers, without the slack.</summary>
    private static double BudgetBytes(string policy, double budget, int len, int fresh, int layers, int kvDim)
    {
        double f32 = KvDecode.BytesPerToken(KvElementType.F32, kvDim, Group) * layers;   // one position, K + V, all layers
        int tokenBudget = Math.Max(1, (int)Math.Ceiling(budget * len - 1e-9));
        switch (policy)
        {
            case "sinks": case "h2o": case "snapkv":
                return Math.Min(len, Math.Max(tokenBudget, fresh)) * f32;
            case "arkv":
                // ARKV spends budget · len float32-equivalents per layer, a share 0.25..0.75 of it at float32; float32 rows
                // sit in blocks shared by all layers, so the pool holds the largest layer share for every layer: ≤ 1.5 ×.
                return Math.Min(len, Math.Max(1.5 * tokenBudget, fresh)) * f32;
            case "int8":
            {
                int full = Math.Min(len, Recent + fresh);
                return full * f32 + (len - full) * KvDecode.BytesPerToken(KvElementType.Int8, kvDim, Group) * layers;
            }
            case "kivi4":
            {
                int groups = Math.Max(0, len - Recent) / Group, full = len - groups * Group;
                static long A64(long x) => (x + 63) & ~63L;
                long chunk = A64((long)Group * kvDim) + A64(kvDim * 2L * 4) + (long)Group * (kvDim / Group) * 2 * 4;   // one layer's group
                return full * f32 + (double)groups * chunk * layers;
            }
            default: throw new ArgumentException(policy);
        }
    }

    [TestCase("stories", "sinks", 0.25)]
    [TestCase("tiny", "sinks", 0.25)]
    [TestCase("stories", "h2o", 0.25)]
    [TestCase("tiny", "h2o", 0.25)]
    [TestCase("stories", "snapkv", 0.25)]
    [TestCase("tiny", "snapkv", 0.25)]
    [TestCase("stories", "arkv", 0.25)]
    [TestCase("tiny", "arkv", 0.25)]
    [TestCase("stories", "int8", 0.25)]
    [TestCase("tiny", "int8", 0.25)]
    [TestCase("stories", "kivi4", 0.25)]
    [TestCase("tiny", "kivi4", 0.25)]
    public async Task ServedPolicyRequestHoldsItsBudgetInThePoolAtEveryStep(string model, string policy, double budget)
    {
        var prompt = Prompt(700, 40);
        const int maxTokens = 200;
        var o = Greedy with { MaxTokens = maxTokens, KvPolicy = policy, KvPolicyBudget = budget };
        // prefill in chunks of 16: the first steps hold at most a chunk beyond the budget
        var expected = await Solo(prompt, o, prefillChunk: 16, model: model);
        using var e = InferenceEngine.Load(ModelPath(model), Options(paged: true, prefillChunk: 16));
        Assert.That(e.IsPaged, Is.True);
        var c = e.Config;
        long blockBytes = BlockPool.BytesPerBlock(c.LayerCount, c.KvHeadCount, c.HeadDim, BlockSize, sizeof(float));
        // slack: one partly used float32 block (all layers) + the rounding of the quantized bytes up to whole blocks, plus
        // for a quantized tier one partly used block of its own per layer
        double quantBlock = policy switch
        {
            "int8" or "arkv" => KvDecode.BytesPerToken(KvElementType.Int8, c.KvDim, Group) * BlockSize * c.LayerCount,
            _ => 0,
        };
        double slack = 2.0 * blockBytes + quantBlock;
        var steps = new List<(int Len, int Fresh, int Blocks)>();
        int last = 0;
        e.AfterServingStep = s =>
        {
            if (s.RunningCount == 0) return;   // finished this step: its blocks are already free
            int len = s.GetRequest(1).ComputedTokens;
            steps.Add((len, len - last, s.Pool.UsedCount));
            last = len;
            s.Validate();
        };
        var got = await Ids(e, prompt, o);
        e.AfterServingStep = null;
        Assert.That(got, Is.EqualTo(expected), $"{policy}: served tokens equal the single-sequence policy store's");
        Assert.That(steps, Has.Count.GreaterThan(maxTokens - 5));
        foreach (var (len, fresh, blocks) in steps)
        {
            double bound = BudgetBytes(policy, budget, len, fresh, c.LayerCount, c.KvDim) + slack;
            Assert.That((double)blocks * blockBytes, Is.LessThanOrEqualTo(bound),
                $"{policy} at {len} positions: {blocks} pool blocks held, budget bound {bound:F0} bytes");
        }
        var end = steps[^1];
        int fullBlocks = (end.Len + BlockSize - 1) / BlockSize;
        Assert.That(end.Blocks, Is.LessThan(fullBlocks * 0.75), $"{policy}: the pool holds less than the full cache ({fullBlocks} blocks)");
        var u = e.KvPolicyUsage!;
        Assert.That(u.HeldBytes, Is.LessThan(u.FullBytes * 0.75), "the reported bytes held are the pool's");
        Assert.That(e.Stats.BlocksInUse, Is.Zero);
        e.ValidateKvPool();
    }

    [Test]
    public async Task FreedBlocksAdmitMoreRequestsFromTheSamePool()
    {
        // 8 requests of 16 + 144 tokens need 10 blocks each with a full cache (80); the pool has 40. Without a policy some
        // are preempted; with sinks at 0.25 each keeps about 3 blocks, so all run at once and none is preempted.
        var prompts = Enumerable.Range(0, 8).Select(i => Prompt(800 + i, 16)).ToArray();
        Engine.Model.ModelConfig c;
        using (var probe = InferenceEngine.Load(Model, Options(paged: true))) c = probe.Config;
        long blockBytes = BlockPool.BytesPerBlock(c.LayerCount, c.KvHeadCount, c.HeadDim, BlockSize, sizeof(float));
        async Task<EngineStats> Run(string? policy)
        {
            using var e = InferenceEngine.Load(Model, Options(paged: true, maxSequences: 8, budgetBytes: 40 * blockBytes));
            var o = Greedy with { MaxTokens = 145, KvPolicy = policy, KvPolicyBudget = policy == null ? null : 0.25 };
            var got = await EngineBurst.Run(e, 8, i => Ids(e, prompts[i], o));
            Assert.That(got.Select(g => g.Length), Is.All.EqualTo(145));
            Assert.That(e.Stats.BlocksInUse, Is.Zero);
            e.ValidateKvPool();
            return e.Stats;
        }
        var plain = await Run(null);
        var sinks = await Run("sinks");
        Assert.Multiple(() =>
        {
            Assert.That(plain.Preemptions, Is.GreaterThan(0), "a full cache does not fit 8 requests");
            Assert.That(sinks.Preemptions, Is.Zero, "sinks' freed blocks went back to the pool and held all 8");
            Assert.That(sinks.MaxRequestsPerStep, Is.EqualTo(8));
        });
    }

    private static readonly (string? Policy, double? Budget)[] Mix =
    [
        ("sinks", 0.25), ("h2o", 0.25), ("snapkv", 0.25), ("arkv", 0.25), ("int8", null), ("kivi4", null), ("quest", null),
        (null, null), ("h2o+quest", 0.5), ("sinks", 0.5),
    ];

    private static GenerationOptions For(int i, int maxTokens) =>
        Greedy with { MaxTokens = maxTokens, KvPolicy = Mix[i % Mix.Length].Policy, KvPolicyBudget = Mix[i % Mix.Length].Budget };

    [TestCase("stories")]
    [TestCase("tiny")]
    public async Task SixteenConcurrentMixedPoliciesEqualEachAlone(string model)
    {
        const int n = 16;
        var prompts = Enumerable.Range(0, n).Select(i => Prompt(900 + i, 20 + 3 * i)).ToArray();
        var maxTokens = Enumerable.Range(0, n).Select(i => 60 + 5 * i).ToArray();
        var solo = new int[n][];
        // every prompt (680 tokens in all) is prefilled in the first step, whatever order the requests arrive in: a policy
        // compresses after each chunk, so a prompt split over two steps (arrival order decides which one) would be a
        // different computation from its solo run's
        for (int i = 0; i < n; i++) solo[i] = await Solo(prompts[i], For(i, maxTokens[i]), model: model);
        using var e = InferenceEngine.Load(ModelPath(model), Options(paged: true, maxSequences: n, prefillChunk: 1024));
        int maxUsed = 0;
        e.AfterServingStep = s => { maxUsed = Math.Max(maxUsed, s.Pool.UsedCount); s.Validate(); };
        var got = await EngineBurst.Run(e, n, i => Ids(e, prompts[i], For(i, maxTokens[i])));
        e.AfterServingStep = null;
        for (int i = 0; i < n; i++)
            Assert.That(got[i], Is.EqualTo(solo[i]), $"request {i} ({Mix[i % Mix.Length].Policy ?? "none"}) batched = alone");
        int fullBlocks = Enumerable.Range(0, n).Sum(i => (prompts[i].Length + maxTokens[i] + BlockSize - 1) / BlockSize);
        Assert.Multiple(() =>
        {
            Assert.That(e.Stats.MaxRequestsPerStep, Is.EqualTo(n));
            Assert.That(e.Stats.Preemptions, Is.Zero);
            Assert.That(maxUsed, Is.LessThan(fullBlocks * 0.75), "the mix held less of the pool than full caches would");
            Assert.That(e.Stats.BlocksInUse, Is.Zero);
        });
        e.ValidateKvPool();
    }

    [Test]
    public async Task SixtyFourMixedRequestsHalfCancelledLeaveThePoolFree()
    {
        const int n = 64;
        var prompts = Enumerable.Range(0, n).Select(i => Prompt(1000 + i, 10 + i % 23)).ToArray();
        Engine.Model.ModelConfig c;
        using (var probe = InferenceEngine.Load(Model, Options(paged: true))) c = probe.Config;
        long blockBytes = BlockPool.BytesPerBlock(c.LayerCount, c.KvHeadCount, c.HeadDim, BlockSize, sizeof(float));
        // a pool of 48 blocks for 64 requests of up to ~110 tokens: admission waits, preemption, freed blocks reused
        using var e = InferenceEngine.Load(Model, Options(paged: true, maxSequences: 16, budgetBytes: 48 * blockBytes, prefillChunk: 32));
        int steps = 0;
        e.AfterServingStep = s => { if (++steps % 7 == 0) s.Validate(); };
        var cts = Enumerable.Range(0, n).Select(_ => new CancellationTokenSource()).ToArray();
        var tasks = Enumerable.Range(0, n).Select(i => Task.Run(async () =>
        {
            try { return await Ids(e, prompts[i], For(i, 60 + i % 30), cts[i].Token); }
            catch (OperationCanceledException) { return null; }
        })).ToArray();
        var rng = new Random(5);
        for (int i = 0; i < n; i += 2)
        {
            await Task.Delay(rng.Next(0, 20));
            cts[i].Cancel();
        }
        var got = await Task.WhenAll(tasks);
        e.AfterServingStep = null;
        Assert.That(got.Where((g, i) => i % 2 == 1), Has.All.Not.Null, "the uncancelled requests complete");
        Assert.That(got.Where((g, i) => i % 2 == 1).Select(g => g!.Length), Is.All.GreaterThan(0));
        var s = e.Stats;
        Assert.Multiple(() =>
        {
            Assert.That(s.BlocksInUse, Is.Zero, "every block is back in the pool");
            Assert.That(s.BlocksFree + s.BlocksCached, Is.EqualTo(s.BlockCount));
            Assert.That(s.Running + s.Waiting, Is.Zero);
        });
        e.ValidateKvPool();
        // and the pool still serves: an uncancelled request again equals its solo run
        Assert.That(await Ids(e, prompts[1], For(1, 61)), Is.EqualTo(await Solo(prompts[1], For(1, 61), prefillChunk: 32)));
        foreach (var ct in cts) ct.Dispose();
    }
}
