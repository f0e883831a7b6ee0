// Owns: the log-probabilities reported with generated tokens (OpenAI's logprobs / top_logprobs): the log-softmax of the
// logits the sampler saw (after repetition/presence/frequency penalties, before temperature and the top-k/p filters),
// for the chosen token and the k most likely alternatives. Invariants: values ≤ 0; alternatives sorted by log-probability
// descending (ties: lower id first); k ≤ MaxTop. Source: OpenAI API reference (chat completions, logprobs).
namespace Engine.Runtime.Sampling;

/// <summary>One alternative token and its log-probability.</summary>
public readonly record struct TokenAlternative(int TokenId, float LogProb);

/// <summary>A generated token's log-probability and the most likely alternatives at its position.</summary>
public sealed record TokenLogProb(int TokenId, float LogProb, IReadOnlyList<TokenAlternative> Top);

public static class LogProbs
{
    /// <summary>The most alternatives one position may report (OpenAI's limit).</summary>
    public const int MaxTop = 20;

    /// <summary>log softmax(<paramref name="logits"/>) at <paramref name="chosen"/>, plus the <paramref name="top"/> largest.</summary>
    public static TokenLogProb Compute(ReadOnlySpan<float> logits, int chosen, int top)
    {
        if ((uint)chosen >= (uint)logits.Length) throw new ArgumentOutOfRangeException(nameof(chosen));
        top = Math.Clamp(top, 0, Math.Min(MaxTop, logits.Length));
        float max = float.NegativeInfinity;
        foreach (float l in logits) if (l > max) max = l;
        double sum = 0;
        foreach (float l in logits) sum += Math.Exp(l - max);
        float logZ = max + (float)Math.Log(sum);
        Span<int> best = stackalloc int[Math.Max(1, top)];
        int filled = 0;
        for (int id = 0; id < logits.Length && top > 0; id++)
        {
            float v = logits[id];
            if (filled == top && v <= logits[best[top - 1]]) continue;
            int j = filled < top ? filled++ : top - 1;
            while (j > 0 && v > logits[best[j - 1]]) { best[j] = best[j - 1]; j--; }
            best[j] = id;
        }
        var alts = new TokenAlternative[filled];
        for (int i = 0; i < filled; i++) alts[i] = new TokenAlternative(best[i], logits[best[i]] - logZ);
        return new TokenLogProb(chosen, logits[chosen] - logZ, alts);
    }
}
