// Owns: the Microsoft.Extensions.AI IChatClient adapter over InferenceEngine (streaming and non-streaming).
// Invariants: ChatOptions map onto GenerationOptions (temperature, top-p, top-k, max output tokens, seed, stop
// sequences, presence/frequency penalties); unset options keep the adapter's defaults; the final streaming update
// carries UsageContent and the finish reason.
using System.Runtime.CompilerServices;
using System.Text;
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

    private GenerationOptions Map(AI.ChatOptions? o)
    {
        if (o == null) return Defaults;
        var s = Defaults.Sampling;
        s = s with
        {
            Temperature = o.Temperature ?? s.Temperature,
            TopP = o.TopP ?? s.TopP,
            TopK = o.TopK ?? s.TopK,
            Seed = o.Seed is long seed ? unchecked((ulong)seed) : s.Seed,
            PresencePenalty = o.PresencePenalty ?? s.PresencePenalty,
            FrequencyPenalty = o.FrequencyPenalty ?? s.FrequencyPenalty,
        };
        return Defaults with
        {
            Sampling = s,
            MaxTokens = o.MaxOutputTokens ?? Defaults.MaxTokens,
            StopStrings = o.StopSequences is { Count: > 0 } stops ? [.. Defaults.StopStrings, .. stops] : Defaults.StopStrings,
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
