// Owns: the six hard-coded chat formats (the fallback for models whose template cannot be executed, and for
// ChatTemplate.ForKind): ChatML (Qwen, <|im_start|>), Llama 3 (<|start_header_id|>), Llama 2 ([INST] + <<SYS>>),
// Mistral ([INST] without <<SYS>>), Phi-3 (<|user|> ... <|end|>), Gemma (<start_of_turn>), and Plain (contents
// concatenated). Rendered in code the way llama.cpp's llm_chat_apply_template does.
// Invariant: the rendered text never contains BOS.
using System.Text;

namespace Engine.Tokenizers;

public sealed partial class ChatTemplate
{
    /// <summary>The family format of <see cref="Kind"/>; roles other than system/user/assistant are an ArgumentException.</summary>
    public string RenderFamily(IReadOnlyList<ChatTurn> messages, bool addGenerationPrompt = true)
    {
        foreach (var m in messages)
            if (m.Role is not ("system" or "user" or "assistant"))
                throw new ArgumentException($"unknown chat role '{m.Role}' (expected system, user or assistant)");
        var sb = new StringBuilder();
        switch (Kind)
        {
            case ChatTemplateKind.Custom:
                throw new InvalidOperationException("a custom chat template has no built-in family format");
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
