// Owns: tests of the byte-budget compositions (mix2/mix3/mix4/auto, MixPlanner) and the all-kept low-bit tiers
// (kivi2/kivi3) in PolicyKvStore.
// Expected values: (1) the budget arithmetic (bytes = half rows rounded to row blocks + group chunks, computed here from
// the layout) and the plan's stated rules (sinks and the incomplete group kept, lowest-scored groups evicted first,
// tiers only move down); (2) a float64 attention written here over the tokens the store says it keeps, with Full rows
// rounded to half and LowBit rows quantized by an independent re-implementation of the KIVI group layout.
using Engine.Kernels;
using Engine.Memory;
using Engine.Memory.Policies;

namespace Engine.Runtime.Tests.Policies;

public class MixPolicyTests
{
    private const int Heads = 4, KvHeads = 2, HeadDim = 16, KvDim = KvHeads * HeadDim, G = 16;
    private static readonly AttentionParams P = new(Heads, KvHeads, HeadDim, 0.25f);
    private const long HalfRow = 2L * KvDim * 2, F32Row = 2L * KvDim * 4;

    /// <summary>Bytes of one low-bit group chunk, from the layout: K + V codes, key (scale, min) per channel, value (scale,
    /// min) per token and 32-channel group, halves.</summary>
    private static long Chunk(int bits, int g = G) => 2L * g * ((KvDim * bits + 7) / 8) + 4L * KvDim + 4L * g * (KvDim / 32);

    private static float[] Rand(int n, int seed, float scale = 1f)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(r.NextDouble() * 2 - 1) * scale).ToArray();
    }

    [Test]
    public void Parse_NamesBitsAndByteBudget()
    {
        Assert.That(KvPolicySpec.Parse("auto", 0.1) is { Retention: RetentionKind.Mix, Bits: 0, ByteBudget: true, Name: "auto" });
        Assert.That(KvPolicySpec.Parse("mix3", 0.25) is { Retention: RetentionKind.Mix, Bits: 3, Name: "mix3" });
        Assert.That(KvPolicySpec.Parse("kivi2", 1) is { Retention: RetentionKind.Kivi, Bits: 2, ByteBudget: false, Name: "kivi2" });
        Assert.That(KvPolicySpec.Parse("sinks", 0.25).ByteBudget, Is.False, "the older policies keep the token meaning");
        Assert.Throws<KvPolicyException>(() => KvPolicySpec.Parse("auto+quest", 0.1));
        Assert.Throws<KvPolicyException>(() => KvPolicySpec.Parse("mix4+kivi2", 0.1));
        Assert.Throws<KvPolicyException>(() => KvPolicySpec.Parse("auto", 0));
    }

    [Test]
    public void Planner_WithinBudget_KeepsSinksAndIncompleteGroup_EvictsLowestGroupsFirst_TiersOnlyMoveDown()
    {
        var c = new MixCosts(HalfRow, Chunk(4), G, Sinks: 4, Recent: 32, RowBlock: 4);
        var rng = new Random(3);
        var scores = Enumerable.Range(0, 400).Select(_ => (float)rng.NextDouble()).ToArray();
        var tiers = new KvTier[400];
        var grouped = new bool[25];
        KvTier[]? before = null;
        for (int len = 100; len <= 400; len += 13)
        {
            long budget = (long)(0.1 * len * F32Row);
            var t = tiers.AsSpan(0, len);
            long cost = MixPlanner.Plan(t, grouped, scores.AsSpan(0, len), c, budget, freshRows: 1);
            int complete = len / G;
            // bytes: recomputed here from the plan
            int rows = 1 + t.ToArray().Count(x => x == KvTier.Full);
            long chunks = grouped.Count(g => g) * c.GroupBytes;
            Assert.That(cost, Is.EqualTo((rows + 3) / 4 * 4 * HalfRow + chunks), "planner's cost = rows in whole blocks + chunks");
            Assert.That(cost, Is.LessThanOrEqualTo(budget), $"len {len}");
            for (int i = 0; i < 4; i++) Assert.That(t[i], Is.EqualTo(KvTier.Full), "sinks");
            for (int i = complete * G; i < len; i++) Assert.That(t[i], Is.EqualTo(KvTier.Full), "incomplete group");
            for (int g = 0; g < complete; g++)
                for (int i = Math.Max(4, g * G); i < (g + 1) * G; i++)
                    Assert.That(t[i] == KvTier.Evicted, Is.EqualTo(!grouped[g]), $"group {g}: evicted ⇔ no chunk");
            // evicted groups score no higher than any kept group outside the protected recent two
            double maxEvicted = double.MinValue, minKept = double.MaxValue;
            for (int g = 0; g < complete - 2; g++)
            {
                double s = 0;
                for (int i = g * G; i < (g + 1) * G; i++) s += scores[i];
                if (grouped[g]) minKept = Math.Min(minKept, s); else maxEvicted = Math.Max(maxEvicted, s);
            }
            if (maxEvicted > double.MinValue && minKept < double.MaxValue && len == 100)
                Assert.That(maxEvicted, Is.LessThanOrEqualTo(minKept), "lowest-scored groups evicted first");
            if (before != null)
                for (int i = 0; i < before.Length; i++)
                {
                    if (before[i] == KvTier.Evicted) Assert.That(t[i], Is.EqualTo(KvTier.Evicted), $"evicted {i} came back");
                    if (before[i] == KvTier.LowBit) Assert.That(t[i], Is.Not.EqualTo(KvTier.Full), $"quantized {i} became Full");
                }
            before = t.ToArray();
        }
        Assert.That(tiers.Count(x => x == KvTier.Evicted), Is.GreaterThan(0), "the budget forced eviction (the test exercises it)");
        Assert.That(tiers.Count(x => x == KvTier.LowBit), Is.GreaterThan(0));
    }

    [Test]
    public void Planner_FirstPlan_EvictsExactlyTheLowestScoredGroups()
    {
        // 10 complete groups + 4 tail tokens; group scores 0..9 in a shuffled order; budget for 6 chunks + mandatory rows
        var c = new MixCosts(HalfRow, Chunk(4), G, Sinks: 4, Recent: 0, RowBlock: 1);
        int[] groupScore = [5, 2, 9, 0, 7, 1, 8, 3, 6, 4];
        int len = 164;
        var scores = new float[len];
        for (int g = 0; g < 10; g++) for (int i = 0; i < G; i++) scores[g * G + i] = groupScore[g];
        var tiers = new KvTier[len]; var grouped = new bool[11];
        long budget = (4 + 4 + 1) * HalfRow + 6 * c.GroupBytes;
        MixPlanner.Plan(tiers, grouped, scores, c, budget, freshRows: 1);
        var kept = Enumerable.Range(0, 10).Where(g => grouped[g]).ToArray();
        Assert.That(kept, Is.EquivalentTo(Enumerable.Range(0, 10).Where(g => groupScore[g] >= 4)), "the four lowest-scored groups go");
        Assert.That(tiers.Count(x => x == KvTier.Full), Is.EqualTo(8), "no bytes left for heavy hitters: sinks + tail only");
    }

    [Test]
    public void Planner_KiviMode_KeepsEveryToken_QuantizesGroupsOlderThanTheWindow()
    {
        var c = new MixCosts(F32Row, Chunk(2), G, Sinks: 4, Recent: 32);
        var tiers = new KvTier[100]; var grouped = new bool[7];
        MixPlanner.Plan(tiers, grouped, new float[100], c, budgetBytes: null, freshRows: 0);
        // (100 − 32) / 16 = 4 complete groups quantized; sinks and positions ≥ 64 stay Full
        Assert.That(grouped, Is.EqualTo(new[] { true, true, true, true, false, false, false }));
        for (int i = 0; i < 100; i++)
            Assert.That(tiers[i], Is.EqualTo(i < 4 || i >= 64 ? KvTier.Full : KvTier.LowBit), $"position {i}");
    }

    [TestCase(0.25, 4), TestCase(0.1, 4), TestCase(0.05, 3), TestCase(0.5, 4)]
    public void Auto_ChoosesBits(double budget, int bits)
        => Assert.That(MixPlanner.ChooseBits(budget, KvDim, G, 32), Is.EqualTo(bits));

    /// <summary>Drives a store token by token (prefill of 64 first) with random data on two layers and checks after every
    /// step what it allocated against the byte budget.</summary>
    [TestCase("mix2", 0.1), TestCase("mix3", 0.25), TestCase("mix4", 0.1), TestCase("auto", 0.25), TestCase("auto", 0.1), TestCase("auto", 0.05)]
    public void ByteBudget_RespectedAtEveryStep(string policy, double budget)
    {
        const int layers = 2, total = 300, prefill = 64;
        var spec = KvPolicySpec.Parse(policy, budget);
        using var store = new PolicyKvStore(new ContiguousKvStore(layers, KvDim, total), spec);
        var pb = new PolicyBackend(new ReferenceBackend()) { Store = store };
        var k = Rand(total * KvDim * layers, 1, 2f); var v = Rand(total * KvDim * layers, 2); var q = Rand(total * Heads * HeadDim, 3);
        var o = new float[prefill * Heads * HeadDim];
        long slack = 4 * HalfRow + Chunk(4, 2 * G);                      // one row block and one chunk (the largest) per layer
        int evictedSeen = 0;
        for (int from = 0; from < total;)
        {
            int n = from == 0 ? prefill : 1;
            var pos = Enumerable.Range(from, n).ToArray();
            for (int l = 0; l < layers; l++)
            {
                int off = l * total * KvDim;
                store.Write(l, 0, pos, k.AsSpan(off + from * KvDim, n * KvDim), v.AsSpan(off + from * KvDim, n * KvDim));
                pb.Attention(q.AsSpan(from * Heads * HeadDim, n * Heads * HeadDim), pos, store.Pages(l, 0), P, o.AsSpan(0, n * Heads * HeadDim));
            }
            from += n;
            if (n > 1) continue;                                         // the prompt is planned after its own step
            for (int l = 0; l < layers; l++)
            {
                long allowed = (long)Math.Floor(budget * from * F32Row);
                // what cannot be evicted: sinks, up to G − 1 tokens of the incomplete group and the fresh row
                int lg = store.LowGroup(l, 0);
                long mandatory = (4 + lg - 1 + 1 + 3) / 4 * 4 * HalfRow;
                double held = store.HeldBytes(l, 0);
                Assert.That(held, Is.LessThanOrEqualTo(Math.Max(allowed, mandatory) + slack), $"{policy} {budget} layer {l} length {from}");
                if (mandatory <= allowed) Assert.That(held, Is.LessThanOrEqualTo(allowed), $"{policy} {budget}: within the budget itself at length {from}");
                if (spec.Bits != 0) Assert.That((store.LowBits(l, 0), lg), Is.EqualTo((spec.Bits, G)));
                else Assert.That(store.LowBits(l, 0), Is.InRange(2, 4));
                evictedSeen += store.Tiers(l, 0).Count(x => x == KvTier.Evicted);
            }
        }
        if (budget <= 0.1) Assert.That(evictedSeen, Is.GreaterThan(0), "this budget needs eviction: the test exercises it");
    }

    /// <summary>auto reads the prompt's attention: spread out (all-zero queries: uniform attention) → every token kept at
    /// the widest width that fits (3 bits in 32-token groups at 0.15: 32 B/token ≤ 0.9 · 38.4); concentrated (every query
    /// looks at token 0) → ranked and evicted at MixPlanner.ChooseBits (4 bits, 16-token groups).</summary>
    [TestCase(true), TestCase(false)]
    public void Auto_FollowsThePromptsAttention(bool diffuse)
    {
        const int total = 1000, prefill = 64;
        double budget = 0.15;
        using var store = new PolicyKvStore(new ContiguousKvStore(1, KvDim, total), KvPolicySpec.Parse("auto", budget));
        var pb = new PolicyBackend(new ReferenceBackend()) { Store = store };
        var k = Rand(total * KvDim, 21); var v = Rand(total * KvDim, 22);
        var q = new float[total * Heads * HeadDim];
        if (!diffuse)
        {
            for (int c = 0; c < KvDim; c++) k[c] = 4f;                       // token 0: a large key every query aligns with
            for (int i = 0; i < q.Length; i++) q[i] = 4f;
        }
        var o = new float[prefill * Heads * HeadDim];
        for (int from = 0; from < total;)
        {
            int n = from == 0 ? prefill : 1;
            var pos = Enumerable.Range(from, n).ToArray();
            store.Write(0, 0, pos, k.AsSpan(from * KvDim, n * KvDim), v.AsSpan(from * KvDim, n * KvDim));
            pb.Attention(q.AsSpan(from * Heads * HeadDim, n * Heads * HeadDim), pos, store.Pages(0, 0), P, o.AsSpan(0, n * Heads * HeadDim));
            from += n;
        }
        var tiers = store.Tiers(0, 0);
        Assert.That(store.HeldBytes(0, 0), Is.LessThanOrEqualTo(budget * total * F32Row));
        if (diffuse)
        {
            Assert.That(store.PromptEntropy(0, 0), Is.GreaterThanOrEqualTo(PolicyKvStore.DiffuseEntropy));
            Assert.That((store.LowBits(0, 0), store.LowGroup(0, 0)), Is.EqualTo((3, 2 * G)));
            // only while the sequence was short (sinks + a 32-token incomplete group outweigh the budget) were groups evicted
            Assert.That(tiers.Skip(300).Count(t => t == KvTier.Evicted), Is.EqualTo(0), "nothing evicted once the sequence is long");
            Assert.That(tiers.Count(t => t == KvTier.Evicted), Is.LessThan(total / 10));
        }
        else
        {
            Assert.That(store.PromptEntropy(0, 0), Is.LessThan(PolicyKvStore.DiffuseEntropy));
            Assert.That((store.LowBits(0, 0), store.LowGroup(0, 0)), Is.EqualTo((4, G)));
            Assert.That(tiers.Count(t => t == KvTier.Evicted), Is.GreaterThan(0), "4 bits at 44 B/token do not fit 38.4: groups evicted");
        }
    }

    /// <summary>The composition's attention output = a float64 attention over what the store keeps, built here: Full rows
    /// rounded to half (mix) or exact (kivi), LowBit rows of each group quantized by this file's own KIVI implementation.</summary>
    [TestCase("mix3", 0.25), TestCase("mix4", 0.1), TestCase("mix2", 0.25), TestCase("kivi2", 1.0), TestCase("kivi3", 1.0)]
    public void Composition_MatchesFloat64Reference(string policy, double budget)
    {
        const int total = 200, prefill = 48;
        var spec = KvPolicySpec.Parse(policy, budget);
        bool half = spec.Retention == RetentionKind.Mix;
        using var cpu = new CpuBackend(2);
        using var store = new PolicyKvStore(new ContiguousKvStore(1, KvDim, total), spec);
        var pb = new PolicyBackend(cpu) { Store = store };
        var k = Rand(total * KvDim, 11, 2f); var v = Rand(total * KvDim, 12); var q = Rand(total * Heads * HeadDim, 13);
        var stored = (float[] x) => half ? x.Select(a => (float)(Half)a).ToArray() : x;
        var ks = stored(k); var vs = stored(v);
        var o = new float[prefill * Heads * HeadDim];
        int checkedSteps = 0, lowSeen = 0;
        for (int from = 0; from < total;)
        {
            int n = from == 0 ? prefill : 1;
            var pos = Enumerable.Range(from, n).ToArray();
            store.Write(0, 0, pos, k.AsSpan(from * KvDim, n * KvDim), v.AsSpan(from * KvDim, n * KvDim));
            var pages = store.Pages(0, 0);
            pb.Attention(q.AsSpan(from * Heads * HeadDim, n * Heads * HeadDim), pos, pages, P, o.AsSpan(0, n * Heads * HeadDim));
            from += n;
            if (n > 1 || from % 7 != 0) continue;
            var tiers = store.Tiers(0, 0);
            int bits = spec.Bits != 0 ? spec.Bits : store.LowBits(0, 0);
            var expected = Expected(q.AsSpan((from - 1) * Heads * HeadDim, Heads * HeadDim), from - 1, tiers, ks, vs, bits);
            for (int i = 0; i < expected.Length; i++)
                Assert.That(o[i], Is.EqualTo(expected[i]).Within(2e-5 + 2e-5 * Math.Abs(expected[i])), $"{policy} length {from} output {i}");
            checkedSteps++;
            lowSeen += tiers.Count(x => x == KvTier.LowBit);
        }
        Assert.That(checkedSteps, Is.GreaterThan(10));
        Assert.That(lowSeen, Is.GreaterThan(0), "low-bit groups were present");
    }

    /// <summary>auto on an engine, both store paths: the single-sequence store (own half rows) and the paged serving
    /// loop (PolicyKvRouter: rows stay in the paged blocks, Kivi groups beside them) generate and report what they hold.</summary>
    [TestCase(false), TestCase(true)]
    public async Task Auto_RunsOnBothEnginePaths(bool paged)
    {
        string model = SharedData.Get("reference/stories260K/stories260K.gguf");
        using var e = InferenceEngine.Load(model, new EngineOptions { Threads = 2, Paged = paged, KvPolicy = "auto", KvPolicyBudget = 0.25, MaxConcurrentSequences = 1 });
        var o = new GenerationOptions { Sampling = Engine.Runtime.Sampling.SamplingOptions.Greedy, StopAtEndOfGeneration = false, MaxTokens = 120 };
        var r = await e.GenerateTextAsync(e.GenerateAsync([1, 400, 30, 250], o));
        Assert.That(r.TokenIds, Has.Length.EqualTo(120));
        if (!paged)
        {
            var u = e.KvPolicyUsage!;
            Assert.That(u.Policy, Is.EqualTo("auto"));
            Assert.That(u.HeldBytes, Is.LessThanOrEqualTo(0.25 * u.FullBytes), "the single-sequence store holds a quarter of the bytes");
        }
    }

    private static double[] Expected(ReadOnlySpan<float> q, int qPos, KvTier[] tiers, float[] k, float[] v, int bits)
    {
        int len = tiers.Length, qmax = (1 << bits) - 1;
        var kd = new double[len * KvDim]; var vd = new double[len * KvDim];
        for (int g = 0; g * G < len; g++)
        {
            int end = Math.Min(len, (g + 1) * G);
            bool low = false;
            for (int t = g * G; t < end; t++) low |= tiers[t] == KvTier.LowBit;
            // keys per channel over the group's 16 tokens; values per token over 32 channels; (scale, min) in half
            for (int t = g * G; t < end; t++)
                for (int c = 0; c < KvDim; c++) { kd[t * KvDim + c] = k[t * KvDim + c]; vd[t * KvDim + c] = v[t * KvDim + c]; }
            if (!low) continue;
            for (int c = 0; c < KvDim; c++)
            {
                float lo = float.MaxValue, hi = float.MinValue;
                for (int t = g * G; t < end; t++) { lo = Math.Min(lo, k[t * KvDim + c]); hi = Math.Max(hi, k[t * KvDim + c]); }
                (double s, double m) = HalfParams(lo, hi, qmax);
                for (int t = g * G; t < end; t++)
                    if (tiers[t] == KvTier.LowBit) kd[t * KvDim + c] = Code(k[t * KvDim + c], s, m, qmax) * s + m;
            }
            for (int t = g * G; t < end; t++)
            {
                if (tiers[t] != KvTier.LowBit) continue;
                float lo = float.MaxValue, hi = float.MinValue;
                for (int c = 0; c < KvDim; c++) { lo = Math.Min(lo, v[t * KvDim + c]); hi = Math.Max(hi, v[t * KvDim + c]); }
                (double s, double m) = HalfParams(lo, hi, qmax);
                for (int c = 0; c < KvDim; c++) vd[t * KvDim + c] = Code(v[t * KvDim + c], s, m, qmax) * s + m;
            }
        }
        var y = new double[Heads * HeadDim];
        for (int h = 0; h < Heads; h++)
        {
            int kh = h / (Heads / KvHeads);
            var w = new List<(double Score, int T)>();
            for (int t = 0; t <= qPos; t++)
            {
                if (tiers[t] == KvTier.Evicted) continue;
                double s = 0;
                for (int d = 0; d < HeadDim; d++) s += q[h * HeadDim + d] * kd[t * KvDim + kh * HeadDim + d];
                w.Add((s * P.Scale, t));
            }
            double max = w.Max(x => x.Score), z = w.Sum(x => Math.Exp(x.Score - max));
            foreach (var (s, t) in w)
                for (int d = 0; d < HeadDim; d++) y[h * HeadDim + d] += Math.Exp(s - max) / z * vd[t * KvDim + kh * HeadDim + d];
        }
        return y;
    }

    private static (double Scale, double Min) HalfParams(float lo, float hi, int qmax)
    {
        float m = (float)(Half)lo;
        return ((float)(Half)((hi - m) / qmax), m);
    }

    private static int Code(float x, double s, double m, int qmax)
    {
        float sf = (float)s, inv = sf > 0 ? 1f / sf : 0f;
        return Math.Clamp((int)MathF.Round((x - (float)m) * inv), 0, qmax);
    }
}
