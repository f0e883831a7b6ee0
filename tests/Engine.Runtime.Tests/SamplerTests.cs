// Tests of Engine.Runtime.Sampling.Sampler on synthetic logits: properties (top-k = 1 is greedy, seeds reproduce,
// top-p keeps the smallest set with mass ≥ p, min-p floors) and penalties checked against hand-computed values.
using Engine.Runtime.Sampling;

namespace Engine.Runtime.Tests;

public class SamplerTests
{
    private static float[] RandomLogits(int n, int seed)
    {
        var r = new Random(seed);
        var l = new float[n];
        for (int i = 0; i < n; i++) l[i] = (float)(r.NextDouble() * 8 - 4);
        return l;
    }

    private static int ArgMaxNaive(float[] l) { int b = 0; for (int i = 1; i < l.Length; i++) if (l[i] > l[b]) b = i; return b; }

    [Test]
    public void TemperatureZeroIsArgMax()
    {
        for (int s = 0; s < 20; s++)
        {
            var l = RandomLogits(300, s);
            var sampler = new Sampler(new SamplingOptions { Temperature = 0, Seed = 1 }, 300);
            Assert.That(sampler.Sample((float[])l.Clone(), []), Is.EqualTo(ArgMaxNaive(l)));
        }
    }

    [Test]
    public void TopKOneIsGreedyAtAnyTemperature()
    {
        for (int s = 0; s < 20; s++)
        {
            var l = RandomLogits(257, s);
            var sampler = new Sampler(new SamplingOptions { Temperature = 5f, TopK = 1, TopP = 1, MinP = 0, Seed = (ulong)s }, 257);
            Assert.That(sampler.Sample((float[])l.Clone(), []), Is.EqualTo(ArgMaxNaive(l)));
        }
    }

    [Test]
    public void SameSeedSameSequence_DifferentSeedDiffers()
    {
        var l = RandomLogits(512, 3);
        int[] Run(ulong seed)
        {
            var sampler = new Sampler(new SamplingOptions { Temperature = 1.5f, TopK = 0, TopP = 1, MinP = 0, Seed = seed }, 512);
            return Enumerable.Range(0, 64).Select(_ => sampler.Sample((float[])l.Clone(), [])).ToArray();
        }
        Assert.Multiple(() =>
        {
            Assert.That(Run(42), Is.EqualTo(Run(42)));
            Assert.That(Run(42), Is.Not.EqualTo(Run(43)));
        });
    }

    [Test]
    public void TopKNeverPicksOutsideTheKLargest()
    {
        var l = RandomLogits(400, 9);
        var top5 = l.Select((v, i) => (v, i)).OrderByDescending(t => t.v).Take(5).Select(t => t.i).ToHashSet();
        var sampler = new Sampler(new SamplingOptions { Temperature = 100f, TopK = 5, TopP = 1, MinP = 0, Seed = 7 }, 400);
        var seen = new HashSet<int>();
        for (int i = 0; i < 500; i++) seen.Add(sampler.Sample((float[])l.Clone(), []));
        Assert.That(seen.IsSubsetOf(top5), Is.True);
        Assert.That(seen.Count, Is.EqualTo(5), "with a huge temperature all 5 should appear in 500 draws");
    }

    [Test]
    public void TopPKeepsSmallestSetWithMassAtLeastP()
    {
        // Probabilities 0.5, 0.25, 0.125, 0.0625, ... via logits ln(p): mass of the first two = 0.75.
        int n = 8;
        var l = new float[n];
        for (int i = 0; i < n; i++) l[i] = MathF.Log(MathF.Pow(0.5f, i + 1));
        foreach (var (p, expectedSet) in new[] { (0.7f, 2), (0.75f, 2), (0.76f, 3), (0.5f, 1), (0.51f, 2) })
        {
            var sampler = new Sampler(new SamplingOptions { Temperature = 1f, TopK = 0, TopP = p, MinP = 0, Seed = 11 }, n);
            var seen = new HashSet<int>();
            for (int i = 0; i < 2000; i++) seen.Add(sampler.Sample((float[])l.Clone(), []));
            Assert.That(seen.Max() + 1, Is.EqualTo(expectedSet), $"top-p {p}");
            Assert.That(seen.Count, Is.EqualTo(expectedSet), $"top-p {p}: every kept token is drawn sometimes");
        }
    }

    [Test]
    public void MinPDropsTokensBelowFractionOfTop()
    {
        // p ∝ 1, 0.5, 0.2, 0.05 → with min-p 0.3 only ids 0 and 1 survive.
        var l = new[] { 0f, MathF.Log(0.5f), MathF.Log(0.2f), MathF.Log(0.05f) };
        var sampler = new Sampler(new SamplingOptions { Temperature = 1f, TopK = 0, TopP = 1, MinP = 0.3f, Seed = 5 }, 4);
        var seen = new HashSet<int>();
        for (int i = 0; i < 1000; i++) seen.Add(sampler.Sample((float[])l.Clone(), []));
        Assert.That(seen, Is.EquivalentTo(new[] { 0, 1 }));
    }

    [Test]
    public void DrawFrequenciesFollowTheSoftmax()
    {
        var l = new[] { 1f, 0f, -1f };
        var sampler = new Sampler(new SamplingOptions { Temperature = 1f, TopK = 0, TopP = 1, MinP = 0, Seed = 99 }, 3);
        var counts = new int[3];
        const int draws = 20000;
        for (int i = 0; i < draws; i++) counts[sampler.Sample((float[])l.Clone(), [])]++;
        double z = Math.Exp(1) + 1 + Math.Exp(-1);
        Assert.Multiple(() =>
        {
            Assert.That(counts[0] / (double)draws, Is.EqualTo(Math.Exp(1) / z).Within(0.02));
            Assert.That(counts[2] / (double)draws, Is.EqualTo(Math.Exp(-1) / z).Within(0.02));
        });
    }

    [Test]
    public void PenaltiesChangeExactlyTheSeenTokensByTheDefinedAmount()
    {
        var l = new[] { 2f, -2f, 1f, 0.5f, 3f };
        var sampler = new Sampler(new SamplingOptions
        {
            Temperature = 0, RepetitionPenalty = 2f, PresencePenalty = 0.25f, FrequencyPenalty = 0.5f, PenaltyWindow = 0,
        }, 5);
        var x = (float[])l.Clone();
        sampler.ApplyPenalties(x, [0, 1, 1, 3]);
        // id 0 (count 1, positive): 2/2 − 0.5 − 0.25 = 0.25; id 1 (count 2, negative): −2·2 − 1 − 0.25 = −5.25;
        // id 3 (count 1): 0.5/2 − 0.75 = −0.5; ids 2 and 4 untouched.
        Assert.That(x, Is.EqualTo(new[] { 0.25f, -5.25f, 1f, -0.5f, 3f }));
    }

    [Test]
    public void PenaltyWindowLimitsHistory()
    {
        var sampler = new Sampler(new SamplingOptions { Temperature = 0, PresencePenalty = 1f, PenaltyWindow = 2 }, 4);
        var x = new float[4];
        sampler.ApplyPenalties(x, [0, 1, 2, 3]);
        Assert.That(x, Is.EqualTo(new[] { 0f, 0f, -1f, -1f }));
    }

    [Test]
    public void RepetitionPenaltyCanChangeTheGreedyChoice()
    {
        var sampler = new Sampler(new SamplingOptions { Temperature = 0, RepetitionPenalty = 1.5f }, 3);
        Assert.That(sampler.Sample(new[] { 3f, 2.5f, 0f }, [0]), Is.EqualTo(1));   // 3/1.5 = 2 < 2.5
    }
}
