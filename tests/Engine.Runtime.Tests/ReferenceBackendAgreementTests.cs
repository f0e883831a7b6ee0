// Exact-path agreement (README "Tolerances for the project's tests", rule 1): the scalar ReferenceBackend running the
// model on tokens/seq128.json against the independent float64 numpy forward (`.ref-np-f64.logits.f32`):
// max |Δ| ≤ 1e-3 for every fixture and type, top-1 equal wherever the reference's top-1 − top-2 margin > 1e-2.
using Engine.Kernels;

namespace Engine.Runtime.Tests;

public class ReferenceBackendAgreementTests
{
    public static IEnumerable<TestCaseData> Cases()
    {
        foreach (var t in new[] { "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K", "Q6_K", "Q4_K_M" })
            yield return new TestCaseData($"reference/llama-256x2/rand-llama-{t}").SetName($"Reference_llama_{t}");
        yield return new TestCaseData("reference/qwen2-256x2/rand-qwen2-F32").SetName("Reference_qwen2_F32");
        yield return new TestCaseData("reference/stories260K/stories260K").SetName("Reference_stories260K");
    }

    [TestCaseSource(nameof(Cases))]
    public void MatchesFloat64NumpyReference(string stem)
    {
        string model = stem + ".gguf";
        string refLogits = stem.EndsWith("stories260K") ? stem + ".seq128.ref-np-f64.logits.f32" : stem + ".ref-np-f64.logits.f32";
        var expected = Fixtures.ReadLogits(refLogits);
        using var backend = new ReferenceBackend();
        float[] actual;
        try { actual = Fixtures.RunLogits(model, backend, Fixtures.Seq128(), oneByOne: false); }
        catch (NotSupportedException e) when (e.Message.Contains("dequant")) { Assert.Ignore($"needs dequant: {e.Message}"); return; }
        var c = Fixtures.Compare(expected, actual, Fixtures.Vocab, marginThreshold: 1e-2);
        TestContext.Out.WriteLine($"{stem} reference vs np-f64: {c}");
        Assert.Multiple(() =>
        {
            Assert.That(c.MaxAbs, Is.LessThanOrEqualTo(1e-3), c.ToString());
            Assert.That(c.MarginAgree, Is.EqualTo(c.MarginPositions), c.ToString());
        });
    }
}
