// Owns: tests of the KV-policy evaluation harness on the trained stories260K: the full policy equals the full cache
// exactly, every policy at budget 1.0 equals it within float rounding, and sinks' KL divergence grows (weakly) as the
// budget shrinks — properties, not tuned outputs. Also: the shipped text is ≥ 512 tokens; the needle test finds the
// needle with quest and msa.
using Engine.Formats;
using Engine.Kernels;
using Engine.Memory.Policies;
using Engine.Model;
using Engine.Runtime.Evaluation;

namespace Engine.Runtime.Tests.Policies;

public class EvalHarnessTests
{
    private static ModelFile? _file;
    private static TransformerModel? _model;
    private static PolicyBackend? _backend;
    private static KvEvaluator? _eval;
    private static int _textTokens;

    [OneTimeSetUp]
    public void Load()
    {
        _file = ModelFiles.Open(SharedData.Get("reference/stories260K/stories260K.gguf"));
        _backend = new PolicyBackend(new CpuBackend(2));
        _model = ModelLoader.Load(_file, _backend);
        var tok = TokenizerAdapter.FromModelFile(_file)!;
        var ids = tok.Encode(KvEvaluator.DefaultText(), addSpecial: true, parseSpecial: false);
        _textTokens = ids.Length;
        _eval = new KvEvaluator(_model, _backend, ids[..Math.Min(ids.Length, _model.Config.ContextLength)], 128);
    }

    [OneTimeTearDown]
    public void Unload() { _model?.Dispose(); _backend?.Inner.Dispose(); _file?.Dispose(); }

    [Test]
    public void ShippedText_IsAtLeast512Tokens() => Assert.That(_textTokens, Is.GreaterThanOrEqualTo(512));

    [Test]
    public void FullPolicy_IsExactlyTheFullCache()
    {
        var r = _eval!.Evaluate(KvPolicySpec.Parse("full", 1.0));
        Assert.That(r.KldMean, Is.EqualTo(0.0));
        Assert.That(r.Top1, Is.EqualTo(1.0));
    }

    [TestCase("sinks")] [TestCase("h2o")] [TestCase("snapkv")] [TestCase("arkv")] [TestCase("quest")] [TestCase("msa")] [TestCase("arkv+quest")]
    public void EveryPolicyAtBudgetOne_EqualsFull(string policy)
    {
        var r = _eval!.Evaluate(KvPolicySpec.Parse(policy, 1.0));
        Assert.That(r.KldMean, Is.LessThan(1e-9), "KL within float rounding (attention-mass path sums in another order)");
        Assert.That(r.Top1, Is.EqualTo(1.0));
    }

    [Test]
    public void Sinks_KldGrowsAsBudgetShrinks()
    {
        double[] budgets = [1.0, 0.5, 0.25, 0.1];
        var kld = budgets.Select(b => _eval!.Evaluate(KvPolicySpec.Parse("sinks", b)).KldMean).ToArray();
        for (int i = 1; i < kld.Length; i++)
            Assert.That(kld[i], Is.GreaterThanOrEqualTo(kld[i - 1]), $"budget {budgets[i]} vs {budgets[i - 1]}: {string.Join(", ", kld)}");
        Assert.That(kld[^1], Is.GreaterThan(0), "10 % of the cache changes the predictions");
    }

    [Test]
    public void Int8AndKivi4_HoldFewerBytes_WithSmallKld()
    {
        var full = _eval!.Full();
        var r8 = _eval.Evaluate(KvPolicySpec.Parse("int8", 1.0));
        var r4 = _eval.Evaluate(KvPolicySpec.Parse("kivi4", 1.0));
        Assert.That(r8.BytesPerToken, Is.LessThan(full.BytesPerToken * 0.5));
        Assert.That(r4.BytesPerToken, Is.LessThan(r8.BytesPerToken));
        Assert.That(r8.KldMean, Is.LessThan(r4.KldMean + 1e-12), "int8 is at least as faithful as int4");
        Assert.That(r8.Top1, Is.GreaterThan(0.9));
    }

    [TestCase("quest")] [TestCase("msa")] [TestCase("full")]
    public void Needle_IsFound(string policy)
    {
        using var b = new CpuBackend(2);
        var r = NeedleEvaluator.Run(b, KvPolicySpec.Parse(policy, 0.1), context: 8192, trials: 3);
        Assert.That(r.Retrieved, Is.EqualTo(1.0));
    }
}
