// Owns: tests of PolicyKvStore + PolicyBackend over a real float32 store: identity at budget 1.0 for every policy,
// budgets honoured in the presented pages, quantized tiers presented as Int8/Int4 pages, Quest/MSA finding a planted
// key at decode. Expected values: plain attention over the full store (the reference backend), and properties.
using Engine.Kernels;
using Engine.Memory;
using Engine.Memory.Policies;

namespace Engine.Runtime.Tests.Policies;

public class PolicyKvStoreTests
{
    private const int Heads = 4, KvHeads = 2, HeadDim = 16, KvDim = KvHeads * HeadDim;
    private static readonly AttentionParams P = new(Heads, KvHeads, HeadDim, 0.25f);

    /// <summary>Writes len tokens (prefill of `prefill` rows then one by one) and attends each step; returns the last decode output.</summary>
    private static float[] Run(IKvStore store, IBackend backend, float[] k, float[] v, float[] q, int len, int prefill)
    {
        var o = new float[prefill * Heads * HeadDim];
        var pos = Enumerable.Range(0, prefill).ToArray();
        store.Write(0, 0, pos, k.AsSpan(0, prefill * KvDim), v.AsSpan(0, prefill * KvDim));
        backend.Attention(q.AsSpan(0, prefill * Heads * HeadDim), pos, store.Pages(0, 0), P, o);
        var last = new float[Heads * HeadDim];
        for (int t = prefill; t < len; t++)
        {
            store.Write(0, 0, [t], k.AsSpan(t * KvDim, KvDim), v.AsSpan(t * KvDim, KvDim));
            backend.Attention(q.AsSpan(t * Heads * HeadDim, Heads * HeadDim), [t], store.Pages(0, 0), P, last);
        }
        return last;
    }

    [TestCase("full")] [TestCase("sinks")] [TestCase("h2o")] [TestCase("snapkv")] [TestCase("arkv")]
    [TestCase("quest")] [TestCase("msa")] [TestCase("h2o+quest")] [TestCase("arkv+msa")]
    public void BudgetOne_EqualsFullCache(string policy)
    {
        int len = 100;
        var k = TestData.RandomFloats(len * KvDim, 1); var v = TestData.RandomFloats(len * KvDim, 2); var q = TestData.RandomFloats(len * Heads * HeadDim, 3);
        var reference = new ReferenceBackend();
        using var plain = new ContiguousKvStore(1, KvDim, 128);
        var expected = Run(plain, reference, k, v, q, len, 40);
        var pb = new PolicyBackend(reference);
        using var store = new PolicyKvStore(new ContiguousKvStore(1, KvDim, 128), KvPolicySpec.Parse(policy, 1.0));
        pb.Store = store;
        var actual = Run(store, pb, k, v, q, len, 40);
        Assert.That(actual, Is.EqualTo(expected).Within(1e-6f));
        Assert.That(store.Tiers(0, 0).All(t => t == KvTier.Full), "budget 1.0 keeps every token at full precision");
    }

    [TestCase("sinks", 0.25)] [TestCase("h2o", 0.25)] [TestCase("snapkv", 0.1)] [TestCase("h2o", 0.5)]
    public void Retention_PresentsAtMostTheBudget(string policy, double budget)
    {
        int len = 120;
        var k = TestData.RandomFloats(len * KvDim, 4); var v = TestData.RandomFloats(len * KvDim, 5); var q = TestData.RandomFloats(len * Heads * HeadDim, 6);
        var pb = new PolicyBackend(new ReferenceBackend());
        using var store = new PolicyKvStore(new ContiguousKvStore(1, KvDim, 128), KvPolicySpec.Parse(policy, budget));
        pb.Store = store;
        Run(store, pb, k, v, q, len, 30);
        int presented = 0;
        int lastPos = -1;
        foreach (var pg in store.Pages(0, 0))
        {
            Assert.That(pg.StartPosition, Is.GreaterThan(lastPos), "pages in position order, no overlap");
            presented += pg.TokenCount; lastPos = pg.StartPosition + pg.TokenCount - 1;
        }
        Assert.That(presented, Is.EqualTo(Planners.TokenBudget(budget, len)));
        Assert.That(lastPos, Is.EqualTo(len - 1), "the newest token is always kept");
        // the rows really held: the presented tokens, plus at most one partly used 16-token block
        Assert.That(store.HeldBytes(0, 0), Is.InRange(presented * 2.0 * KvDim * 4, (presented + PolicyKvStore.DefaultBlockTokens - 1) * 2.0 * KvDim * 4));
    }

    [TestCase("int8", KvElementType.Int8, 1e-3)]
    [TestCase("kivi4", KvElementType.Int4, 3e-2)]
    public void QuantizedTiers_PresentQuantizedPages_WithBoundedError(string policy, KvElementType type, double bound)
    {
        int len = 100;
        var k = TestData.RandomFloats(len * KvDim, 7); var v = TestData.RandomFloats(len * KvDim, 8); var q = TestData.RandomFloats(len * Heads * HeadDim, 9);
        var reference = new ReferenceBackend();
        using var plain = new ContiguousKvStore(1, KvDim, 128);
        var expected = Run(plain, reference, k, v, q, len, 10);
        var pb = new PolicyBackend(reference);
        using var store = new PolicyKvStore(new ContiguousKvStore(1, KvDim, 128), KvPolicySpec.Parse(policy, 1.0));
        pb.Store = store;
        var actual = Run(store, pb, k, v, q, len, 10);
        var pages = store.Pages(0, 0).ToArray();
        Assert.That(pages.Any(p => p.Type == type), $"{type} pages presented");
        Assert.That(pages[^1].Type, Is.EqualTo(KvElementType.F32), "recent tokens stay full precision");
        double num = 0, den = 0;
        for (int i = 0; i < expected.Length; i++) { num += Math.Pow(actual[i] - expected[i], 2); den += expected[i] * expected[i]; }
        Assert.That(num / den, Is.LessThan(bound));
        Assert.That(store.HeldBytes(0, 0), Is.LessThan(len * 2.0 * KvDim * 4));
    }

    [TestCase("quest")] [TestCase("msa")]
    public void Selection_FindsPlantedKey(string policy)
    {
        // 400 small random keys; token 123 has a key aligned with the decode query and a distinctive value.
        int len = 400;
        var k = TestData.RandomFloats(len * KvDim, 10, 0.1f); var v = TestData.RandomFloats(len * KvDim, 11, 0.1f); var q = TestData.RandomFloats(len * Heads * HeadDim, 12, 0.1f);
        int needle = 123, last = len - 1;
        for (int h = 0; h < Heads; h++)
            for (int c = 0; c < HeadDim; c++)
            {
                float dir = ((c * 7) % 3) - 1;                              // a fixed ±1/0 direction shared by the heads
                q[(last * Heads + h) * HeadDim + c] = 3 * dir;
                k[needle * KvDim + (h / 2) * HeadDim + c] = 3 * dir;
                v[needle * KvDim + (h / 2) * HeadDim + c] = 5;
            }
        var pb = new PolicyBackend(new ReferenceBackend());
        using var store = new PolicyKvStore(new ContiguousKvStore(1, KvDim, 512), KvPolicySpec.Parse(policy, 0.1));
        pb.Store = store;
        var o = Run(store, pb, k, v, q, len, 399);
        Assert.That(store.LastReadTokens, Is.LessThanOrEqualTo(Planners.TokenBudget(0.1, len) + 16 * 3));
        Assert.That(o.Average(), Is.GreaterThan(4.5), "attention output is dominated by the needle's value");
    }
}
