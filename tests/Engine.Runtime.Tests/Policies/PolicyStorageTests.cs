// Owns: tests that PolicyKvStore holds only what its policy keeps and that owning the storage changed nothing else.
// Expected values: (1) the frozen pre-change decorator (LegacyPolicyKvStore, every row in a float32 inner store) run
// side by side on the same data — outputs, logits and the presented (position, tier) sets must be identical;
// (2) properties: allocated bytes ≤ the policy's budget in float32-token units + one row block per tier and layer,
// allocated bytes ≥ the payload of the tokens presented, bytes drop after eviction, Truncate/Clear return them.
using Engine.Formats;
using Engine.Kernels;
using Engine.Memory;
using Engine.Memory.Policies;
using Engine.Model;
using Engine.Runtime.Evaluation;

namespace Engine.Runtime.Tests.Policies;

public class PolicyStorageTests
{
    private const int Heads = 4, KvHeads = 2, HeadDim = 16, KvDim = KvHeads * HeadDim, B = PolicyKvStore.DefaultBlockTokens;
    private static readonly AttentionParams P = new(Heads, KvHeads, HeadDim, 0.25f);
    private const double FullRow = 2.0 * KvDim * 4;                                  // float32 K + V bytes of one token
    private static readonly double Int8Row = KvDecode.BytesPerToken(KvElementType.Int8, KvDim, 16);

    /// <summary>One store under test, driven layer by layer like a model: write, pages, attention (through its backend).</summary>
    private sealed class Driver(IKvStore store, IBackend backend, int layers)
    {
        public IKvStore Store { get; } = store;

        /// <summary>Writes tokens [from, to) of every layer (layer l uses the data shifted by l) and attends with their queries; returns outputs [layers, n, heads·hd].</summary>
        public float[] Step(float[] k, float[] v, float[] q, int from, int to)
        {
            int n = to - from, row = Heads * HeadDim;
            var pos = Enumerable.Range(from, n).ToArray();
            var o = new float[layers * n * row];
            for (int l = 0; l < layers; l++)
            {
                int sh = l * 7;   // a different slice of the random data per layer
                Store.Write(l, 0, pos, k.AsSpan((from + sh) * KvDim, n * KvDim), v.AsSpan((from + sh) * KvDim, n * KvDim));
                backend.Attention(q.AsSpan((from + sh) * row, n * row), pos, Store.Pages(l, 0), P, o.AsSpan(l * n * row, n * row));
            }
            return o;
        }

        /// <summary>(position, tier) of every presented token of layer l, in page order.</summary>
        public List<(int Pos, KvElementType Type)> Presented(int l)
        {
            var list = new List<(int, KvElementType)>();
            foreach (var pg in Store.Pages(l, 0))
                for (int j = 0; j < pg.TokenCount; j++) list.Add((pg.StartPosition + j, pg.Type));
            return list;
        }
    }

    private static (Driver New, Driver Old, PolicyKvStore Store) Pair(string policy, double budget, int layers, int capacity,
        PolicyRowStorage rows = PolicyRowStorage.Auto)
    {
        var spec = KvPolicySpec.Parse(policy, budget);
        var store = new PolicyKvStore(new ContiguousKvStore(layers, KvDim, capacity), spec, rows);
        var pb = new PolicyBackend(new ReferenceBackend()) { Store = store };
        var legacy = new LegacyPolicyKvStore(new ContiguousKvStore(layers, KvDim, capacity), spec);
        var lb = new LegacyPolicyBackend(new ReferenceBackend()) { Store = legacy };
        return (new Driver(store, pb, layers), new Driver(legacy, lb, layers), store);
    }

    // Retention policies only: the legacy class's read-time selection (one block choice shared by all KV heads, summed
    // scores) was replaced by PageSelector's per-KV-head selection, which PageSelectorTests check against full attention
    // and a float64 per-head reference instead.
    private static readonly string[] Policies = ["sinks", "h2o", "snapkv", "arkv", "int8", "kivi4"];

    [Test, Combinatorial]
    public void SameOutputsAndTokensAsLegacy(
        [ValueSource(nameof(Policies))] string policy,
        [Values(0.1, 0.25, 0.5)] double budget,
        [Values(PolicyRowStorage.Own, PolicyRowStorage.Inner)] PolicyRowStorage rows)
    {
        const int layers = 2, len = 180, prefill = 40;
        var k = TestData.RandomFloats((len + 8) * KvDim, 1); var v = TestData.RandomFloats((len + 8) * KvDim, 2); var q = TestData.RandomFloats((len + 8) * Heads * HeadDim, 3);
        var (cur, old, store) = Pair(policy, budget, layers, 256, rows);
        using var s1 = store; using var s2 = old.Store;
        Assert.That(cur.Step(k, v, q, 0, prefill), Is.EqualTo(old.Step(k, v, q, 0, prefill)), "prefill");
        for (int t = prefill; t < len; t++)
        {
            var a = cur.Step(k, v, q, t, t + 1); var e = old.Step(k, v, q, t, t + 1);
            Assert.That(a, Is.EqualTo(e), $"decode output at position {t}");
            if (t % 20 == 0 || t == len - 1)
                for (int l = 0; l < layers; l++)
                    Assert.That(cur.Presented(l), Is.EqualTo(old.Presented(l)), $"presented (position, tier) at {t}, layer {l}");
        }
        for (int l = 0; l < layers; l++) Assert.That(store.Tiers(l, 0), Is.EqualTo(((LegacyPolicyKvStore)old.Store).Tiers(l, 0)));
    }

    [Test]
    public void OwnStorage_DoesNotWriteTheInnerStore_AndAutoPicksByStore()
    {
        using var own = new PolicyKvStore(new ContiguousKvStore(1, KvDim, 64), KvPolicySpec.Parse("sinks", 0.25));
        own.Write(0, 0, [0, 1, 2], TestData.RandomFloats(3 * KvDim, 1), TestData.RandomFloats(3 * KvDim, 2));
        Assert.That(own.RowStorage, Is.EqualTo(PolicyRowStorage.Own));
        Assert.That(own.Inner.Length(0, 0), Is.EqualTo(0), "owned rows: the inner store is never written");
        Assert.That(own.Length(0, 0), Is.EqualTo(3));
        using var full = new PolicyKvStore(new ContiguousKvStore(1, KvDim, 64), KvPolicySpec.Parse("full", 1.0));
        Assert.That(full.RowStorage, Is.EqualTo(PolicyRowStorage.Inner), "full retention passes through to the inner store");
        using var disk = new PolicyKvStore(new Engine.Memory.Disk.MappedKvStore(1, KvDim, 64), KvPolicySpec.Parse("h2o", 0.25));
        Assert.That(disk.RowStorage, Is.EqualTo(PolicyRowStorage.Inner), "a disk-backed store keeps its rows");
    }

    [Test, Combinatorial]
    public void AllocatedBytes_AtMostBudgetPlusOneBlockPerTierAndLayer(
        [Values("sinks", "h2o", "snapkv", "arkv", "arkv+quest")] string policy,
        [Values(0.05, 0.1, 0.25, 0.5, 0.75, 1.0)] double budget)
    {
        const int layers = 3, len = 260, prefill = 50;
        var k = TestData.RandomFloats((len + 16) * KvDim, 4); var v = TestData.RandomFloats((len + 16) * KvDim, 5); var q = TestData.RandomFloats((len + 16) * Heads * HeadDim, 6);
        var spec = KvPolicySpec.Parse(policy, budget);
        using var store = new PolicyKvStore(new ContiguousKvStore(layers, KvDim, 512), spec);
        var d = new Driver(store, new PolicyBackend(new ReferenceBackend()) { Store = store }, layers);
        d.Step(k, v, q, 0, prefill);
        double slackPerLayer = B * FullRow + (spec.Retention == RetentionKind.Arkv ? B * Int8Row : 0);
        for (int t = prefill; t < len; t++)
        {
            d.Step(k, v, q, t, t + 1);
            int n = t + 1;
            double summaries = 0;
            int blocks = (n + 15) / 16, supers = (blocks + PageSelector.SuperBlocks - 1) / PageSelector.SuperBlocks;
            // PageSelector: quest rows [blocks, 2·kvDim] + super rows [supers, 2·kvDim], each grown by a quarter
            if (spec.Selection == SelectionKind.Quest) summaries = layers * 4.0 * 2 * KvDim * ((1.25 * blocks + 5) + (1.25 * supers + 2));
            double bound = layers * (Planners.TokenBudget(budget, n) * FullRow + slackPerLayer) + summaries;
            Assert.That(store.AllocatedBytes, Is.LessThanOrEqualTo(bound), $"allocated at {n} tokens");
            double payload = 0;
            for (int l = 0; l < layers; l++)
                foreach (var (_, type) in d.Presented(l)) payload += type == KvElementType.F32 ? FullRow : Int8Row;
            Assert.That(store.AllocatedBytes, Is.GreaterThanOrEqualTo(payload), "the presented tokens' payload is really held");
        }
    }

    [TestCase("sinks")] [TestCase("h2o")] [TestCase("snapkv")]
    public void Eviction_ReturnsBlocks(string policy)
    {
        const int prefill = 160;
        var k = TestData.RandomFloats(200 * KvDim, 7); var v = TestData.RandomFloats(200 * KvDim, 8); var q = TestData.RandomFloats(200 * Heads * HeadDim, 9);
        using var store = new PolicyKvStore(new ContiguousKvStore(1, KvDim, 256), KvPolicySpec.Parse(policy, 0.1));
        var d = new Driver(store, new PolicyBackend(new ReferenceBackend()) { Store = store }, 1);
        d.Step(k, v, q, 0, prefill);
        Assert.That(store.AllocatedBytes, Is.EqualTo(prefill * FullRow), "prefill: every token is fresh, 10 full blocks");
        d.Step(k, v, q, prefill, prefill + 1);
        int kept = Planners.TokenBudget(0.1, prefill + 1);
        Assert.That(store.AllocatedBytes, Is.LessThanOrEqualTo((kept + B - 1) * FullRow), "after the first decode step only the kept rows remain");
    }

    [TestCase("int8", KvElementType.Int8)] [TestCase("kivi4", KvElementType.Int4)]
    public void QuantizedTiers_HoldQuantizedBytesOnly(string policy, KvElementType type)
    {
        const int len = 240, recent = 32;
        var k = TestData.RandomFloats((len + 8) * KvDim, 10); var v = TestData.RandomFloats((len + 8) * KvDim, 11); var q = TestData.RandomFloats((len + 8) * Heads * HeadDim, 12);
        using var store = new PolicyKvStore(new ContiguousKvStore(1, KvDim, 256), KvPolicySpec.Parse(policy, 1.0));
        var d = new Driver(store, new PolicyBackend(new ReferenceBackend()) { Store = store }, 1);
        d.Step(k, v, q, 0, 16);
        for (int t = 16; t < len; t++) d.Step(k, v, q, t, t + 1);
        double quant = KvDecode.BytesPerToken(type, KvDim, 16);
        // quantized tokens at their tier's bytes; the residual window (+ an unfinished kivi group) at float32; one block of slack per tier
        double bound = (len - recent) * quant + (recent + 16) * FullRow + B * FullRow + B * Int8Row;
        Assert.That(store.AllocatedBytes, Is.LessThanOrEqualTo(bound));
        Assert.That(store.AllocatedBytes, Is.LessThan(0.5 * len * FullRow));
    }

    [TestCase("sinks")] [TestCase("h2o")] [TestCase("arkv")] [TestCase("int8")] [TestCase("kivi4")] [TestCase("snapkv")]
    public void TruncateThenContinue_SameAsLegacy_AndClearReturnsEverything(string policy)
    {
        const int len = 150, cut = 64;
        var k = TestData.RandomFloats((len + 8) * KvDim, 13); var v = TestData.RandomFloats((len + 8) * KvDim, 14); var q = TestData.RandomFloats((len + 8) * Heads * HeadDim, 15);
        var (cur, old, store) = Pair(policy, 0.25, 2, 256);
        using var s1 = store; using var s2 = old.Store;
        foreach (var drv in new[] { cur, old })
        {
            drv.Step(k, v, q, 0, 32);
            for (int t = 32; t < len; t++) drv.Step(k, v, q, t, t + 1);
        }
        long before = store.AllocatedBytes;
        store.Truncate(0, cut); old.Store.Truncate(0, cut);
        Assert.That(store.Length(0, 0), Is.EqualTo(cut));
        Assert.That(store.AllocatedBytes, Is.LessThanOrEqualTo(before));
        // the same tokens again (the legacy store kept stale int8 copies of truncated positions, so only the same data compares)
        for (int t = cut; t < len; t++)
            Assert.That(cur.Step(k, v, q, t, t + 1), Is.EqualTo(old.Step(k, v, q, t, t + 1)), $"after truncation, position {t}");
        Assert.That(store.AllocatedBytes, Is.GreaterThan(0));
        store.Clear(0);
        Assert.That(store.AllocatedBytes, Is.EqualTo(0), "Clear returns every block");
        Assert.That(store.MetadataBytes, Is.EqualTo(0), "and the per-position bookkeeping");
        Assert.That(store.Pages(0, 0).Length, Is.EqualTo(0));
    }

    [TestCase("sinks+quest", PolicyRowStorage.Own)] [TestCase("sinks+msa", PolicyRowStorage.Own)]
    [TestCase("sinks+quest", PolicyRowStorage.Inner)] [TestCase("quest", PolicyRowStorage.Auto)] [TestCase("msa", PolicyRowStorage.Auto)]
    public void Selection_TruncateMidBlockThenContinue_SameAsAFreshStore(string policy, PolicyRowStorage rows)
    {
        // budget 1 keeps every token, so after a cut inside a block the re-summarised block (from the store's own rows or
        // the inner store's) must equal the write-time summary of a store that never saw the truncated tail: same outputs
        const int len = 200, cut = 71;
        var k = TestData.RandomFloats((len + 8) * KvDim, 31); var v = TestData.RandomFloats((len + 8) * KvDim, 32); var q = TestData.RandomFloats((len + 8) * Heads * HeadDim, 33);
        var other = TestData.RandomFloats((len + 8) * KvDim, 34);
        var spec = KvPolicySpec.Parse(policy, 1.0) with { TokenBudget = 48 };
        using var a = new PolicyKvStore(new ContiguousKvStore(2, KvDim, 256), spec, rows);
        using var b = new PolicyKvStore(new ContiguousKvStore(2, KvDim, 256), spec, rows);
        var da = new Driver(a, new PolicyBackend(new ReferenceBackend()) { Store = a }, 2);
        var db = new Driver(b, new PolicyBackend(new ReferenceBackend()) { Store = b }, 2);
        da.Step(k, v, q, 0, 32);
        for (int t = 32; t < cut; t++) da.Step(k, v, q, t, t + 1);
        for (int t = cut; t < cut + 40; t++) da.Step(other, other, q, t, t + 1);    // a tail that is then cut away
        a.Truncate(0, cut);
        db.Step(k, v, q, 0, 32);
        for (int t = 32; t < cut; t++) db.Step(k, v, q, t, t + 1);
        for (int t = cut; t < len; t++)
            Assert.That(da.Step(k, v, q, t, t + 1), Is.EqualTo(db.Step(k, v, q, t, t + 1)), $"position {t}");
    }

    [TestCase("int8")] [TestCase("kivi4")]
    public void TruncateThenNewTokens_SameAsAFreshStoreFedTheSameSequence(string policy)
    {
        // quantizing policies: once the new tokens are old enough to be quantized in both stores, the truncated store must
        // present exactly what a fresh store fed the same sequence does — no quantized copy of a truncated token survives
        const int len = 150, cut = 64;
        var k = TestData.RandomFloats((len + 8) * KvDim, 21); var v = TestData.RandomFloats((len + 8) * KvDim, 22); var q = TestData.RandomFloats((len + 8) * Heads * HeadDim, 23);
        var k2 = TestData.RandomFloats((len + 8) * KvDim, 24); var v2 = TestData.RandomFloats((len + 8) * KvDim, 25);
        var spec = KvPolicySpec.Parse(policy, 0.25);
        using var a = new PolicyKvStore(new ContiguousKvStore(2, KvDim, 256), spec);
        using var b = new PolicyKvStore(new ContiguousKvStore(2, KvDim, 256), spec);
        var da = new Driver(a, new PolicyBackend(new ReferenceBackend()) { Store = a }, 2);
        var db = new Driver(b, new PolicyBackend(new ReferenceBackend()) { Store = b }, 2);
        da.Step(k, v, q, 0, 32);
        for (int t = 32; t < len; t++) da.Step(k, v, q, t, t + 1);
        a.Truncate(0, cut);
        db.Step(k, v, q, 0, 32);
        for (int t = 32; t < cut; t++) db.Step(k, v, q, t, t + 1);
        var k3 = (float[])k.Clone(); var v3 = (float[])v.Clone();
        Array.Copy(k2, cut * KvDim, k3, cut * KvDim, (len - cut) * KvDim); Array.Copy(v2, cut * KvDim, v3, cut * KvDim, (len - cut) * KvDim);
        for (int t = cut; t < len; t++)
        {
            var x = da.Step(k3, v3, q, t, t + 1); var y = db.Step(k3, v3, q, t, t + 1);
            if (t >= cut + 48) Assert.That(x, Is.EqualTo(y), $"position {t}");   // (before: the truncated store's prefix is more quantized)
        }
    }

    [Test]
    public void RewritingAQuantizedOrEvictedPosition_MakesItFullAgain()
    {
        var k = TestData.RandomFloats(130 * KvDim, 18); var v = TestData.RandomFloats(130 * KvDim, 19); var q = TestData.RandomFloats(130 * Heads * HeadDim, 20);
        using var kivi = new PolicyKvStore(new ContiguousKvStore(1, KvDim, 256), KvPolicySpec.Parse("kivi4", 1.0));
        var d = new Driver(kivi, new PolicyBackend(new ReferenceBackend()) { Store = kivi }, 1);
        d.Step(k, v, q, 0, 120);
        d.Step(k, v, q, 120, 121);
        Assert.That(kivi.Tiers(0, 0)[5], Is.EqualTo(KvTier.Int4));
        var row = Enumerable.Repeat(0.5f, KvDim).ToArray();
        kivi.Write(0, 0, [5], row, row);                            // a position inside quantized group 0
        var tiers = kivi.Tiers(0, 0);
        Assert.That(tiers[..16], Is.All.EqualTo(KvTier.Full), "the group's tokens are float32 again");
        var pages = kivi.Pages(0, 0).ToArray();
        Assert.That(pages.Where(p => p.Type == KvElementType.Int4).All(p => p.StartPosition % 16 == 0), "Int4 pages start their group");
        var presented = new Driver(kivi, new ReferenceBackend(), 1).Presented(0);
        Assert.That(presented.Select(x => x.Pos), Is.EqualTo(Enumerable.Range(0, 121)), "every position still presented once, in order");
        var o = new float[Heads * HeadDim];
        new ReferenceBackend().Attention(q.AsSpan(0, Heads * HeadDim), [121], pages, P, o);
        Assert.That(o.All(float.IsFinite));

        // sinks: an evicted position rewritten is kept again (the legacy store did the same) until the next plan
        var (cur, old, store) = Pair("sinks", 0.1, 1, 256);
        using var s1 = store; using var s2 = old.Store;
        foreach (var drv in new[] { cur, old }) { drv.Step(k, v, q, 0, 100); drv.Step(k, v, q, 100, 101); }
        Assert.That(store.Tiers(0, 0)[50], Is.EqualTo(KvTier.Evicted));
        store.Write(0, 0, [50], row, row); old.Store.Write(0, 0, [50], row, row);
        Assert.That(cur.Presented(0), Is.EqualTo(old.Presented(0)));
    }

    // --- the trained model: identical logits to the legacy decorator ---

    [TestCase("sinks")] [TestCase("h2o")] [TestCase("snapkv")] [TestCase("arkv")] [TestCase("int8")] [TestCase("kivi4")]
    public void Stories260K_SameLogitsAsLegacy(string policy)
    {
        using var file = ModelFiles.Open(SharedData.Get("reference/stories260K/stories260K.gguf"));
        using var cpu = new CpuBackend(2);
        var pb = new PolicyBackend(cpu); var lb = new LegacyPolicyBackend(cpu);
        using var model = ModelLoader.Load(file, pb);
        using var legacyModel = ModelLoader.Load(file, lb);
        var tok = TokenizerAdapter.FromModelFile(file)!;
        var ids = tok.Encode(KvEvaluator.DefaultText(), addSpecial: true, parseSpecial: false)[..256];
        var spec = KvPolicySpec.Parse(policy, 0.25);
        using var store = new PolicyKvStore(model.CreateKvStore(ids.Length), spec);
        using var legacy = new LegacyPolicyKvStore(legacyModel.CreateKvStore(ids.Length), spec);
        pb.Store = store; lb.Store = legacy;
        Assert.That(store.RowStorage, Is.EqualTo(PolicyRowStorage.Own));
        int vocab = model.Config.VocabSize, prefill = 64;
        var a = new float[vocab]; var e = new float[vocab];
        model.Forward(ForwardBatch.ForSequence(ids.AsSpan(0, prefill), 0), store, a, allLogits: false);
        legacyModel.Forward(ForwardBatch.ForSequence(ids.AsSpan(0, prefill), 0), legacy, e, allLogits: false);
        Assert.That(a, Is.EqualTo(e), "prefill logits");
        double fullPerToken = 2.0 * model.Config.LayerCount * model.Config.KvDim * sizeof(float);
        for (int t = prefill; t < ids.Length; t++)
        {
            model.Forward(ForwardBatch.ForSequence(ids.AsSpan(t, 1), t), store, a, allLogits: false);
            legacyModel.Forward(ForwardBatch.ForSequence(ids.AsSpan(t, 1), t), legacy, e, allLogits: false);
            Assert.That(a, Is.EqualTo(e), $"logits after position {t}");
        }
        int n = ids.Length;
        if (spec.Retention is RetentionKind.Sinks or RetentionKind.H2O or RetentionKind.SnapKV or RetentionKind.Arkv && spec.Selection == SelectionKind.None)
            Assert.That(store.AllocatedBytes, Is.LessThanOrEqualTo(Planners.TokenBudget(0.25, n) * fullPerToken
                + model.Config.LayerCount * B * (2.0 * model.Config.KvDim * 4 + KvDecode.BytesPerToken(KvElementType.Int8, model.Config.KvDim, 16))));
        Assert.That(store.AllocatedBytes, Is.LessThan(0.6 * n * fullPerToken), "the store holds well under the float32 cache");
    }
}
