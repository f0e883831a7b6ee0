// Owns: the Microsoft.Extensions.AI IChatClient adapter over InferenceEngine (streaming and non-streaming).
// Invariants: ChatOptions map onto GenerationOptions (temperature, top-p, top-k, max output tokens, seed, stop
// sequences, presence/frequency penalties); engine knobs ChatOptions lacks come from ChatOptions.AdditionalProperties
// under the names of the server's "engine" extension object (kv_policy, kv_policy_budget, min_p, repetition_penalty,
// penalty_window, ignore_eos; seed as an unsigned 64-bit integer): a wrong type or out-of-range value is an
// ArgumentException naming the key before any work; unknown keys are ignored (other middleware puts its own there).
// Unset options keep the adapter's defaults; the final streaming update carries UsageContent and the finish reason.
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Engine.Runtime.Sampling;
using AI = Microsoft.Extensions.AI;

namespace Engine.Runtime;

public sealed class EngineChatClient : AI.IChatClient
{
    private readonly InferenceEngine _engine;
    private readonly bool _ownsEngine;

    public EngineChatClient(InferenceEngine engine, GenerationOptions? defaults = null, bool ownsEngine = false)
    {
        _engine = engine; _ownsEngine = ownsEngine; Defaults = defaults ?? new GenerationOptions();
        Metadata = new AI.ChatClientMetadata("engine", null, Path.GetFileName(engine.ModelPath ?? engine.Config.Architecture));
    }

    public GenerationOptions Defaults { get; }
    public AI.ChatClientMetadata Metadata { get; }

    public async Task<AI.ChatResponse> GetResponseAsync(IEnumerable<AI.ChatMessage> messages, AI.ChatOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        var sb = new StringBuilder();
        GenerationUsage? usage = null;
        await foreach (var c in _engine.GenerateAsync(Convert(messages), Map(options), cancellationToken).ConfigureAwait(false))
        {
            sb.Append(c.Text);
            usage ??= c.Usage;
        }
        return new AI.ChatResponse(new AI.ChatMessage(AI.ChatRole.Assistant, sb.ToString()))
        {
            ModelId = Metadata.DefaultModelId,
            FinishReason = usage == null ? null : MapFinish(usage.FinishReason),
            Usage = usage == null ? null : MapUsage(usage),
        };
    }

    public async IAsyncEnumerable<AI.ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<AI.ChatMessage> messages,
        AI.ChatOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        string id = Guid.NewGuid().ToString("N");
        await foreach (var c in _engine.GenerateAsync(Convert(messages), Map(options), cancellationToken).ConfigureAwait(false))
        {
            if (c.Text.Length > 0)
                yield return new AI.ChatResponseUpdate(AI.ChatRole.Assistant, c.Text) { ResponseId = id, ModelId = Metadata.DefaultModelId };
            if (c.Usage is { } u)
                yield return new AI.ChatResponseUpdate(AI.ChatRole.Assistant, [new AI.UsageContent(MapUsage(u))])
                {
                    ResponseId = id, ModelId = Metadata.DefaultModelId, FinishReason = MapFinish(u.FinishReason),
                };
        }
    }

    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey != null ? null
        : serviceType == typeof(AI.ChatClientMetadata) ? Metadata
        : serviceType.IsInstanceOfType(_engine) ? _engine
        : serviceType.IsInstanceOfType(this) ? this
        : null;

    public void Dispose() { if (_ownsEngine) _engine.Dispose(); }

    private static List<ChatMessage> Convert(IEnumerable<AI.ChatMessage> messages) =>
        messages.Select(m => new ChatMessage(m.Role.Value, m.Text)).ToList();

    /// <summary>The ChatOptions.AdditionalProperties keys this adapter reads (engine knobs ChatOptions has no property for).</summary>
    public static IReadOnlyList<string> EngineProperties { get; } =
        ["kv_policy", "kv_policy_budget", "min_p", "repetition_penalty", "penalty_window", "ignore_eos", "seed"];

    private GenerationOptions Map(AI.ChatOptions? o)
    {
        if (o == null) return Defaults;
        var s = Defaults.Sampling;
        var x = o.AdditionalProperties;
        ulong? seed = UInt64(x, "seed");
        if (seed != null && o.Seed != null && unchecked((ulong)o.Seed.Value) != seed)
            throw new ArgumentException($"ChatOptions.Seed ({o.Seed}) and AdditionalProperties[\"seed\"] ({seed}) disagree; give one");
        s = s with
        {
            Temperature = o.Temperature ?? s.Temperature,
            TopP = o.TopP ?? s.TopP,
            TopK = o.TopK ?? s.TopK,
            Seed = o.Seed is long chatSeed ? unchecked((ulong)chatSeed) : seed ?? s.Seed,
            PresencePenalty = o.PresencePenalty ?? s.PresencePenalty,
            FrequencyPenalty = o.FrequencyPenalty ?? s.FrequencyPenalty,
            MinP = (float?)Real(x, "min_p", 0, 1, minInclusive: true) ?? s.MinP,
            RepetitionPenalty = (float?)Real(x, "repetition_penalty", 0, 1e6, minInclusive: false) ?? s.RepetitionPenalty,
            PenaltyWindow = (int?)Integer(x, "penalty_window", 0, int.MaxValue) ?? s.PenaltyWindow,
        };
        return Defaults with
        {
            Sampling = s,
            MaxTokens = o.MaxOutputTokens ?? Defaults.MaxTokens,
            StopStrings = o.StopSequences is { Count: > 0 } stops ? [.. Defaults.StopStrings, .. stops] : Defaults.StopStrings,
            KvPolicy = Text(x, "kv_policy") ?? Defaults.KvPolicy,
            KvPolicyBudget = Real(x, "kv_policy_budget", 0, 1, minInclusive: false) ?? Defaults.KvPolicyBudget,
            StopAtEndOfGeneration = Flag(x, "ignore_eos") is bool ignore ? !ignore : Defaults.StopAtEndOfGeneration,
        };
    }

    // ---- AdditionalProperties readers: null when absent (or null); ArgumentException on a wrong type or value ----

    private static object? Value(AI.AdditionalPropertiesDictionary? x, string key)
    {
        if (x == null || !x.TryGetValue(key, out var v) || v == null) return null;
        return v is JsonElement { ValueKind: JsonValueKind.Null or JsonValueKind.Undefined } ? null : v;
    }

    private static ArgumentException Bad(string key, object value, string expected) =>
        new($"ChatOptions.AdditionalProperties[\"{key}\"] = {Engine.Tensors.ErrorText.Quote(System.Convert.ToString(value, CultureInfo.InvariantCulture))} " +
            $"({(value is JsonElement je ? "JSON " + je.ValueKind.ToString().ToLowerInvariant() : value.GetType().Name)}) is not {expected}", key);

    private static string? Text(AI.AdditionalPropertiesDictionary? x, string key) => Value(x, key) switch
    {
        null => null,
        string t when !string.IsNullOrWhiteSpace(t) => t,
        JsonElement { ValueKind: JsonValueKind.String } e when !string.IsNullOrWhiteSpace(e.GetString()) => e.GetString(),
        var v => throw Bad(key, v, "a non-empty string"),
    };

    private static bool? Flag(AI.AdditionalPropertiesDictionary? x, string key) => Value(x, key) switch
    {
        null => null,
        bool b => b,
        JsonElement { ValueKind: JsonValueKind.True } => true,
        JsonElement { ValueKind: JsonValueKind.False } => false,
        var v => throw Bad(key, v, "a boolean"),
    };

    private static double? Real(AI.AdditionalPropertiesDictionary? x, string key, double min, double max, bool minInclusive)
    {
        var v = Value(x, key);
        if (v == null) return null;
        double? d = v switch
        {
            double a => a, float a => a, decimal a => (double)a, int a => a, long a => a, short a => a, byte a => a, uint a => a, ulong a => a,
            JsonElement { ValueKind: JsonValueKind.Number } e => e.GetDouble(),
            _ => null,
        };
        string range = $"a number in {(minInclusive ? "[" : "(")}{min.ToString(CultureInfo.InvariantCulture)}, {max.ToString(CultureInfo.InvariantCulture)}]";
        if (d is not double r || !double.IsFinite(r) || r > max || (minInclusive ? r < min : r <= min)) throw Bad(key, v, range);
        return r;
    }

    private static long? Integer(AI.AdditionalPropertiesDictionary? x, string key, long min, long max)
    {
        var v = Value(x, key);
        if (v == null) return null;
        long? n = v switch
        {
            int a => a, long a => a, short a => a, byte a => a, uint a => a,
            ulong a when a <= long.MaxValue => (long)a,
            JsonElement { ValueKind: JsonValueKind.Number } e when e.TryGetInt64(out long l) => l,
            _ => null,
        };
        if (n is not long r || r < min || r > max) throw Bad(key, v, $"an integer in [{min}, {max}]");
        return r;
    }

    private static ulong? UInt64(AI.AdditionalPropertiesDictionary? x, string key)
    {
        var v = Value(x, key);
        if (v == null) return null;
        return v switch
        {
            ulong a => a, uint a => a, byte a => a,
            int a when a >= 0 => (ulong)a, long a when a >= 0 => (ulong)a, short a when a >= 0 => (ulong)a,
            JsonElement { ValueKind: JsonValueKind.Number } e when e.TryGetUInt64(out ulong u) => u,
            _ => throw Bad(key, v, "an integer in [0, 2^64)"),
        };
    }

    private static AI.ChatFinishReason MapFinish(FinishReason r) =>
        r is FinishReason.Stop or FinishReason.StopString ? AI.ChatFinishReason.Stop : AI.ChatFinishReason.Length;

    private static AI.UsageDetails MapUsage(GenerationUsage u) => new()
    {
        InputTokenCount = u.PromptTokens,
        OutputTokenCount = u.GeneratedTokens,
        TotalTokenCount = u.PromptTokens + u.GeneratedTokens,
    };
}
