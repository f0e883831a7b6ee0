// Owns: the `engine eval` entry points in terms a front end has (backend name, model path, policy text, budgets),
// so the CLI needs neither Memory's KvPolicySpec nor Model/Formats types: one backend per session; the needle test; the
// policy table over a text (KvEvaluator over a model built on a PolicyBackend).
// Invariants: every policy text is parsed exactly as KvPolicySpec.Parse does (same errors); results are the evaluators'.
namespace Engine.Runtime.Evaluation;

using Engine.Formats;
using Engine.Kernels;
using Engine.Memory.Policies;
using Engine.Model;

/// <summary>A compute backend opened for evaluations (needle test, policy table).</summary>
public sealed class EvalSession : IDisposable
{
    private readonly IBackend _backend;

    private EvalSession(IBackend backend) => _backend = backend;

    /// <summary>Opens backend <paramref name="backend"/> (cpu, reference, gpu, gpu-sim, auto) with <paramref name="threads"/>.</summary>
    public static EvalSession Open(string backend, int threads) => new(Backends.Create(backend, threads));

    public string BackendName => _backend.Name;

    /// <summary>Throws ArgumentException when <paramref name="policy"/> at <paramref name="budget"/> is not a valid KV policy.</summary>
    public static void Validate(string policy, double budget, int? budgetTokens) => KvPolicySpec.Parse(policy, budget, budgetTokens);

    /// <summary>True for a policy whose budget changes nothing (full cache, int8, kivi4 without selection): evaluated once.</summary>
    public static bool IsBudgetFree(string policy)
    {
        var spec = KvPolicySpec.Parse(policy, 1.0);
        return spec.Selection == SelectionKind.None && spec.Retention is RetentionKind.Full or RetentionKind.Int8 or RetentionKind.Kivi4 or RetentionKind.Kivi;
    }

    /// <summary>The planted-needle retrieval test (<see cref="NeedleEvaluator.Run"/>).</summary>
    public NeedleResult Needle(string policy, double budget, int? budgetTokens, int context, int trials, bool disk) =>
        NeedleEvaluator.Run(_backend, KvPolicySpec.Parse(policy, budget, budgetTokens), context, trials, disk: disk);

    /// <summary>Loads <paramref name="modelPath"/> over a policy backend and tokenizes <paramref name="text"/> (cut to the
    /// model's context) for the policy table; <paramref name="prefill"/> ≤ 0 = a quarter of the text, at most 128.</summary>
    public PolicyEvaluation OpenText(string modelPath, string text, int prefill) => new(modelPath, _backend, text, prefill);

    public void Dispose() => _backend.Dispose();
}

/// <summary>A model and text ready for <see cref="KvEvaluator"/>: the full-cache row, then one row per policy.</summary>
public sealed class PolicyEvaluation : IDisposable
{
    private readonly ModelFile _file;
    private readonly TransformerModel _model;
    private readonly KvEvaluator _evaluator;

    internal PolicyEvaluation(string path, IBackend backend, string text, int prefill)
    {
        _file = ModelFiles.Open(path);
        try
        {
            var tok = TokenizerAdapter.FromModelFile(_file) ?? throw new ArgumentException($"model {path} carries no tokenizer; eval needs one to tokenize the text");
            var pb = new PolicyBackend(backend);
            _model = ModelLoader.Load(_file, pb);
            int[] ids = tok.Encode(text, addSpecial: true, parseSpecial: false);
            if (ids.Length > _model.Config.ContextLength) ids = ids[.._model.Config.ContextLength];
            Tokens = ids.Length;
            int pre = prefill > 0 ? prefill : Math.Min(128, ids.Length / 4);
            _evaluator = new KvEvaluator(_model, pb, ids, pre);
        }
        catch
        {
            _model?.Dispose();
            _file.Dispose();
            throw;
        }
    }

    /// <summary>Tokens of the text (after the cut to the model's context).</summary>
    public int Tokens { get; }
    /// <summary>Tokens processed as one prompt batch.</summary>
    public int Prefill => _evaluator.Prefill;
    /// <summary>Teacher-forced decode steps.</summary>
    public int Steps => _evaluator.Steps;

    /// <summary>The full-cache row (the reference of every KLD).</summary>
    public KvEvalResult Full() => _evaluator.Full();

    /// <summary>One policy's row.</summary>
    public KvEvalResult Evaluate(string policy, double budget, int? budgetTokens) => _evaluator.Evaluate(KvPolicySpec.Parse(policy, budget, budgetTokens));

    public void Dispose()
    {
        _evaluator.Dispose();
        _model.Dispose();
        _file.Dispose();
    }
}
