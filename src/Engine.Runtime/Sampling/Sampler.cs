// Owns: turning a logit vector into the next token id: penalties → (greedy | top-k → temperature → softmax → top-p →
// min-p → draw). Invariants: never allocates per call after construction (buffers sized by vocab); deterministic for a
// given seed (own SplitMix64/xoshiro256** generator, independent of System.Random's implementation); the logits span
// passed in is modified (penalties applied in place).
// Sources: repetition penalty — Keskar et al. 2019 (CTRL); presence/frequency — OpenAI API definition;
// top-p — Holtzman et al. 2019; min-p — Nguyen et al. 2024; order as in llama.cpp's default sampler chain.
namespace Engine.Runtime.Sampling;

/// <summary>Stateful sampler (holds the RNG and scratch buffers) for one generation stream.</summary>
public sealed class Sampler
{
    private readonly SamplingOptions _o;
    private readonly int[] _order;       // [vocab] candidate ids, sorted by logit descending (prefix used)
    private readonly float[] _prob;      // [vocab] candidate probabilities aligned with _order
    private readonly float[] _neg;       // [vocab] sort keys (negated logits)
    private readonly Dictionary<int, int> _counts = new();
    private ulong _s0, _s1, _s2, _s3;

    public Sampler(SamplingOptions options, int vocabSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(vocabSize, 1);
        if (float.IsNaN(options.Temperature) || options.RepetitionPenalty <= 0 || float.IsNaN(options.TopP) || float.IsNaN(options.MinP))
            throw new ArgumentException("invalid sampling options: temperature/top-p/min-p must be numbers and the repetition penalty > 0");
        _o = options;
        _order = new int[vocabSize];
        _prob = new float[vocabSize];
        _neg = new float[vocabSize];
        ulong seed = options.Seed ?? (ulong)Random.Shared.NextInt64();
        ulong sm = seed;
        _s0 = SplitMix(ref sm); _s1 = SplitMix(ref sm); _s2 = SplitMix(ref sm); _s3 = SplitMix(ref sm);
    }

    public SamplingOptions Options => _o;

    /// <summary>Picks the next token. <paramref name="logits"/> ([vocab]) is modified by the penalties.</summary>
    public int Sample(Span<float> logits, ReadOnlySpan<int> history)
    {
        if (logits.Length != _order.Length) throw new ArgumentException($"logits has {logits.Length} entries, the sampler was built for {_order.Length}");
        ApplyPenalties(logits, history);
        if (_o.Temperature <= 0f || _o.TopK == 1) return ArgMax(logits);

        // Candidates sorted by logit (descending); top-k keeps a prefix.
        int n = logits.Length;
        for (int i = 0; i < n; i++) _order[i] = i;
        int k = _o.TopK > 0 ? Math.Min(_o.TopK, n) : n;
        SortPrefix(logits, k);

        // Temperature + softmax over the k candidates.
        float inv = 1f / _o.Temperature;
        float max = logits[_order[0]];
        double sum = 0;
        for (int i = 0; i < k; i++) { float p = MathF.Exp((logits[_order[i]] - max) * inv); _prob[i] = p; sum += p; }
        for (int i = 0; i < k; i++) _prob[i] = (float)(_prob[i] / sum);

        // Top-p: smallest prefix whose mass ≥ p.
        int keep = k;
        if (_o.TopP < 1f)
        {
            double mass = 0;
            for (int i = 0; i < k; i++) { mass += _prob[i]; if (mass >= _o.TopP) { keep = i + 1; break; } }
        }
        // Min-p: drop candidates below minP × top probability (the top one always stays).
        if (_o.MinP > 0f)
        {
            float floor = _o.MinP * _prob[0];
            int m = 1;
            while (m < keep && _prob[m] >= floor) m++;
            keep = m;
        }

        double total = 0;
        for (int i = 0; i < keep; i++) total += _prob[i];
        double r = NextDouble() * total, acc = 0;
        for (int i = 0; i < keep; i++) { acc += _prob[i]; if (r < acc) return _order[i]; }
        return _order[keep - 1];
    }

    /// <summary>Applies repetition / presence / frequency penalties for the last PenaltyWindow tokens of history, in place.</summary>
    public void ApplyPenalties(Span<float> logits, ReadOnlySpan<int> history)
    {
        if (_o.RepetitionPenalty == 1f && _o.PresencePenalty == 0f && _o.FrequencyPenalty == 0f) return;
        var window = _o.PenaltyWindow > 0 && history.Length > _o.PenaltyWindow ? history[^_o.PenaltyWindow..] : history;
        _counts.Clear();
        foreach (int t in window)
            if ((uint)t < (uint)logits.Length) _counts[t] = _counts.GetValueOrDefault(t) + 1;
        foreach (var (t, count) in _counts)
        {
            float l = logits[t];
            if (_o.RepetitionPenalty != 1f) l = l > 0 ? l / _o.RepetitionPenalty : l * _o.RepetitionPenalty;
            l -= count * _o.FrequencyPenalty + _o.PresencePenalty;
            logits[t] = l;
        }
    }

    /// <summary>Index of the largest value (the lowest index on ties).</summary>
    public static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }

    /// <summary>Orders _order so its first k entries are the k largest logits, descending (ties: lower id first).</summary>
    private void SortPrefix(ReadOnlySpan<float> logits, int k)
    {
        var keys = _order;
        if (k >= keys.Length / 4)
        {
            for (int i = 0; i < logits.Length; i++) _neg[i] = -logits[i];
            Array.Sort(_neg, keys);   // ascending by −logit = descending by logit
            return;
        }
        // Partial selection: insertion into a sorted top-k window, O(vocab · k) worst case, O(vocab) typical.
        int filled = 0;
        for (int id = 0; id < logits.Length; id++)
        {
            float v = logits[id];
            if (filled == k && v <= logits[keys[k - 1]]) continue;
            int j = filled < k ? filled++ : k - 1;
            while (j > 0 && v > logits[keys[j - 1]]) { keys[j] = keys[j - 1]; j--; }
            keys[j] = id;
        }
    }

    private static ulong SplitMix(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>xoshiro256** → uniform double in [0, 1).</summary>
    private double NextDouble()
    {
        ulong result = ulong.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0; _s3 ^= _s1; _s1 ^= _s2; _s0 ^= _s3; _s2 ^= t; _s3 = ulong.RotateLeft(_s3, 45);
        return (result >> 11) * (1.0 / (1UL << 53));
    }
}
