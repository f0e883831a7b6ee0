// Owns: unit tests of the KV policy decisions (Planners, KvPolicySpec) with hand-made scores: which tokens are kept
// under a budget, monotone tiers, the Quest bound, composition rules. Expected sets are derived by hand from the
// policy definitions (papers), not from running the code.
using Engine.Memory.Policies;

namespace Engine.Runtime.Tests.Policies;

public class PlannerTests
{
    private static KvTier[] Fresh(int n) => new KvTier[n];
    private static int[] Kept(KvTier[] t) => Enumerable.Range(0, t.Length).Where(i => t[i] != KvTier.Evicted).ToArray();

    [Test]
    public void Sinks_KeepsFirstSAndRecentWindow()
    {
        var t = Fresh(20);
        Planners.Sinks(t, budgetTokens: 6, sinkTokens: 2);
        Assert.That(Kept(t), Is.EqualTo(new[] { 0, 1, 16, 17, 18, 19 }));
    }

    [Test]
    public void Sinks_BudgetAtLeastLength_KeepsEverything()
    {
        var t = Fresh(10);
        Planners.Sinks(t, 10, 4);
        Assert.That(Kept(t), Has.Length.EqualTo(10));
    }

    [Test]
    public void HeavyHitters_KeepsRecentHalfAndTopScores()
    {
        var t = Fresh(10);
        float[] s = [5, 0, 0, 9, 0, 1, 0, 0, 100, 100];
        Planners.HeavyHitters(t, s, budgetTokens: 4);
        // recent ⌈4/2⌉ = 2 → {8, 9}; the 2 heaviest of 0..7 → {3 (9), 0 (5)}
        Assert.That(Kept(t), Is.EqualTo(new[] { 0, 3, 8, 9 }));
    }

    [Test]
    public void HeavyHitters_EvictedNeverReturns_AndBudgetHolds()
    {
        var t = Fresh(12);
        var s = new float[12];
        s[1] = 10; s[2] = 8;
        Planners.HeavyHitters(t.AsSpan(0, 10), s.AsSpan(0, 10), 4);      // keeps 1, 2, 8, 9
        Assert.That(Kept(t[..10]), Is.EqualTo(new[] { 1, 2, 8, 9 }));
        s[5] = 1000;                                                       // an evicted token becomes heavy later
        Planners.HeavyHitters(t, s, 4);                                   // recent {10, 11}; heavy from kept {1, 2, 8, 9}
        Assert.That(t[5], Is.EqualTo(KvTier.Evicted));
        Assert.That(Kept(t), Is.EqualTo(new[] { 1, 2, 10, 11 }));
    }

    [Test]
    public void Arkv_RespectsMemoryBudget_AndRanksByScore()
    {
        var t = Fresh(40);
        var s = Enumerable.Range(0, 40).Select(i => (float)(i % 7)).ToArray();
        const double cost = 0.25;
        Planners.Arkv(t, s, budgetTokens: 10, fullShare: 0.5, quantCost: cost);
        int full = t.Count(x => x == KvTier.Full), q8 = t.Count(x => x == KvTier.Int8);
        Assert.Multiple(() =>
        {
            Assert.That(full + q8 * cost, Is.LessThanOrEqualTo(10 + 1e-9), "memory units within budget");
            Assert.That(full, Is.EqualTo(5), "full share 0.5 of 10");
            Assert.That(q8, Is.EqualTo(20), "(10 − 5) / 0.25 quantized tokens");
            for (int i = 40 - 3; i < 40; i++) Assert.That(t[i], Is.EqualTo(KvTier.Full), "recent ⌈B/4⌉ stay full");
            // every kept older token scores ≥ every evicted one
            float minKept = Enumerable.Range(0, 37).Where(i => t[i] != KvTier.Evicted).Min(i => s[i]);
            float maxEvicted = Enumerable.Range(0, 37).Where(i => t[i] == KvTier.Evicted).Max(i => s[i]);
            Assert.That(minKept, Is.GreaterThanOrEqualTo(maxEvicted));
        });
        // tiers only move down: a second plan with inverted scores never turns Int8/Evicted back to Full
        var before = (KvTier[])t.Clone();
        Planners.Arkv(t, s.Select(x => -x).ToArray(), 10, 0.5, cost);
        for (int i = 0; i < 40; i++) Assert.That((int)t[i], Is.GreaterThanOrEqualTo((int)before[i]), $"token {i}");
    }

    [Test]
    public void QuestBound_IsAnUpperBoundOfEveryKeyInTheBlock()
    {
        var r = new Random(3);
        for (int trial = 0; trial < 50; trial++)
        {
            int d = 8, n = 16;
            var keys = Enumerable.Range(0, n).Select(_ => Enumerable.Range(0, d).Select(_ => (float)(r.NextDouble() * 4 - 2)).ToArray()).ToArray();
            var q = Enumerable.Range(0, d).Select(_ => (float)(r.NextDouble() * 4 - 2)).ToArray();
            var min = Enumerable.Range(0, d).Select(c => keys.Min(k => k[c])).ToArray();
            var max = Enumerable.Range(0, d).Select(c => keys.Max(k => k[c])).ToArray();
            float bound = Planners.QuestBound(q, min, max);
            foreach (var k in keys) Assert.That(bound, Is.GreaterThanOrEqualTo(q.Zip(k, (a, b) => a * b).Sum() - 1e-4f));
        }
    }

    [Test]
    public void TopBlocks_PicksBestPlusAlways()
    {
        var sel = new bool[6];
        Planners.TopBlocks([1, 9, 3, 9, 0, 2], [true, false, false, false, false, true], 2, sel);
        Assert.That(sel, Is.EqualTo(new[] { true, true, false, true, false, true }));
    }

    [Test]
    public void MaxPool_AndEntropy_HandValues()
    {
        var o = new float[5];
        Planners.MaxPool([0, 5, 0, 0, 1], 3, o);
        Assert.That(o, Is.EqualTo(new float[] { 5, 5, 5, 1, 1 }));
        Assert.That(Planners.NormalizedEntropy([1, 1, 1, 1]), Is.EqualTo(1.0).Within(1e-12));
        Assert.That(Planners.NormalizedEntropy([1, 0, 0, 0]), Is.EqualTo(0.0).Within(1e-12));
    }

    [TestCase("full", RetentionKind.Full, SelectionKind.None)]
    [TestCase("arkv+quest", RetentionKind.Arkv, SelectionKind.Quest)]
    [TestCase("msa", RetentionKind.Full, SelectionKind.Msa)]
    [TestCase("H2O + msa", RetentionKind.H2O, SelectionKind.Msa)]
    [TestCase("sinks", RetentionKind.Sinks, SelectionKind.None)]
    public void Parse_ValidCombinations(string text, RetentionKind r, SelectionKind s)
    {
        var spec = KvPolicySpec.Parse(text, 0.5);
        Assert.That((spec.Retention, spec.Selection), Is.EqualTo((r, s)));
    }

    [TestCase("h2o+sinks", 0.5, "combines")]
    [TestCase("quest+msa", 0.5, "combines")]
    [TestCase("lru", 0.5, "unknown KV policy 'lru'")]
    [TestCase("h2o", 0.0, "impossible")]
    [TestCase("h2o", 1.5, "impossible")]
    [TestCase("h2o", double.NaN, "impossible")]
    public void Parse_RejectsBadInput(string text, double budget, string message)
    {
        var ex = Assert.Throws<KvPolicyException>(() => KvPolicySpec.Parse(text, budget));
        Assert.That(ex!.Message, Does.Contain(message));
    }
}
