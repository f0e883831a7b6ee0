// Owns: the plain-data description of a KV memory policy (which retention rule, which read-time selection, the budget and
// knobs) and its parsing/validation ("h2o", "arkv+quest", …). Composition rule: at most one retention policy (full,
// sinks, h2o, snapkv, arkv, int8, kivi4 — decides which tokens are kept and at what precision) plus at most one
// selection policy (quest, msa — decides which kept blocks a decode query reads). Anything else is rejected.
// kivi2 / kivi3 (Kivi) keep every token with the bulk in the low-bit KIVI tier (the budget is not used, like int8/kivi4);
// mix2 / mix3 / mix4 / auto (Mix) compose under a BYTE budget: Budget = the fraction of the full float32 cache's bytes
// the policy may hold (MixPlanner), auto picks the bulk's bit width from the budget. For the older retention policies
// Budget keeps its token meaning (tokens kept; quest/msa: tokens read), their bytes are reported beside it.
// Invariant: a spec that constructs is valid (budget in (0, 1], positive sizes). TokenBudget (an absolute read budget for
// selection, Quest's fixed token budget) is checked by Parse and by Validate (PolicyKvStore's constructor).
namespace Engine.Memory.Policies;

/// <summary>Which tokens are kept, at what precision.</summary>
public enum RetentionKind { Full, Sinks, H2O, SnapKV, Arkv, Int8, Kivi4, Kivi, Mix }

/// <summary>Which kept blocks a decode query reads.</summary>
public enum SelectionKind { None, Quest, Msa }

/// <summary>A bad policy name, combination or budget.</summary>
public sealed class KvPolicyException(string message) : ArgumentException(message);

/// <summary>
/// A KV policy as data. <see cref="Budget"/> is the fraction of the current sequence length (in float32-token
/// equivalents) that retention may hold and that selection may read; 1.0 keeps/reads everything.
/// </summary>
public sealed record KvPolicySpec(RetentionKind Retention, SelectionKind Selection, double Budget)
{
    /// <summary>Sink tokens always kept (sinks, h2o-free; quest/msa read block 0 = sinks for quest).</summary>
    public int SinkTokens { get; init; } = 4;
    /// <summary>Tokens per block (quest min/max summaries, msa routing chunks, kivi4 key groups, int8/int4 channel groups).</summary>
    public int BlockSize { get; init; } = 16;
    /// <summary>Most recent tokens kept at full precision by int8/kivi4 (KIVI's residual R).</summary>
    public int RecentFullPrecision { get; init; } = 32;
    /// <summary>SnapKV observation window (last w queries) and pooling kernel.</summary>
    public int SnapWindow { get; init; } = 16;
    public int SnapPool { get; init; } = 7;
    /// <summary>Tokens a decode query reads per KV head under a selection policy (quest, msa), independent of the sequence
    /// length (Quest's fixed token budget); null = <see cref="Budget"/> · length. Retention still uses <see cref="Budget"/>.</summary>
    public int? TokenBudget { get; init; }
    /// <summary>Bits of the low-bit KIVI tier (kivi2/kivi3/mixN: 2, 3 or 4); 0 = chosen from the byte budget (auto).</summary>
    public int Bits { get; init; }
    /// <summary>Channels per value (scale, min) pair of the low-bit KIVI tier (per token); see <see cref="ValueGroupFor"/>.</summary>
    public int ValueGroup { get; init; } = 32;

    /// <summary>The value channel group used for a row of <paramref name="kvDim"/>: the largest divisor of kvDim ≤ <see cref="ValueGroup"/>.</summary>
    public int ValueGroupFor(int kvDim)
    {
        for (int g = Math.Min(ValueGroup, kvDim); g > 1; g--) if (kvDim % g == 0) return g;
        return 1;
    }
    /// <summary>The Full tier (sinks, incomplete key group, recent tokens, heavy hitters) is kept as IEEE half rows (mix/auto).</summary>
    public bool HalfRows => Retention == RetentionKind.Mix;
    /// <summary>Budget is a fraction of the full float32 cache's bytes (mix / auto), not of its tokens.</summary>
    public bool ByteBudget => Retention == RetentionKind.Mix;

    /// <summary>Tokens a selection policy reads at sequence length <paramref name="length"/>: <see cref="TokenBudget"/> when
    /// set, else ⌈Budget · length⌉ (at least 1).</summary>
    public int SelectionTokens(int length) => TokenBudget ?? Planners.TokenBudget(Budget, length);

    public bool NeedsAttentionMass => Retention is RetentionKind.H2O or RetentionKind.SnapKV or RetentionKind.Arkv or RetentionKind.Mix;

    public string Name => Selection == SelectionKind.None ? RetentionName
        : Retention == RetentionKind.Full ? Format(Selection) : $"{RetentionName}+{Format(Selection)}";

    private string RetentionName => Retention switch
    {
        RetentionKind.Kivi => $"kivi{Bits}",
        RetentionKind.Mix => Bits == 0 ? "auto" : $"mix{Bits}",
        _ => Format(Retention),
    };

    /// <summary>Names accepted by <see cref="Parse"/>.</summary>
    public static IReadOnlyList<string> Names { get; } = ["full", "sinks", "h2o", "snapkv", "arkv", "int8", "kivi4", "kivi2", "kivi3", "mix2", "mix3", "mix4", "auto", "quest", "msa"];

    /// <summary>Parses "name[+name]" with a budget in (0, 1].</summary>
    public static KvPolicySpec Parse(string text, double budget)
    {
        if (double.IsNaN(budget) || budget <= 0 || budget > 1)
            throw new KvPolicyException($"KV budget {budget} is impossible: it must be a fraction in (0, 1]");
        var retention = (RetentionKind?)null; var selection = (SelectionKind?)null;
        int bits = 0;
        foreach (var raw in (text ?? "").Split('+', StringSplitOptions.TrimEntries))
        {
            switch (raw.ToLowerInvariant())
            {
                case "full": Set(ref retention, RetentionKind.Full, raw); break;
                case "sinks": case "streamingllm": Set(ref retention, RetentionKind.Sinks, raw); break;
                case "h2o": Set(ref retention, RetentionKind.H2O, raw); break;
                case "snapkv": Set(ref retention, RetentionKind.SnapKV, raw); break;
                case "arkv": Set(ref retention, RetentionKind.Arkv, raw); break;
                case "int8": Set(ref retention, RetentionKind.Int8, raw); break;
                case "kivi4": case "int4": Set(ref retention, RetentionKind.Kivi4, raw); break;
                case "kivi2": Set(ref retention, RetentionKind.Kivi, raw); bits = 2; break;
                case "kivi3": Set(ref retention, RetentionKind.Kivi, raw); bits = 3; break;
                case "mix2": Set(ref retention, RetentionKind.Mix, raw); bits = 2; break;
                case "mix3": Set(ref retention, RetentionKind.Mix, raw); bits = 3; break;
                case "mix4": Set(ref retention, RetentionKind.Mix, raw); bits = 4; break;
                case "auto": Set(ref retention, RetentionKind.Mix, raw); bits = 0; break;
                case "quest": Set(ref selection, SelectionKind.Quest, raw); break;
                case "msa": Set(ref selection, SelectionKind.Msa, raw); break;
                default: throw new KvPolicyException($"unknown KV policy '{raw}' (known: {string.Join(", ", Names)}; combine one retention with quest or msa, e.g. arkv+quest)");
            }
        }
        if (retention is RetentionKind.Kivi or RetentionKind.Mix && selection != null)
            throw new KvPolicyException($"KV policy '{text}': the low-bit KIVI compositions (kivi2, kivi3, mix2/3/4, auto) do not combine with quest or msa in this version");
        return new KvPolicySpec(retention ?? RetentionKind.Full, selection ?? SelectionKind.None, budget) { Bits = bits };

        void Set<T>(ref T? slot, T value, string name) where T : struct
        {
            if (slot is { } prev)
                throw new KvPolicyException($"KV policy '{text}' combines {prev.ToString()!.ToLowerInvariant()} and {name}: "
                    + "use at most one retention policy (full, sinks, h2o, snapkv, arkv, int8, kivi4, kivi2, kivi3, mix2, mix3, mix4, auto) and at most one selection policy (quest, msa)");
            slot = value;
        }
    }

    /// <summary><see cref="Parse(string, double)"/> plus an absolute selection read budget in tokens (null = none; ≤ 0 is rejected).</summary>
    public static KvPolicySpec Parse(string text, double budget, int? tokenBudget)
    {
        CheckTokenBudget(tokenBudget);
        return Parse(text, budget) with { TokenBudget = tokenBudget };
    }

    private static void CheckTokenBudget(int? tokenBudget)
    {
        if (tokenBudget is <= 0)
            throw new KvPolicyException($"KV token budget {tokenBudget} is impossible: it must be a positive number of tokens read per step");
    }

    /// <summary>Validates the spec against a store shape (group sizes must divide the KV row).</summary>
    public void Validate(int kvDim)
    {
        CheckTokenBudget(TokenBudget);
        if (BlockSize <= 0 || SinkTokens < 0 || RecentFullPrecision < 0 || SnapWindow <= 0 || SnapPool <= 0)
            throw new KvPolicyException("KV policy sizes must be positive");
        if ((Retention is RetentionKind.Int8 or RetentionKind.Kivi4 or RetentionKind.Arkv) && (kvDim % BlockSize != 0 || (kvDim & 1) != 0))
            throw new KvPolicyException($"KV policy {Name}: group size {BlockSize} must divide the KV row width {kvDim}");
        if (Retention is RetentionKind.Kivi or RetentionKind.Mix)
        {
            if (Bits != 0 && Bits is < 2 or > 4) throw new KvPolicyException($"KV policy {Name}: {Bits} bits (2, 3 or 4)");
            if (ValueGroup <= 0) throw new KvPolicyException($"KV policy {Name}: value channel group {ValueGroup} must be positive");
        }
    }

    private static string Format<T>(T v) where T : struct => v.ToString()!.ToLowerInvariant();
}
