// Owns: chat prompt formatting. The Jinja template a model ships (`tokenizer.chat_template` or
// tokenizer_config.json's chat_template) is recognised by its markers — not executed — and the family's format
// is rendered in code (the way llama.cpp's llm_chat_detect_template / llm_chat_apply_template work).
// Families: ChatML (Qwen, <|im_start|>), Llama 3 (<|start_header_id|>), Llama 2 ([INST] + <<SYS>>),
// Mistral ([INST] without <<SYS>>), Phi-3 (<|user|> ... <|end|>), Gemma (<start_of_turn>).
// A model without a template (e.g. the tok512 stories models) gets Plain: the message contents concatenated in
// order with nothing added, so a base model simply continues the text. An unrecognised template is an error.
// Invariant: the rendered text never contains BOS — encode it with addSpecial: true (adds BOS as the vocabulary
// asks) and parseSpecial: true (so the family's markers become their control tokens).
using System.Text;
using Engine.Formats;

namespace Engine.Tokenizers;

public enum ChatTemplateKind { Plain, ChatML, Llama2, Llama3, Mistral, Phi3, Gemma }

/// <summary>One chat message: role is "system", "user" or "assistant".</summary>
public sealed record ChatTurn(string Role, string Content)
{
    public static ChatTurn System(string content) => new("system", content);
    public static ChatTurn User(string content) => new("user", content);
    public static ChatTurn Assistant(string content) => new("assistant", content);
}

public sealed class ChatTemplate
{
    private ChatTemplate(ChatTemplateKind kind, string? source) { Kind = kind; Source = source; }

    public ChatTemplateKind Kind { get; }
    /// <summary>The Jinja text the family was recognised from (null for <see cref="ForKind"/> and Plain fallback).</summary>
    public string? Source { get; }

    public static ChatTemplate ForKind(ChatTemplateKind kind) => new(kind, null);

    /// <summary>Recognises a Jinja chat template. Null/empty → Plain. Unrecognised → NotSupportedException quoting its start.</summary>
    public static ChatTemplate Detect(string? jinja)
    {
        if (string.IsNullOrWhiteSpace(jinja)) return new(ChatTemplateKind.Plain, null);
        bool Has(string s) => jinja.Contains(s, StringComparison.Ordinal);
        ChatTemplateKind? kind =
            Has("<|im_start|>") ? ChatTemplateKind.ChatML :
            Has("<|start_header_id|>") ? ChatTemplateKind.Llama3 :
            Has("<|user|>") && Has("<|end|>") ? ChatTemplateKind.Phi3 :
            Has("<start_of_turn>") ? ChatTemplateKind.Gemma :
            Has("[INST]") ? (Has("<<SYS>>") ? ChatTemplateKind.Llama2 : ChatTemplateKind.Mistral) :
            null;
        if (kind is null)
        {
            var head = jinja.Length > 120 ? jinja[..120] + "…" : jinja;
            throw new NotSupportedException(
                $"unrecognised chat template \"{head.Replace("\n", "\\n")}\" (supported: ChatML/Qwen, Llama 2, Llama 3, Mistral, Phi-3, Gemma)");
        }
        return new(kind.Value, jinja);
    }

    /// <summary>The template of a model file (`tokenizer.chat_template`); ModelFormatException if it is unrecognised.</summary>
    public static ChatTemplate FromModelFile(ModelFile file)
    {
        try { return Detect(file.GetString(TokenizerKeys.ChatTemplate)); }
        catch (NotSupportedException e) { throw new ModelFormatException(file.Path, -1, e.Message, e); }
    }

    /// <summary>The template the tokenizer's source carried (GGUF metadata or tokenizer_config.json).</summary>
    public static ChatTemplate FromTokenizer(Tokenizer tokenizer)
    {
        try { return Detect(tokenizer.Vocabulary.ChatTemplate); }
        catch (NotSupportedException e) { throw new ModelFormatException(tokenizer.Vocabulary.Source, -1, e.Message, e); }
    }

    /// <summary>Renders the conversation; <paramref name="addGenerationPrompt"/> opens the assistant's turn.</summary>
    public string Render(IReadOnlyList<ChatTurn> messages, bool addGenerationPrompt = true)
    {
        foreach (var m in messages)
            if (m.Role is not ("system" or "user" or "assistant"))
                throw new ArgumentException($"unknown chat role '{m.Role}' (expected system, user or assistant)");
        var sb = new StringBuilder();
        switch (Kind)
        {
            case ChatTemplateKind.Plain:
                foreach (var m in messages) sb.Append(m.Content);
                break;
            case ChatTemplateKind.ChatML:
                foreach (var m in messages) sb.Append("<|im_start|>").Append(m.Role).Append('\n').Append(m.Content).Append("<|im_end|>\n");
                if (addGenerationPrompt) sb.Append("<|im_start|>assistant\n");
                break;
            case ChatTemplateKind.Llama3:
                foreach (var m in messages)
                    sb.Append("<|start_header_id|>").Append(m.Role).Append("<|end_header_id|>\n\n").Append(m.Content.Trim()).Append("<|eot_id|>");
                if (addGenerationPrompt) sb.Append("<|start_header_id|>assistant<|end_header_id|>\n\n");
                break;
            case ChatTemplateKind.Phi3:
                foreach (var m in messages) sb.Append("<|").Append(m.Role).Append("|>\n").Append(m.Content).Append("<|end|>\n");
                if (addGenerationPrompt) sb.Append("<|assistant|>\n");
                break;
            case ChatTemplateKind.Gemma:
                foreach (var m in MergeSystem(messages, "\n\n"))
                    sb.Append("<start_of_turn>").Append(m.Role == "assistant" ? "model" : m.Role).Append('\n').Append(m.Content.Trim()).Append("<end_of_turn>\n");
                if (addGenerationPrompt) sb.Append("<start_of_turn>model\n");
                break;
            case ChatTemplateKind.Llama2:
            {
                // Meta's Llama-2-chat format: <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {answer} </s><s>[INST] ...
                bool first = true;
                foreach (var m in MergeSystem(messages, null))
                {
                    if (m.Role == "user")
                    {
                        if (!first) sb.Append("<s>");
                        sb.Append("[INST] ").Append(m.Content.Trim()).Append(" [/INST]");
                    }
                    else sb.Append(' ').Append(m.Content.Trim()).Append(" </s>");
                    first = false;
                }
                break;
            }
            case ChatTemplateKind.Mistral:
                // Mistral-Instruct: [INST] {user} [/INST]{answer}</s>[INST] ...  (system text prefixed to the first user turn)
                foreach (var m in MergeSystem(messages, "\n\n"))
                {
                    if (m.Role == "user") sb.Append("[INST] ").Append(m.Content).Append(" [/INST]");
                    else sb.Append(m.Content).Append("</s>");
                }
                break;
        }
        return sb.ToString();
    }

    /// <summary>Folds system messages into the next user message (families without a system role).
    /// <paramref name="separator"/> null: Llama 2's &lt;&lt;SYS&gt;&gt; block.</summary>
    private static List<ChatTurn> MergeSystem(IReadOnlyList<ChatTurn> messages, string? separator)
    {
        var result = new List<ChatTurn>();
        string? pending = null;
        foreach (var m in messages)
        {
            if (m.Role == "system") { pending = pending == null ? m.Content : pending + "\n" + m.Content; continue; }
            if (pending != null && m.Role == "user")
            {
                var content = separator == null
                    ? $"<<SYS>>\n{pending.Trim()}\n<</SYS>>\n\n{m.Content.Trim()}"
                    : pending + separator + m.Content;
                result.Add(m with { Content = content });
                pending = null;
                continue;
            }
            result.Add(m);
        }
        if (pending != null) result.Add(new ChatTurn("user", separator == null ? $"<<SYS>>\n{pending.Trim()}\n<</SYS>>\n\n" : pending));
        return result;
    }
}
