// LogProbs.Compute against a double-precision log-softmax written here, and GenerationOptions.LogProbs end to end: the
// paged (batched) and single-sequence paths report the same per-token log-probabilities, one per generated token.
using Engine.Runtime.Sampling;

namespace Engine.Runtime.Tests;

public class LogProbsTests
{
    [Test]
    public void MatchesADoublePrecisionLogSoftmax()
    {
        var rng = new Random(5);
        float[] logits = Enumerable.Range(0, 300).Select(_ => (float)(rng.NextDouble() * 20 - 10)).ToArray();
        double max = logits.Max(), z = max + Math.Log(logits.Sum(l => Math.Exp(l - max)));
        var r = LogProbs.Compute(logits, 17, 5);
        Assert.That(r.LogProb, Is.EqualTo(logits[17] - z).Within(1e-4));
        var expectedTop = Enumerable.Range(0, 300).OrderByDescending(i => logits[i]).ThenBy(i => i).Take(5).ToArray();
        Assert.That(r.Top.Select(t => t.TokenId), Is.EqualTo(expectedTop));
        for (int i = 0; i < 5; i++) Assert.That(r.Top[i].LogProb, Is.EqualTo(logits[expectedTop[i]] - z).Within(1e-4));
        Assert.That(LogProbs.Compute(logits, 0, 0).Top, Is.Empty);
        Assert.That(LogProbs.Compute(logits, 0, 99).Top, Has.Count.EqualTo(LogProbs.MaxTop));
    }

    [Test]
    public async Task PagedAndSingleSequencePathsReportTheSameLogProbs()
    {
        var path = Path.Combine(SharedData.RepoRoot, "models", "stories260K.gguf");
        if (!File.Exists(path)) Assert.Ignore("models/stories260K.gguf is absent");
        var o = new GenerationOptions { MaxTokens = 12, Sampling = SamplingOptions.Greedy, LogProbs = 3 };
        async Task<List<TokenLogProb>> Run(bool paged)
        {
            using var e = InferenceEngine.Load(path, new EngineOptions { Threads = 2, Paged = paged });
            var all = new List<TokenLogProb>();
            int ids = 0;
            await foreach (var c in e.GenerateAsync("Once upon a time", o))
            {
                Assert.That(c.LogProbs, Is.Not.Null);
                Assert.That(c.LogProbs!.Select(l => l.TokenId), Is.EqualTo(c.TokenIds));
                all.AddRange(c.LogProbs!);
                ids += c.TokenIds.Count;
            }
            Assert.That(all, Has.Count.EqualTo(ids));
            return all;
        }
        var paged = await Run(true);
        var single = await Run(false);
        Assert.That(paged.Select(l => l.TokenId), Is.EqualTo(single.Select(l => l.TokenId)));
        for (int i = 0; i < paged.Count; i++)
        {
            Assert.That(paged[i].LogProb, Is.EqualTo(single[i].LogProb).Within(1e-3));
            Assert.That(paged[i].TokenId, Is.EqualTo(paged[i].Top[0].TokenId), "greedy: the chosen token is the most likely");
        }
    }
}
