// Owns: turning an OpenAI request body (chat completions, legacy completions) into the engine's inputs — messages or a
// prompt, GenerationOptions, streaming flags — with every field type- and range-checked (a wrong type or value → 400
// naming the field). Unknown fields are ignored (clients send vendor fields); JSON null counts as absent.
// Sampling follows OpenAI's semantics, not the CLI's defaults: temperature 1, top_p 1, no top-k / min-p unless the
// "engine" extension object asks for them; temperature 0 = greedy. max_tokens absent = until the context is full.
// The "engine" extension object (documented in the README): kv_policy, kv_policy_budget, top_k, min_p,
// repetition_penalty, ignore_eos. Field ranges: OpenAI API reference (temperature 0..2, penalties -2..2, top_logprobs 0..20).
using System.Text.Json;
using Engine.Runtime;
using Engine.Runtime.Sampling;

namespace Engine.Server;

/// <summary>A validated request: exactly one of Messages / PromptText / PromptIds is set.</summary>
internal sealed record OpenAiRequest(IReadOnlyList<ChatMessage>? Messages, string? PromptText, int[]? PromptIds, GenerationOptions Options,
    bool Stream, bool IncludeUsage)
{
    public bool WantsLogProbs => Options.LogProbs != null;

    public static OpenAiRequest ParseChat(JsonElement root, string modelId, int contextLength)
    {
        var f = new Fields(root);
        f.Model(modelId);
        var messages = f.Messages();
        // Function calling needs the tools rendered by the model's template and the reply parsed back into tool_calls;
        // the template layer renders tools (ChatRenderOptions) but the server does not parse calls yet: say so, never ignore them.
        if (f.Has("tools") || f.Has("functions"))
            throw ApiException.BadRequest("tools / functions are not supported by this server yet", f.Has("tools") ? "tools" : "functions");
        int? max = f.Int("max_completion_tokens", 0, int.MaxValue) ?? f.Int("max_tokens", 0, int.MaxValue);
        int? logprobs = null;
        if (f.Bool("logprobs") == true) logprobs = f.Int("top_logprobs", 0, LogProbs.MaxTop) ?? 0;
        else if (f.Int("top_logprobs", 0, LogProbs.MaxTop) is not null)
            throw ApiException.BadRequest("top_logprobs needs logprobs: true", "top_logprobs");
        var (options, stream, usage) = f.Common(max, logprobs, contextLength);
        return new OpenAiRequest(messages, null, null, options, stream, usage);
    }

    public static OpenAiRequest ParseCompletion(JsonElement root, string modelId, int contextLength)
    {
        var f = new Fields(root);
        f.Model(modelId);
        var (text, ids) = f.Prompt();
        if (f.Bool("echo") == true) throw ApiException.BadRequest("echo is not supported", "echo");
        if (f.String("suffix") is { Length: > 0 }) throw ApiException.BadRequest("suffix is not supported", "suffix");
        int? max = f.Int("max_tokens", 0, int.MaxValue) ?? 16;   // the legacy endpoint's documented default
        int? logprobs = f.Int("logprobs", 0, 5);
        var (options, stream, usage) = f.Common(max, logprobs, contextLength);
        return new OpenAiRequest(null, text, ids, options, stream, usage);
    }

    /// <summary>Typed, range-checked access to the top-level fields of one request body.</summary>
    private readonly struct Fields(JsonElement root)
    {
        public bool Has(string name) => Get(name) is { ValueKind: not JsonValueKind.Null } e && !(e.ValueKind == JsonValueKind.Array && e.GetArrayLength() == 0);

        private JsonElement? Get(string name) =>
            root.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

        public void Model(string modelId)
        {
            string model = String("model") ?? throw ApiException.BadRequest("model is required", "model");
            if (model != modelId) throw new ApiException(400, $"the model '{model}' does not exist; this server serves '{modelId}'", "model", "model_not_found");
        }

        public string? String(string name, JsonElement? from = null)
        {
            var v = from ?? Get(name);
            if (v is not { } e) return null;
            return e.ValueKind == JsonValueKind.String ? e.GetString() : throw Type(name, "a string");
        }

        public bool? Bool(string name, JsonElement? from = null)
        {
            var v = from ?? Get(name);
            if (v is not { } e) return null;
            return e.ValueKind switch { JsonValueKind.True => true, JsonValueKind.False => false, _ => throw Type(name, "a boolean") };
        }

        public double? Number(string name, double min, double max, JsonElement? from = null)
        {
            var v = from ?? Get(name);
            if (v is not { } e) return null;
            if (e.ValueKind != JsonValueKind.Number || !e.TryGetDouble(out double d)) throw Type(name, "a number");
            if (!(d >= min && d <= max)) throw ApiException.BadRequest($"{name} must be between {min} and {max}, got {d}", name);
            return d;
        }

        public int? Int(string name, int min, int max, JsonElement? from = null)
        {
            var v = from ?? Get(name);
            if (v is not { } e) return null;
            if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt64(out long l)) throw Type(name, "an integer");
            if (l < min || l > max) throw ApiException.BadRequest($"{name} must be between {min} and {max}, got {l}", name);
            return (int)l;
        }

        private static ApiException Type(string name, string what) => ApiException.BadRequest($"{name} must be {what}", name);

        public List<ChatMessage> Messages()
        {
            if (Get("messages") is not { } arr) throw ApiException.BadRequest("messages is required", "messages");
            if (arr.ValueKind != JsonValueKind.Array) throw Type("messages", "an array");
            if (arr.GetArrayLength() == 0) throw ApiException.BadRequest("messages must hold at least one message", "messages");
            var list = new List<ChatMessage>();
            int i = 0;
            foreach (var m in arr.EnumerateArray())
            {
                string at = $"messages[{i++}]";
                if (m.ValueKind != JsonValueKind.Object) throw Type(at, "an object");
                string role = (m.TryGetProperty("role", out var r) && r.ValueKind == JsonValueKind.String ? r.GetString() : null)
                    ?? throw ApiException.BadRequest($"{at}.role must be a string", $"{at}.role");
                role = role switch
                {
                    "developer" => "system",
                    "system" or "user" or "assistant" or "tool" => role,
                    _ => throw ApiException.BadRequest($"{at}.role '{role}' is not one of system, developer, user, assistant, tool", $"{at}.role"),
                };
                list.Add(new ChatMessage(role, Content(m, at)));
            }
            return list;
        }

        /// <summary>content: a string, null (assistant turns with tool calls), or an array of text parts.</summary>
        private static string Content(JsonElement m, string at)
        {
            if (!m.TryGetProperty("content", out var c) || c.ValueKind == JsonValueKind.Null) return "";
            if (c.ValueKind == JsonValueKind.String) return c.GetString()!;
            if (c.ValueKind != JsonValueKind.Array) throw ApiException.BadRequest($"{at}.content must be a string or an array of parts", $"{at}.content");
            var sb = new System.Text.StringBuilder();
            foreach (var part in c.EnumerateArray())
            {
                if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var t) || t.ValueKind != JsonValueKind.String)
                    throw ApiException.BadRequest($"{at}.content parts must be objects with a type", $"{at}.content");
                if (t.GetString() != "text" || !part.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String)
                    throw ApiException.BadRequest($"{at}.content: only text parts are supported (got '{t.GetString()}')", $"{at}.content");
                sb.Append(text.GetString());
            }
            return sb.ToString();
        }

        /// <summary>prompt: a string, an array of one string, an array of token ids, or an array of one such array.</summary>
        public (string? Text, int[]? Ids) Prompt()
        {
            if (Get("prompt") is not { } p) throw ApiException.BadRequest("prompt is required", "prompt");
            if (p.ValueKind == JsonValueKind.String) return (p.GetString()!, null);
            if (p.ValueKind != JsonValueKind.Array) throw Type("prompt", "a string or an array");
            var items = p.EnumerateArray().ToArray();
            if (items.Length == 1 && items[0].ValueKind == JsonValueKind.String) return (items[0].GetString()!, null);
            if (items.Length == 1 && items[0].ValueKind == JsonValueKind.Array) items = items[0].EnumerateArray().ToArray();
            else if (items.Length > 0 && items[0].ValueKind is JsonValueKind.String or JsonValueKind.Array)
                throw ApiException.BadRequest("only one prompt per request is supported", "prompt");
            var ids = new int[items.Length];
            for (int i = 0; i < items.Length; i++)
                if (items[i].ValueKind != JsonValueKind.Number || !items[i].TryGetInt32(out ids[i]) || ids[i] < 0)
                    throw ApiException.BadRequest("prompt token ids must be non-negative integers", "prompt");
            return (null, ids);
        }

        public List<string> Stop()
        {
            var list = new List<string>();
            if (Get("stop") is not { } s) return list;
            if (s.ValueKind == JsonValueKind.String) list.Add(s.GetString()!);
            else if (s.ValueKind == JsonValueKind.Array)
                foreach (var e in s.EnumerateArray())
                    list.Add(e.ValueKind == JsonValueKind.String ? e.GetString()! : throw Type("stop", "a string or an array of strings"));
            else throw Type("stop", "a string or an array of strings");
            if (list.Count > 4) throw ApiException.BadRequest("stop takes at most 4 sequences", "stop");
            if (list.Any(x => x.Length == 0)) throw ApiException.BadRequest("stop sequences must not be empty", "stop");
            return list;
        }

        /// <summary>The fields both endpoints share, plus the "engine" extension object.</summary>
        public (GenerationOptions Options, bool Stream, bool IncludeUsage) Common(int? maxTokens, int? logprobs, int contextLength)
        {
            foreach (var one in (string[])["n", "best_of"])
                if (Get(one) is { } n)
                {
                    if (n.ValueKind != JsonValueKind.Number || !n.TryGetInt64(out long count)) throw Type(one, "an integer");
                    if (count != 1) throw ApiException.BadRequest($"only {one} = 1 is supported, got {count}", one);
                }
            bool stream = Bool("stream") ?? false;
            bool includeUsage = false;
            if (Get("stream_options") is { } so)
            {
                if (so.ValueKind != JsonValueKind.Object) throw Type("stream_options", "an object");
                includeUsage = Bool("stream_options.include_usage", so.TryGetProperty("include_usage", out var iu) && iu.ValueKind != JsonValueKind.Null ? iu : null) ?? false;
            }
            var s = new SamplingOptions
            {
                Temperature = (float)(Number("temperature", 0, 2) ?? 1), TopP = (float)(Number("top_p", 0, 1) ?? 1), TopK = 0, MinP = 0,
                PresencePenalty = (float)(Number("presence_penalty", -2, 2) ?? 0), FrequencyPenalty = (float)(Number("frequency_penalty", -2, 2) ?? 0),
                Seed = Get("seed") is { } seed ? (seed.ValueKind == JsonValueKind.Number && seed.TryGetInt64(out long sv) ? unchecked((ulong)sv) : throw Type("seed", "an integer")) : null,
            };
            if (s.TopP <= 0) throw ApiException.BadRequest("top_p must be greater than 0", "top_p");
            var o = new GenerationOptions { MaxTokens = maxTokens ?? contextLength, StopStrings = Stop(), LogProbs = logprobs };
            if (Get("engine") is { } x)
            {
                if (x.ValueKind != JsonValueKind.Object) throw Type("engine", "an object");
                JsonElement? F(string name) => x.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;
                s = s with
                {
                    TopK = Int("engine.top_k", 0, int.MaxValue, F("top_k")) ?? s.TopK,
                    MinP = (float)(Number("engine.min_p", 0, 1, F("min_p")) ?? s.MinP),
                    RepetitionPenalty = (float)(Number("engine.repetition_penalty", 1e-3, 100, F("repetition_penalty")) ?? s.RepetitionPenalty),
                };
                o = o with
                {
                    KvPolicy = String("engine.kv_policy", F("kv_policy")),
                    KvPolicyBudget = Number("engine.kv_policy_budget", 1e-6, 1, F("kv_policy_budget")),
                    StopAtEndOfGeneration = !(Bool("engine.ignore_eos", F("ignore_eos")) ?? false),
                };
            }
            return (o with { Sampling = s }, stream, includeUsage);
        }
    }
}
