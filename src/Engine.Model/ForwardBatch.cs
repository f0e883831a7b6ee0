// Owns: the data a forward pass consumes — which tokens, at which positions, of which sequences.
// Invariants: Tokens, Positions and SequenceIds have equal length; tokens of one sequence appear in increasing
// position order. Plain data: a scheduler builds it, the model reads it (DESIGN.md "Models don't own caches").
namespace Engine.Model;

/// <summary>One step of work for a model: tokens with their positions and sequence ids.</summary>
public sealed record ForwardBatch(int[] Tokens, int[] Positions, int[] SequenceIds)
{
    public int Count => Tokens.Length;

    /// <summary>A batch of consecutive tokens of one sequence starting at <paramref name="startPosition"/>.</summary>
    public static ForwardBatch ForSequence(ReadOnlySpan<int> tokens, int startPosition, int seqId = 0)
    {
        var pos = new int[tokens.Length];
        var seq = new int[tokens.Length];
        for (int i = 0; i < pos.Length; i++) { pos[i] = startPosition + i; seq[i] = seqId; }
        return new ForwardBatch(tokens.ToArray(), pos, seq);
    }

    /// <summary>Throws ArgumentException when the arrays disagree or are empty.</summary>
    public void Validate(int vocabSize)
    {
        if (Tokens.Length == 0) throw new ArgumentException("empty forward batch");
        if (Positions.Length != Tokens.Length || SequenceIds.Length != Tokens.Length)
            throw new ArgumentException($"batch arrays differ in length: tokens {Tokens.Length}, positions {Positions.Length}, sequence ids {SequenceIds.Length}");
        foreach (int t in Tokens)
            if ((uint)t >= (uint)vocabSize) throw new ArgumentOutOfRangeException(nameof(Tokens), $"token id {t} is outside the vocabulary (0..{vocabSize - 1})");
    }
}
