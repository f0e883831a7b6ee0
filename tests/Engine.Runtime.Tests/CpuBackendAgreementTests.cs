// Fast-path agreement (README "Tolerances for the project's tests", rule 2): CpuBackend on tokens/seq128.json against
// llama.cpp's own logits (`<fixture>.logits.f32`), in batch mode and one-token-per-forward mode:
//   max |Δ| ≤ max(1e-4, 2 × reference max |Δ|), KL mean ≤ max(1e-8, 2 × reference KL mean),
//   top-1 equal wherever llama.cpp's top-1 − top-2 margin > 0.1 (float types: all such positions; quantized: ≥ 97 %).
// The per-fixture "reference" numbers are the README main table (llama.cpp vs float64 numpy with dequantized
// weights; columns "max abs Δ" and "KL mean"), copied here as the tolerance source. stories260K is not in that
// table; its row uses README section B (float64 GGUF forward vs llama.cpp, seq128: max 9.73e-06) and rule 2's floors.
using Engine.Kernels;

namespace Engine.Runtime.Tests;

public class CpuBackendAgreementTests
{
    private static readonly (string Stem, double RefMax, double RefKl, bool Quantized)[] Table = LogitStats.ReferenceFixtures;

    public static IEnumerable<TestCaseData> Cases()
    {
        foreach (var row in Table)
            foreach (bool oneByOne in new[] { false, true })
                yield return new TestCaseData(row.Stem, row.RefMax, row.RefKl, row.Quantized, oneByOne)
                    .SetName($"Cpu_{Path.GetFileName(row.Stem)}_{(oneByOne ? "decode" : "batch")}");
    }

    [TestCaseSource(nameof(Cases))]
    public void MatchesLlamaCpp(string stem, double refMax, double refKl, bool quantized, bool oneByOne)
    {
        string expectedFile = stem.EndsWith("stories260K") ? stem + ".seq128.logits.f32" : stem + ".logits.f32";
        var expected = Fixtures.ReadLogits(expectedFile);
        using var backend = new CpuBackend(2);
        float[] actual;
        try { actual = Fixtures.RunLogits(stem + ".gguf", backend, Fixtures.Seq128(), oneByOne); }
        catch (NotSupportedException e) when (e.Message.Contains("dequant") || e.Message.Contains("not supported")) { Assert.Ignore($"CPU backend lacks this type: {e.Message}"); return; }
        var c = Fixtures.Compare(expected, actual, Fixtures.Vocab, marginThreshold: 0.1);
        double maxTol = Math.Max(1e-4, 2 * refMax), klTol = Math.Max(1e-8, 2 * refKl);
        TestContext.Out.WriteLine($"{stem} cpu {(oneByOne ? "decode" : "batch")} vs llama.cpp: {c}");
        Assert.Multiple(() =>
        {
            Assert.That(c.MaxAbs, Is.LessThanOrEqualTo(maxTol), c.ToString());
            Assert.That(c.KlMean, Is.LessThanOrEqualTo(klTol), c.ToString());
            if (quantized) Assert.That(c.MarginAgreeFraction, Is.GreaterThanOrEqualTo(0.97), c.ToString());
            else Assert.That(c.MarginAgree, Is.EqualTo(c.MarginPositions), c.ToString());
        });
    }
}
