// llama.cpp as an oracle, in-process through LLamaSharp 0.30.0 (a recent llama.cpp, CPU build picked by AVX level):
// (1) on every shared reference fixture, LLamaSharp's logits first reproduce the fixture's stored llama.cpp logits
//     (commit c392e5094, Feb 2025), then the engine's CPU backend is compared with LLamaSharp's logits;
// (2) on the tiny `--synthetic` files (same shape as llama-256x2: 256 wide, 2 layers, 4/2 heads, vocab 512), which
//     have no stored logits, the engine is compared with LLamaSharp directly.
// Rule (reference README, "Tolerances", rule 2 — fast path vs llama.cpp): max |Δ| ≤ max(1e-4, 2 × ref max |Δ|),
// KL mean ≤ max(1e-8, 2 × ref KL mean), top-1 equal where llama.cpp's top-1 − top-2 margin > 0.1 (float types every
// such position, quantized ≥ 97 %). "ref" = the README main table row of the fixture (synthetic files use the
// llama-256x2 row of their type). Mode: one batch, logits for every position, F32 K/V, no flash attention, 2 threads,
// as the fixtures were made. Skips with a message when ../shared or llama.cpp's native library is absent.
using Engine.Baseline;
using Engine.Formats;
using Engine.Kernels;
using Engine.Model;
using Engine.Runtime.Benchmarking;
using Engine.Tensors;
using LLama.Native;

namespace Engine.Oracle.Tests;

[NonParallelizable]
public class LlamaCppOracleTests
{
    private const int Vocab = 512;

    private static readonly (string Stem, double RefMax, double RefKl, bool Quantized)[] Table = LogitStats.ReferenceFixtures;

    private string _dir = "";

    [OneTimeSetUp]
    public void Quiet()
    {
        // llama.cpp logs every tensor at load; keep test output readable. (Fails harmlessly if already loaded.)
        try { NativeLibraryConfig.All.WithLogCallback((_, _) => { }); } catch (Exception e) when (e is not OutOfMemoryException) { }
        _dir = Path.Combine(Path.GetTempPath(), "engine-oracle-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    [OneTimeTearDown] public void Clean() { if (Directory.Exists(_dir)) Directory.Delete(_dir, true); }

    public static IEnumerable<TestCaseData> Fixtures() =>
        Table.Select(r => new TestCaseData(r.Stem, r.RefMax, r.RefKl, r.Quantized).SetName($"Oracle_{Path.GetFileName(r.Stem)}"));

    [TestCaseSource(nameof(Fixtures))]
    public void EngineMatchesLlamaCppOnReferenceFixture(string stem, double refMax, double refKl, bool quantized)
    {
        string model = SharedData.Get(stem + ".gguf");
        string stored = SharedData.Get(stem.EndsWith("stories260K") ? stem + ".seq128.logits.f32" : stem + ".logits.f32");
        var tokens = Seq128();
        var llama = LlamaLogits(model, tokens);
        var fixture = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(stored)).ToArray();
        var oracle = Compare(fixture, llama, 0.1);
        TestContext.Out.WriteLine($"{Path.GetFileName(stem)}: LLamaSharp vs stored llama.cpp: {oracle}");
        Check(oracle, refMax, refKl, quantized, "LLamaSharp vs the fixture's llama.cpp logits");

        var engine = EngineLogits(model, tokens);
        var c = Compare(llama, engine, 0.1);
        TestContext.Out.WriteLine($"{Path.GetFileName(stem)}: engine vs LLamaSharp: {c}");
        Check(c, refMax, refKl, quantized, "engine vs LLamaSharp");
    }

    [TestCase(DType.F16, 4.19e-03, 4.31e-07, false)]
    [TestCase(DType.Q8_0, 1.28e-01, 3.63e-04, true)]
    [TestCase(DType.Q4_0, 1.23e-01, 3.37e-04, true)]
    [TestCase(DType.Q4_K, 1.80e-01, 6.76e-04, true)]
    public void EngineMatchesLlamaCppOnSyntheticFile(DType type, double refMax, double refKl, bool quantized)
    {
        string model = SyntheticModel.Ensure(SyntheticModel.Tiny, type, _dir);
        var rng = new Random(7);
        int[] tokens = [1, .. Enumerable.Range(0, 127).Select(_ => rng.Next(3, Vocab))];
        var llama = LlamaLogits(model, tokens);
        var engine = EngineLogits(model, tokens);
        var c = Compare(llama, engine, 0.1);
        TestContext.Out.WriteLine($"synthetic tiny {type}: engine vs LLamaSharp: {c}");
        Assert.That(c.Positions, Is.EqualTo(tokens.Length));
        Check(c, refMax, refKl, quantized, "engine vs LLamaSharp");
    }

    private static void Check(Comparison c, double refMax, double refKl, bool quantized, string what)
    {
        double maxTol = Math.Max(1e-4, 2 * refMax), klTol = Math.Max(1e-8, 2 * refKl);
        Assert.Multiple(() =>
        {
            Assert.That(c.MaxAbs, Is.LessThanOrEqualTo(maxTol), $"{what}: {c}");
            Assert.That(c.KlMean, Is.LessThanOrEqualTo(klTol), $"{what}: {c}");
            if (quantized) Assert.That(c.MarginAgreeFraction, Is.GreaterThanOrEqualTo(0.97), $"{what}: {c}");
            else Assert.That(c.MarginAgree, Is.EqualTo(c.MarginPositions), $"{what}: {c}");
        });
    }

    private static int[] Seq128()
    {
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(SharedData.Get("reference/tokens/seq128.json")));
        return doc.RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
    }

    /// <summary>llama.cpp's logits [n][vocab]: one batch, F32 K/V, no flash attention, 2 threads (the fixtures' mode).</summary>
    private static float[] LlamaLogits(string model, int[] tokens)
    {
        LlamaSide llama;
        try { llama = new LlamaSide(model, 2, tokens.Length, 1, tokens.Length, GGMLType.GGML_TYPE_F32, flashAttention: false); }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or LLama.Exceptions.RuntimeError && e is not LLama.Exceptions.LoadWeightsFailedException)
        {
            Assert.Ignore($"llama.cpp native library (LLamaSharp.Backend.Cpu) not loadable here: {e.Message}");
            throw;
        }
        using (llama)
        {
            Assert.That(llama.VocabSize, Is.EqualTo(Vocab));
            return llama.AllLogits(tokens);
        }
    }

    private static float[] EngineLogits(string model, int[] tokens)
    {
        using var file = ModelFiles.Open(model);
        using var backend = new CpuBackend(2);
        using var m = ModelLoader.Load(file, backend);
        using var kv = m.CreateKvStore(tokens.Length);
        var logits = new float[tokens.Length * m.Config.VocabSize];
        m.Forward(ForwardBatch.ForSequence(tokens, 0), kv, logits, allLogits: true);
        return logits;
    }

    private sealed record Comparison(double MaxAbs, double KlMean, int MarginPositions, int MarginAgree, int Positions)
    {
        public double MarginAgreeFraction => MarginPositions == 0 ? 1 : MarginAgree / (double)MarginPositions;
        public override string ToString() => $"max|Δ| {MaxAbs:E3}, KL mean {KlMean:E3}, top-1 where margin > 0.1 {MarginAgree}/{MarginPositions}";
    }

    /// <summary>max |Δ|, mean KL(P_expected ‖ P_actual) and top-1 agreement where expected's top-1 − top-2 &gt; threshold.</summary>
    private static Comparison Compare(float[] expected, float[] actual, double marginThreshold)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), "logit matrix sizes differ");
        int n = expected.Length / Vocab, marginPos = 0, marginAgree = 0;
        double maxAbs = 0, kl = 0;
        for (int t = 0; t < n; t++)
        {
            var e = expected.AsSpan(t * Vocab, Vocab);
            var a = actual.AsSpan(t * Vocab, Vocab);
            for (int i = 0; i < Vocab; i++) { double d = Math.Abs(e[i] - (double)a[i]); maxAbs = double.IsNaN(d) ? double.PositiveInfinity : Math.Max(maxAbs, d); }
            kl += LogitStats.Kl(e, a);
            int ea = LogitStats.ArgMax(e, out double margin), aa = LogitStats.ArgMax(a, out _);
            if (margin > marginThreshold) { marginPos++; if (ea == aa) marginAgree++; }
        }
        return new Comparison(maxAbs, kl / n, marginPos, marginAgree, n);
    }


}
