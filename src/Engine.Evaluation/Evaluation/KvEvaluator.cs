// Owns: the KV-policy quality harness — teacher-forced decoding of a fixed text with a policy store versus the full
// cache: mean KL(P_full ‖ P_policy) of next-token distributions, top-1 agreement, bytes of KV the policy store has
// allocated per token (all layers: PolicyKvStore.HeldBytes, real allocations incl. partly used row blocks), decode tokens/s.
// Protocol: the first `Prefill` tokens run as one batch (prefill; SnapKV/ARKV take their statistics there), then each
// following token is fed one at a time (teacher forcing) and its logits compared with the full-cache logits at the same
// step. The budget is a fraction of the current length at every step: of its bytes (float32 K+V) for mix*/auto, of its
// tokens for the older policies. Bytes read per decode step = K/V payload + scales attention read (PolicyKvStore.ReadBytesTotal). Same model, weights and backend for both runs.
// Source: the standard KV-compression evaluation (KL vs full cache, as in e.g. KIVI / H2O ablations), reduced to CPU.
using System.Diagnostics;
using Engine.Kernels;
using Engine.Memory;
using Engine.Memory.Policies;
using Engine.Model;

namespace Engine.Runtime.Evaluation;

/// <summary>One row of the quality table.</summary>
public sealed record KvEvalResult(string Policy, double Budget, int Tokens, int Steps, double KldMean, double Top1,
    double BytesPerToken, double FullBytesPerToken, double TokensPerSecond, double ReadFraction, double BytesReadPerStep = 0)
{
    /// <summary>Held bytes as a fraction of the full float32 cache's (the byte budget's axis).</summary>
    public double HeldFraction => FullBytesPerToken > 0 ? BytesPerToken / FullBytesPerToken : 0;
}

public sealed class KvEvaluator : IDisposable
{
    private readonly TransformerModel _model;
    private readonly PolicyBackend _backend;
    private readonly int[] _tokens;
    private float[]? _fullLogits;              // [steps, vocab]
    private double _fullTokensPerSecond, _fullReadBytes;

    /// <param name="model">A model built over <paramref name="backend"/> (so the policy store sees every query).</param>
    public KvEvaluator(TransformerModel model, PolicyBackend backend, int[] tokens, int prefill)
    {
        if (tokens.Length < 2) throw new ArgumentException("the evaluation text needs at least 2 tokens");
        if (prefill < 1 || prefill >= tokens.Length) throw new ArgumentOutOfRangeException(nameof(prefill), $"prefill {prefill} must be in [1, {tokens.Length})");
        _model = model; _backend = backend; _tokens = tokens; Prefill = prefill;
    }

    public int Prefill { get; }
    public int Steps => _tokens.Length - Prefill;

    /// <summary>The fixed evaluation passage shipped with the engine (original children's-story prose).</summary>
    public static string DefaultText()
    {
        using var s = typeof(KvEvaluator).Assembly.GetManifestResourceStream("Engine.Runtime.Evaluation.story.txt")
            ?? throw new InvalidOperationException("embedded evaluation text is missing");
        using var r = new StreamReader(s);
        return r.ReadToEnd();
    }

    /// <summary>Runs the text with a store; logits [steps, vocab]; returns (decode seconds, mean held bytes / length, mean read
    /// fraction, mean K/V bytes read per decode step).</summary>
    private (double Seconds, double BytesPerToken, double ReadFraction, double ReadBytes) RunText(IKvStore store, PolicyKvStore? policy, float[] logits)
    {
        int vocab = _model.Config.VocabSize;
        var pre = new float[vocab];
        _model.Forward(ForwardBatch.ForSequence(_tokens.AsSpan(0, Prefill), 0), store, pre, allLogits: false);
        double bytes = 0, read = 0, readBytes = 0;
        var sw = new Stopwatch();
        for (int s = 0; s < Steps; s++)
        {
            int t = Prefill + s;
            long r0 = policy?.ReadBytesTotal ?? 0;
            sw.Start();
            // logits after feeding token t−1 predict token t; step s compares the prediction of token t
            if (s == 0) { pre.CopyTo(logits.AsSpan(0, vocab)); }
            else _model.Forward(ForwardBatch.ForSequence(_tokens.AsSpan(t - 1, 1), t - 1), store, logits.AsSpan(s * vocab, vocab), allLogits: false);
            sw.Stop();
            int len = store.Length(0, 0);
            if (policy != null)
            {
                double held = 0;
                for (int l = 0; l < store.LayerCount; l++) held += policy.HeldBytes(l, 0);
                bytes += held / len;
                read += policy.LastReadTokens / (double)len;
                if (s > 0) readBytes += policy.ReadBytesTotal - r0;
            }
            else
            {
                bytes += 2.0 * store.LayerCount * store.KvDim * sizeof(float); read += 1;
                if (s > 0) readBytes += 2.0 * store.LayerCount * store.KvDim * sizeof(float) * len;
            }
        }
        return (sw.Elapsed.TotalSeconds, bytes / Steps, read / Steps, readBytes / Math.Max(1, Steps - 1));
    }

    private void EnsureFull()
    {
        if (_fullLogits != null) return;
        _backend.Store = null;
        _fullLogits = new float[Steps * _model.Config.VocabSize];
        double sec = 0;
        for (int rep = 0; rep < 2; rep++)                          // the first pass warms up (JIT, scratch growth); timed: the second
        {
            using var kv = _model.CreateKvStore(_tokens.Length);
            (sec, _, _, _fullReadBytes) = RunText(kv, null, _fullLogits);
        }
        _fullTokensPerSecond = (Steps - 1) / Math.Max(sec, 1e-9);
    }

    /// <summary>The full-cache row (KLD 0, top-1 1 by definition) with its measured speed.</summary>
    public KvEvalResult Full()
    {
        EnsureFull();
        double fb = 2.0 * _model.Config.LayerCount * _model.Config.KvDim * sizeof(float);
        return new KvEvalResult("full-cache", 1.0, _tokens.Length, Steps, 0, 1, fb, fb, _fullTokensPerSecond, 1, _fullReadBytes);
    }

    public KvEvalResult Evaluate(KvPolicySpec spec)
    {
        EnsureFull();
        int vocab = _model.Config.VocabSize;
        var logits = new float[Steps * vocab];
        using var store = new PolicyKvStore(_model.CreateKvStore(_tokens.Length), spec);
        _backend.Store = store;
        (double sec, double bpt, double readFrac, double readBytes) r;
        try { r = RunText(store, store, logits); }
        finally { _backend.Store = null; }
        double kld = 0; int agree = 0;
        for (int s = 0; s < Steps; s++)
        {
            var p = _fullLogits.AsSpan(s * vocab, vocab); var q = logits.AsSpan(s * vocab, vocab);
            kld += Kl(p, q);
            if (ArgMax(p) == ArgMax(q)) agree++;
        }
        double fb = 2.0 * _model.Config.LayerCount * _model.Config.KvDim * sizeof(float);
        return new KvEvalResult(spec.Name, spec.Budget, _tokens.Length, Steps, kld / Steps, agree / (double)Steps, r.bpt, fb,
            (Steps - 1) / Math.Max(r.sec, 1e-9), r.readFrac, r.readBytes);
    }

    /// <summary>KL(softmax(p) ‖ softmax(q)) in nats, float64; exactly 0 when p and q are bitwise equal.</summary>
    public static double Kl(ReadOnlySpan<float> p, ReadOnlySpan<float> q)
    {
        double mp = double.NegativeInfinity, mq = double.NegativeInfinity;
        for (int i = 0; i < p.Length; i++) { mp = Math.Max(mp, p[i]); mq = Math.Max(mq, q[i]); }
        double zp = 0, zq = 0;
        for (int i = 0; i < p.Length; i++) { zp += Math.Exp(p[i] - mp); zq += Math.Exp(q[i] - mq); }
        double lzp = Math.Log(zp) + mp, lzq = Math.Log(zq) + mq, kl = 0;
        for (int i = 0; i < p.Length; i++)
        {
            double lp = p[i] - lzp, lq = q[i] - lzq;
            kl += Math.Exp(lp) * (lp - lq);
        }
        return Math.Max(0, kl);
    }

    private static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }

    public void Dispose() { }
}
