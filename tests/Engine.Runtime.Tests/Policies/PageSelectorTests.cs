// Owns: tests of PageSelector (quest / msa read-time selection) through PolicyKvStore + PolicyBackend over a float32
// store: a token budget covering the context equals full attention; per-KV-head selection equals an independent float64
// attention over each head's reported blocks; two KV heads needing different blocks are both served per head and not by
// the shared choice; top-K by quickselect picks a full sort's set (ties → earlier); quantized tiers viewed per head (Int8, Int4 page offsets) equal the shared path when every head
// ranks blocks alike; the vectorized group scores equal the scalar Quest bound / mean-key dot; the token budget bounds
// what is read, also with the two-level selection, and a planted needle is still found at 48K tokens; TokenBudget parsing and validation. Expected values come from the
// reference backend, scalar recomputation from the raw keys, or constructed cases.
using System.CommandLine;
using Engine.Cli.Commands;
using Engine.Kernels;
using Engine.Memory;
using Engine.Memory.Policies;

namespace Engine.Runtime.Tests.Policies;

public class PageSelectorTests
{
    private const int Heads = 4, KvHeads = 2, HeadDim = 16, KvDim = KvHeads * HeadDim, Group = Heads / KvHeads;
    private static readonly AttentionParams P = new(Heads, KvHeads, HeadDim, 0.25f);

    private static (PolicyKvStore Store, PolicyBackend Backend) Make(KvPolicySpec spec, int capacity, IBackend? backend = null)
    {
        var pb = new PolicyBackend(backend ?? new ReferenceBackend());
        var store = new PolicyKvStore(new ContiguousKvStore(1, KvDim, capacity), spec);
        pb.Store = store;
        return (store, pb);
    }

    /// <summary>Prefill len − 1 rows in one write, then one decode step at position len − 1 with query row qLast.</summary>
    private static float[] Decode(IKvStore store, IBackend backend, float[] k, float[] v, float[] qLast, int len, AttentionParams? p = null)
    {
        var pos = Enumerable.Range(0, len - 1).ToArray();
        store.Write(0, 0, pos, k.AsSpan(0, (len - 1) * KvDim), v.AsSpan(0, (len - 1) * KvDim));
        store.Write(0, 0, [len - 1], k.AsSpan((len - 1) * KvDim, KvDim), v.AsSpan((len - 1) * KvDim, KvDim));
        var o = new float[Heads * HeadDim];
        backend.Attention(qLast, [len - 1], store.Pages(0, 0), p ?? P, o);
        return o;
    }

    [TestCase("quest")] [TestCase("msa")] [TestCase("h2o+quest")]
    public void TokenBudgetCoveringTheContext_EqualsFullAttention(string policy)
    {
        int len = 203;
        var k = TestData.RandomFloats(len * KvDim, 1); var v = TestData.RandomFloats(len * KvDim, 2); var q = TestData.RandomFloats(Heads * HeadDim, 3);
        using var plain = new ContiguousKvStore(1, KvDim, 256);
        var expected = Decode(plain, new ReferenceBackend(), k, v, q, len);
        var (store, pb) = Make(KvPolicySpec.Parse(policy, 1.0, 4096), 256);
        using (store)
        {
            var actual = Decode(store, pb, k, v, q, len);
            Assert.That(actual, Is.EqualTo(expected).Within(1e-5f));
            Assert.That(store.LastReadTokens, Is.EqualTo(len));
        }
    }

    [TestCase("quest", false)] [TestCase("msa", false)] [TestCase("quest", true)] [TestCase("msa", true)]
    public void PerHeadSelection_EqualsIndependentAttentionOverEachHeadsBlocks(string policy, bool twoLevelContext)
    {
        // long enough (with a small budget) for the two-level path when asked: M = 8 super-blocks → > 32 needed
        int len = twoLevelContext ? 16 * 16 * 40 + 7 : 403, budget = 48, g = 16;
        var k = TestData.RandomFloats(len * KvDim, 4); var v = TestData.RandomFloats(len * KvDim, 5); var q = TestData.RandomFloats(Heads * HeadDim, 6, 2f);
        var (store, pb) = Make(KvPolicySpec.Parse(policy, 1.0, budget), len + 8);
        using (store)
        {
            var actual = Decode(store, pb, k, v, q, len);
            var sel = store.Selector!;
            Assert.That(sel.LastWasPerHead, Is.True);
            Assert.That(sel.LastWasTwoLevel, Is.EqualTo(twoLevelContext));
            int blocks = (len + g - 1) / g;
            var expected = new float[Heads * HeadDim];
            for (int h = 0; h < KvHeads; h++)
            {
                var chosen = sel.LastSelection(h).ToArray();
                Assert.That(chosen, Is.Ordered.Ascending.And.Unique);
                Assert.That(chosen, Does.Contain(0).And.Contain(blocks - 1).And.Contain(blocks - 2), "sink and local blocks are always read");
                Assert.That(chosen.Length * g, Is.LessThanOrEqualTo(budget + g), "at most ⌈budget / G⌉ blocks (+ the partial last one)");
                var tokens = chosen.SelectMany(b => Enumerable.Range(b * g, Math.Min(g, len - b * g))).ToArray();
                for (int j = h * Group; j < (h + 1) * Group; j++)
                {
                    // float64 softmax attention of query head j over its KV head's chosen tokens
                    var s = tokens.Select(t => P.Scale * Enumerable.Range(0, HeadDim).Sum(c => (double)q[j * HeadDim + c] * k[t * KvDim + h * HeadDim + c])).ToArray();
                    double mx = s.Max(), z = s.Sum(x => Math.Exp(x - mx));
                    for (int c = 0; c < HeadDim; c++)
                        expected[j * HeadDim + c] = (float)(tokens.Select((t, i) => Math.Exp(s[i] - mx) * v[t * KvDim + h * HeadDim + c]).Sum() / z);
                }
            }
            Assert.That(actual, Is.EqualTo(expected).Within(1e-5f));
            Assert.That(sel.LastSelection(0).ToArray(), Is.Not.EqualTo(sel.LastSelection(1).ToArray()), "random heads disagree on some block");
        }
    }

    [TestCase("quest")] [TestCase("msa")]
    public void TwoKvHeadsNeedingDifferentBlocks_PerHeadReadsBoth_SharedCannot(string policy)
    {
        // KV head 0's needle sits at token 100 (block 6), KV head 1's at token 250 (block 15); each group's query points at
        // its own needle. Budget: 4 blocks = sink + local window + ONE routed block. Head 0's needle is stronger, so the
        // shared (summed over heads) choice takes block 6 for everyone and KV head 1 misses its needle.
        int len = 400, n0 = 100, n1 = 250;
        var k = TestData.RandomFloats(len * KvDim, 10, 0.1f); var v = TestData.RandomFloats(len * KvDim, 11, 0.1f);
        var q = new float[Heads * HeadDim];
        for (int c = 0; c < HeadDim; c++)
        {
            float d0 = ((c * 7) % 3) - 1, d1 = ((c * 5 + 1) % 3) - 1;
            for (int j = 0; j < Group; j++) { q[j * HeadDim + c] = 3 * d0; q[(Group + j) * HeadDim + c] = 3 * d1; }
            k[n0 * KvDim + c] = 3 * d0; v[n0 * KvDim + c] = 5;                              // KV head 0 channels
            k[n1 * KvDim + HeadDim + c] = 2 * d1; v[n1 * KvDim + HeadDim + c] = -5;         // KV head 1 channels
        }
        foreach (bool perHead in new[] { true, false })
        {
            var (store, pb) = Make(KvPolicySpec.Parse(policy, 1.0, 64), 512);
            using (store)
            {
                store.Selector!.PerKvHead = perHead;
                var o = Decode(store, pb, k, v, q, len);
                double g0 = o.Take(Group * HeadDim).Average(), g1 = o.Skip(Group * HeadDim).Average();
                Assert.That(store.LastReadTokens, Is.LessThanOrEqualTo(64));
                Assert.That(g0, Is.GreaterThan(4.5), $"{policy} per-head={perHead}: group 0 finds its needle");
                if (perHead)
                {
                    Assert.That(g1, Is.LessThan(-4.5), "per head: group 1 finds its own needle too");
                    Assert.That(store.Selector.LastSelection(0).ToArray(), Does.Contain(n0 / 16).And.Not.Contain(n1 / 16));
                    Assert.That(store.Selector.LastSelection(1).ToArray(), Does.Contain(n1 / 16).And.Not.Contain(n0 / 16));
                }
                else Assert.That(g1, Is.GreaterThan(-1), "shared: group 1's needle block is not read");
            }
        }
    }

    [TestCase("int8+quest", KvElementType.Int8)] [TestCase("kivi4+quest", KvElementType.Int4)] [TestCase("int8+msa", KvElementType.Int8)]
    public void QuantizedPagesViewedPerHead_EqualSharedPath_WhenHeadsRankAlike(string policy, KvElementType type)
    {
        // KV head h's keys are (h + 1)·base and every query head is the same vector, so both KV heads rank blocks alike
        // (scores scale by h + 1) and per-head selection reads the same blocks as the shared one — but through pages offset
        // to each head's channels and scales. Values differ per head, so a wrong offset shows.
        int len = 300;
        var baseK = TestData.RandomFloats(len * HeadDim, 20); var v = TestData.RandomFloats(len * KvDim, 21); var q1 = TestData.RandomFloats(HeadDim, 22, 2f);
        var k = new float[len * KvDim];
        for (int t = 0; t < len; t++)
            for (int h = 0; h < KvHeads; h++)
                for (int c = 0; c < HeadDim; c++) k[t * KvDim + h * HeadDim + c] = (h + 1) * baseK[t * HeadDim + c];
        var q = Enumerable.Range(0, Heads).SelectMany(_ => q1).ToArray();
        var outs = new List<float[]>();
        foreach (bool perHead in new[] { true, false })
        {
            var (store, pb) = Make(KvPolicySpec.Parse(policy, 1.0, 80), 320);
            using (store)
            {
                store.Selector!.PerKvHead = perHead;
                outs.Add(Decode(store, pb, k, v, q, len));
                Assert.That(store.Pages(0, 0).ToArray().Any(pg => pg.Type == type), $"{type} pages are presented");
                Assert.That(store.Selector.LastWasPerHead, Is.EqualTo(perHead));
                if (perHead) Assert.That(store.Selector.LastSelection(0).ToArray(), Is.EqualTo(store.Selector.LastSelection(1).ToArray()));
            }
        }
        Assert.That(outs[0], Is.EqualTo(outs[1]).Within(1e-5f));
    }

    [TestCase("quest", 16)] [TestCase("msa", 16)] [TestCase("quest", 40)] [TestCase("msa", 24)]
    public void VectorizedGroupScores_EqualScalarScores(string policy, int headDim)
    {
        int kvHeads = 2, heads = 6, group = heads / kvHeads, kvDim = kvHeads * headDim, len = 203, g = 16;
        var p = new AttentionParams(heads, kvHeads, headDim, 1f);
        var k = TestData.RandomFloats(len * kvDim, 30); var v = TestData.RandomFloats(len * kvDim, 31); var q = TestData.RandomFloats(heads * headDim, 32);
        using var store = new PolicyKvStore(new ContiguousKvStore(1, kvDim, 256), KvPolicySpec.Parse(policy, 0.5));
        for (int t0 = 0; t0 < len; t0 += 37)   // uneven write chunks
        {
            int n = Math.Min(37, len - t0);
            store.Write(0, 0, Enumerable.Range(t0, n).ToArray(), k.AsSpan(t0 * kvDim, n * kvDim), v.AsSpan(t0 * kvDim, n * kvDim));
        }
        int blocks = (len + g - 1) / g;
        var scores = new float[kvHeads * blocks];
        store.Selector!.BlockScores(0, 0, q, p, len, scores);
        for (int h = 0; h < kvHeads; h++)
            for (int b = 0; b < blocks; b++)
            {
                int t0 = b * g, t1 = Math.Min(len, t0 + g);
                var mn = new float[headDim]; var mx = new float[headDim]; var mean = new double[headDim];
                for (int c = 0; c < headDim; c++)
                {
                    var col = Enumerable.Range(t0, t1 - t0).Select(t => k[t * kvDim + h * headDim + c]).ToArray();
                    mn[c] = col.Min(); mx[c] = col.Max(); mean[c] = col.Average(x => (double)x);
                }
                double expected = 0;
                for (int j = h * group; j < (h + 1) * group; j++)
                {
                    var qj = q.AsSpan(j * headDim, headDim);
                    if (policy == "quest") expected += Planners.QuestBound(qj, mn, mx);
                    else for (int c = 0; c < headDim; c++) expected += qj[c] * mean[c];
                }
                Assert.That(scores[h * blocks + b], Is.EqualTo(expected).Within(1e-4 * (1 + Math.Abs(expected))), $"head {h} block {b}");
            }
    }

    [Test]
    public void TopK_PicksTheSameSetAsAFullSort()
    {
        var r = new Random(50);
        for (int trial = 0; trial < 300; trial++)
        {
            int n = r.Next(0, 200), k = r.Next(0, 60);
            // few distinct values → many ties; some NaN
            var sc = Enumerable.Range(0, n).Select(_ => r.Next(10) == 0 ? float.NaN : r.Next(trial % 2 == 0 ? 5 : 1000)).Select(x => (float)x).ToArray();
            var expected = Enumerable.Range(0, n).Where(i => !float.IsNaN(sc[i])).OrderByDescending(i => sc[i]).ThenBy(i => i).Take(k).Order().ToArray();
            var chosen = new int[k];
            int got = Planners.TopK(sc, chosen, new int[n]);
            Assert.That(chosen.Take(got).Order().ToArray(), Is.EqualTo(expected), $"trial {trial}");
        }
    }

    [Test]
    public void TruncateResummarisesTheEndBlock()
    {
        int len = 90, cut = 71;
        var k = TestData.RandomFloats(len * KvDim, 40); var v = TestData.RandomFloats(len * KvDim, 41); var q = TestData.RandomFloats(Heads * HeadDim, 42);
        using var a = new PolicyKvStore(new ContiguousKvStore(1, KvDim, 128), KvPolicySpec.Parse("quest", 0.5));
        using var b = new PolicyKvStore(new ContiguousKvStore(1, KvDim, 128), KvPolicySpec.Parse("quest", 0.5));
        a.Write(0, 0, Enumerable.Range(0, len).ToArray(), k, v);
        a.Truncate(0, cut);
        b.Write(0, 0, Enumerable.Range(0, cut).ToArray(), k.AsSpan(0, cut * KvDim), v.AsSpan(0, cut * KvDim));
        var sa = new float[KvHeads * 5]; var sb = new float[KvHeads * 5];
        a.Selector!.BlockScores(0, 0, q, P, cut, sa);
        b.Selector!.BlockScores(0, 0, q, P, cut, sb);
        Assert.That(sa, Is.EqualTo(sb));
    }

    [Test]
    public void TokenBudget_BoundsTheReadSetWhateverTheLength()
    {
        foreach (int len in new[] { 600, 3000, 9000 })
        {
            var k = TestData.RandomFloats(len * KvDim, len); var v = TestData.RandomFloats(len * KvDim, len + 1); var q = TestData.RandomFloats(Heads * HeadDim, len + 2);
            var (store, pb) = Make(KvPolicySpec.Parse("quest", 0.5, 128), len + 1, new CpuBackend(1));
            using (store)
            {
                Decode(store, pb, k, v, q, len);
                Assert.That(store.LastReadTokens, Is.LessThanOrEqualTo(128 + 16), $"len {len}");
                Assert.That(store.Selector!.LastWasTwoLevel, Is.EqualTo(len == 9000));
            }
        }
    }

    [TestCase("quest")] [TestCase("msa")]
    public void Needle_FixedTokenBudget_TwoLevel_RetrievesAtLongContext(string policy)
    {
        // 48K tokens, 256 read per step: 3072 blocks, 192 super-blocks > 4·8 → the two-level path
        var spec = KvPolicySpec.Parse(policy, 1.0, 256);
        var r = Engine.Runtime.Evaluation.NeedleEvaluator.Run(new CpuBackend(1), spec, 48 * 1024, trials: 3);
        Assert.That(r.Retrieved, Is.EqualTo(1.0), $"{policy}: needle found in every trial");
    }

    [Test]
    public void TokenBudgetParsingAndValidation()
    {
        Assert.That(KvPolicySpec.Parse("quest", 0.25, 2048).TokenBudget, Is.EqualTo(2048));
        Assert.That(KvPolicySpec.Parse("quest", 0.25, null).TokenBudget, Is.Null);
        Assert.That(KvPolicySpec.Parse("quest", 0.25, 2048).SelectionTokens(100_000), Is.EqualTo(2048));
        Assert.That(KvPolicySpec.Parse("quest", 0.25).SelectionTokens(1000), Is.EqualTo(250));
        var e = Assert.Throws<KvPolicyException>(() => KvPolicySpec.Parse("quest", 0.25, 0))!;
        Assert.That(e.Message, Does.Contain("token budget 0"));
        Assert.Throws<KvPolicyException>(() => KvPolicySpec.Parse("msa", 0.25, -5));
        Assert.Throws<KvPolicyException>(() => new PolicyKvStore(new ContiguousKvStore(1, KvDim, 16), KvPolicySpec.Parse("quest", 0.5) with { TokenBudget = 0 }));

        var run = RunCommand.Create();
        var parsed = new RootCommand { run }.Parse(["run", "--kv-policy", "quest", "--kv-budget-tokens", "2048"]);
        var opt = run.Options.OfType<Option<int?>>().Single(o => o.Name == "--kv-budget-tokens");
        Assert.That(parsed.Errors, Is.Empty);
        Assert.That(parsed.GetValue(opt), Is.EqualTo(2048));
        Assert.That(new RootCommand { RunCommand.Create() }.Parse(["run", "--kv-budget-tokens", "many"]).Errors, Is.Not.Empty);
        Assert.That(new RootCommand { ChatCommand.Create() }.Parse(["chat", "--kv-budget-tokens", "64"]).Errors, Is.Empty);
    }

    [Test]
    public void EngineLoad_RejectsANonPositiveTokenBudget()
    {
        string model = SharedData.Get("reference/stories260K/stories260K.gguf");
        var e = Assert.Throws<KvPolicyException>(() => InferenceEngine.Load(model, new EngineOptions { KvPolicy = "quest", KvPolicyBudgetTokens = 0 }))!;
        Assert.That(e.Message, Does.Contain("token budget"));
        using var ok = InferenceEngine.Load(model, new EngineOptions { Threads = 1, KvPolicy = "quest", KvPolicyBudgetTokens = 32 });
        var r = ok.GenerateTextAsync(ok.GenerateAsync("Once upon a time", new GenerationOptions { MaxTokens = 40, Sampling = new() { Temperature = 0 } }))
            .GetAwaiter().GetResult();
        Assert.That(r.TokenIds, Is.Not.Empty);
    }
}
