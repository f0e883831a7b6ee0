// Owns: the knobs of token sampling. Defaults follow common llama.cpp CLI defaults except where documented.
// Invariant: Temperature ≤ 0 means greedy (argmax after penalties); TopK ≤ 0, TopP ≥ 1 and MinP ≤ 0 disable their filters.
namespace Engine.Runtime.Sampling;

public sealed record SamplingOptions
{
    /// <summary>Softmax temperature; ≤ 0 selects greedy decoding.</summary>
    public float Temperature { get; init; } = 0.8f;
    /// <summary>Keep only the K most likely tokens; ≤ 0 disables.</summary>
    public int TopK { get; init; } = 40;
    /// <summary>Keep the smallest set of most likely tokens whose probability mass is ≥ P; ≥ 1 disables.</summary>
    public float TopP { get; init; } = 0.95f;
    /// <summary>Drop tokens whose probability is below MinP × the top probability; ≤ 0 disables.</summary>
    public float MinP { get; init; } = 0.05f;
    /// <summary>CTRL-style repetition penalty (positive logits divided, negative multiplied); 1 disables.</summary>
    public float RepetitionPenalty { get; init; } = 1f;
    /// <summary>Subtracted once from the logit of every token present in the penalty window; 0 disables.</summary>
    public float PresencePenalty { get; init; }
    /// <summary>Subtracted count-times from the logit of every token in the penalty window; 0 disables.</summary>
    public float FrequencyPenalty { get; init; }
    /// <summary>How many of the most recent tokens the penalties look at; ≤ 0 = the whole history.</summary>
    public int PenaltyWindow { get; init; } = 64;
    /// <summary>Random seed; null draws one from the OS. Same seed + same logits → same tokens.</summary>
    public ulong? Seed { get; init; }

    public static SamplingOptions Greedy { get; } = new() { Temperature = 0f };
}
