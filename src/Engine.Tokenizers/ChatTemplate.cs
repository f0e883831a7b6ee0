// Owns: chat prompt formatting. The Jinja template a model ships (`tokenizer.chat_template` or tokenizer_config.json's
// chat_template) is executed by the Jinja interpreter (Engine.Tokenizers.Jinja) with the variables Hugging Face
// transformers passes: messages, tools, add_generation_prompt, bos_token, eos_token (+ caller extras such as
// enable_thinking). Its family (ChatML, Llama 2/3, Mistral, Phi-3, Gemma) is still recognised from its markers, and
// that hard-coded format (ChatTemplateFamilies.cs) is the fallback when the template uses a construct the interpreter
// does not support. A model without a template (e.g. the tok512 stories models) gets Plain: contents concatenated.
// A template that neither parses nor belongs to a known family is an error naming the construct and its position.
// Invariant: when the vocabulary adds BOS itself, the rendered text never starts with BOS (a leading bos_token the
// template writes is removed, as llama.cpp does) — encode it with addSpecial: true and parseSpecial: true.
using System.Text.Json;
using Engine.Formats;
using Engine.Tokenizers.Jinja;

namespace Engine.Tokenizers;

/// <summary>Plain: no template. Custom: a template of no known family, executed as Jinja.</summary>
public enum ChatTemplateKind { Plain, ChatML, Llama2, Llama3, Mistral, Phi3, Gemma, Custom }

/// <summary>One tool call of an assistant turn; <paramref name="Arguments"/> is the JSON text of the arguments.</summary>
public sealed record ChatToolCall(string Id, string Name, string Arguments);

/// <summary>One chat message: role "system", "user", "assistant" or (Jinja templates) "tool".</summary>
public sealed record ChatTurn(string Role, string Content)
{
    public static ChatTurn System(string content) => new("system", content);
    public static ChatTurn User(string content) => new("user", content);
    public static ChatTurn Assistant(string content) => new("assistant", content);
    public static ChatTurn Tool(string content, string? toolCallId = null) => new("tool", content) { ToolCallId = toolCallId };

    /// <summary>Tool calls the assistant made in this turn.</summary>
    public IReadOnlyList<ChatToolCall>? ToolCalls { get; init; }
    /// <summary>For a "tool" turn: the id of the call this is the result of.</summary>
    public string? ToolCallId { get; init; }
    /// <summary>Optional name (the tool's name for a "tool" turn).</summary>
    public string? Name { get; init; }
}

/// <summary>What a chat template gets besides the messages.</summary>
public sealed record ChatRenderOptions
{
    public bool AddGenerationPrompt { get; init; } = true;
    /// <summary>Tool definitions as OpenAI/Hugging Face JSON objects ({"type":"function","function":{name, description, parameters}}).</summary>
    public IReadOnlyList<JsonElement>? Tools { get; init; }
    /// <summary>Extra template variables (e.g. "enable_thinking" = false for Qwen3); values as JinjaTemplate.ToValue accepts.</summary>
    public IReadOnlyDictionary<string, object?>? Variables { get; init; }
    /// <summary>The clock behind strftime_now (default: local time).</summary>
    public Func<DateTime>? Clock { get; init; }
}

/// <summary>The model's chat template refused the conversation (raise_exception) or failed while rendering it.</summary>
public sealed class ChatTemplateException(string message, Exception? inner = null) : ArgumentException(message, inner);

public sealed partial class ChatTemplate
{
    private readonly JinjaTemplate? _jinja;

    private ChatTemplate(ChatTemplateKind kind, string? source, JinjaTemplate? jinja, string? problem)
    {
        Kind = kind; Source = source; _jinja = jinja; JinjaProblem = problem;
    }

    public ChatTemplateKind Kind { get; }
    /// <summary>The Jinja text (null for <see cref="ForKind"/> and Plain).</summary>
    public string? Source { get; }
    /// <summary>True when rendering executes the model's Jinja template (false: the hard-coded family format).</summary>
    public bool IsExecuted => _jinja != null;
    /// <summary>Why the template is not executed although there is one (the interpreter's error), else null.</summary>
    public string? JinjaProblem { get; }
    /// <summary>Text of the BOS / EOS tokens given to the template as bos_token / eos_token.</summary>
    public string BosToken { get; init; } = "";
    public string EosToken { get; init; } = "";
    /// <summary>Remove a leading bos_token from the rendering because the tokenizer adds BOS when encoding
    /// (the vocabulary's add_bos); false keeps the template's BOS text.</summary>
    public bool StripLeadingBos { get; init; } = true;

    /// <summary>The hard-coded format of a family (never executes Jinja).</summary>
    public static ChatTemplate ForKind(ChatTemplateKind kind) =>
        kind == ChatTemplateKind.Custom ? throw new ArgumentException("Custom needs a template text", nameof(kind)) : new(kind, null, null, null);

    /// <summary>The family a template's markers name, or Custom.</summary>
    public static ChatTemplateKind Family(string jinja)
    {
        bool Has(string s) => jinja.Contains(s, StringComparison.Ordinal);
        return Has("<|im_start|>") ? ChatTemplateKind.ChatML :
            Has("<|start_header_id|>") ? ChatTemplateKind.Llama3 :
            Has("<|user|>") && Has("<|end|>") ? ChatTemplateKind.Phi3 :
            Has("<start_of_turn>") ? ChatTemplateKind.Gemma :
            Has("[INST]") ? (Has("<<SYS>>") ? ChatTemplateKind.Llama2 : ChatTemplateKind.Mistral) :
            ChatTemplateKind.Custom;
    }

    /// <summary>Parses a Jinja chat template. Null/empty → Plain. A template the interpreter cannot parse falls back to
    /// its family's built-in format; with no family either → NotSupportedException naming the construct.</summary>
    public static ChatTemplate Detect(string? jinja, string bosToken = "", string eosToken = "")
    {
        if (string.IsNullOrWhiteSpace(jinja)) return new(ChatTemplateKind.Plain, null, null, null) { BosToken = bosToken, EosToken = eosToken };
        var kind = Family(jinja);
        try
        {
            return new(kind, jinja, JinjaTemplate.Parse(jinja), null) { BosToken = bosToken, EosToken = eosToken };
        }
        catch (JinjaException e)
        {
            if (kind != ChatTemplateKind.Custom)
                return new(kind, jinja, null, e.Message) { BosToken = bosToken, EosToken = eosToken };
            var head = jinja.Length > 80 ? jinja[..80] + "…" : jinja;
            throw new NotSupportedException(
                $"unsupported chat template \"{head.Replace("\n", "\\n")}\": {e.Message} " +
                "(built-in formats: ChatML/Qwen, Llama 2, Llama 3, Mistral, Phi-3, Gemma)", e);
        }
    }

    /// <summary>The template of a model file (`tokenizer.chat_template`); ModelFormatException if it is unusable.</summary>
    public static ChatTemplate FromModelFile(ModelFile file)
    {
        string? TokenText(string key) =>
            file.GetInteger(key) is long id && file.GetArray<string>(TokenizerKeys.Tokens) is { } toks && id >= 0 && id < toks.Length
                ? toks[id] : null;
        try { return Detect(file.GetString(TokenizerKeys.ChatTemplate), TokenText(TokenizerKeys.BosId) ?? "", TokenText(TokenizerKeys.EosId) ?? ""); }
        catch (NotSupportedException e) { throw new ModelFormatException(file.Path, -1, e.Message, e); }
    }

    /// <summary>The template the tokenizer's source carried (GGUF metadata or tokenizer_config.json).</summary>
    public static ChatTemplate FromTokenizer(Tokenizer tokenizer)
    {
        var v = tokenizer.Vocabulary;
        string Text(int? id) => id is int i ? v.Tokens[i] ?? "" : "";
        try { return Detect(v.ChatTemplate, Text(v.Bos), Text(v.Eos)).WithBosStripping(v.AddBos); }
        catch (NotSupportedException e) { throw new ModelFormatException(v.Source, -1, e.Message, e); }
    }

    private ChatTemplate WithBosStripping(bool strip) =>
        new(Kind, Source, _jinja, JinjaProblem) { BosToken = BosToken, EosToken = EosToken, StripLeadingBos = strip };

    /// <summary>Renders the conversation; <paramref name="addGenerationPrompt"/> opens the assistant's turn.</summary>
    public string Render(IReadOnlyList<ChatTurn> messages, bool addGenerationPrompt = true) =>
        Render(messages, new ChatRenderOptions { AddGenerationPrompt = addGenerationPrompt });

    /// <summary>Renders the conversation with tools and extra variables. ChatTemplateException when the template
    /// refuses it (its raise_exception message) or fails; tools with a non-executed template → ChatTemplateException.</summary>
    public string Render(IReadOnlyList<ChatTurn> messages, ChatRenderOptions options)
    {
        if (_jinja == null)
        {
            if (options.Tools is { Count: > 0 })
                throw new ChatTemplateException($"the model's chat format ({Kind}) cannot present tools: it has no executable chat template");
            return RenderFamily(messages, options.AddGenerationPrompt);
        }
        try { return RenderJinja(_jinja, messages, options); }
        catch (JinjaRaisedException e) when (messages.Any(m => m.Role == "system") && messages.Any(m => m.Role == "user"))
        {
            // Templates without a system role (Gemma, Mistral v0.2, ...) refuse one; like llama.cpp, fold the system
            // text into the first user turn ("system\nuser") and render again.
            try { return RenderJinja(_jinja, FoldSystem(messages), options); }
            catch (JinjaException) { throw Refused(e); }
        }
        catch (JinjaRaisedException e) { throw Refused(e); }
        catch (JinjaException e) { throw new ChatTemplateException(e.Message, e); }
        catch (ArgumentException e) { throw new ChatTemplateException(e.Message, e); }
    }

    private static ChatTemplateException Refused(JinjaRaisedException e) =>
        new($"the model's chat template refused the conversation: {e.TemplateMessage}", e);

    private string RenderJinja(JinjaTemplate jinja, IReadOnlyList<ChatTurn> messages, ChatRenderOptions options)
    {
        var vars = new Dictionary<string, object?>
        {
            ["messages"] = new JinjaList(messages.Select(MessageValue)),
            ["tools"] = options.Tools is { Count: > 0 } t ? new JinjaList(t.Select(e => JinjaTemplate.ToValue(e))) : null,
            ["add_generation_prompt"] = options.AddGenerationPrompt,
            ["bos_token"] = BosToken,
            ["eos_token"] = EosToken,
        };
        foreach (var (k, val) in options.Variables ?? new Dictionary<string, object?>()) vars[k] = val;
        string text = jinja.Render(vars, options.Clock);
        return StripLeadingBos && BosToken.Length > 0 && text.StartsWith(BosToken, StringComparison.Ordinal) ? text[BosToken.Length..] : text;
    }

    /// <summary>System messages joined ("\n") and prefixed to the first user message, as llama.cpp does for templates
    /// that do not take a system role.</summary>
    private static List<ChatTurn> FoldSystem(IReadOnlyList<ChatTurn> messages)
    {
        var system = string.Join("\n", messages.Where(m => m.Role == "system").Select(m => m.Content));
        var result = new List<ChatTurn>();
        bool folded = false;
        foreach (var m in messages)
        {
            if (m.Role == "system") continue;
            if (!folded && m.Role == "user") { result.Add(m with { Content = system + "\n" + m.Content }); folded = true; }
            else result.Add(m);
        }
        return result;
    }

    /// <summary>A message as transformers gives it to a template: {role, content[, tool_calls, tool_call_id, name]};
    /// tool-call arguments that are a JSON object are passed as a mapping (templates apply tojson to them).</summary>
    private static JinjaDict MessageValue(ChatTurn m)
    {
        var d = new JinjaDict { ["role"] = m.Role, ["content"] = m.Content };
        if (m.ToolCalls is { Count: > 0 } calls)
            d["tool_calls"] = new JinjaList(calls.Select(c => (object?)new JinjaDict
            {
                ["id"] = c.Id,
                ["type"] = "function",
                ["function"] = new JinjaDict { ["name"] = c.Name, ["arguments"] = ArgumentsValue(c.Arguments) },
            }));
        if (m.ToolCallId != null) d["tool_call_id"] = m.ToolCallId;
        if (m.Name != null) d["name"] = m.Name;
        return d;
    }

    private static object? ArgumentsValue(string json)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            return doc.RootElement.ValueKind == JsonValueKind.Object ? JinjaTemplate.ToValue(doc.RootElement) : json;
        }
        catch (JsonException) { return json; }
    }
}
