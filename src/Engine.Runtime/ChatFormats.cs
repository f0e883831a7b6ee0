// Owns: rendering a conversation for the common chat-template families, recognised by marker strings in the model's
// `tokenizer.chat_template` (no general Jinja engine here): ChatML (<|im_start|>, Qwen/SmolLM), Llama 3
// (<|start_header_id|>), Llama 2 / Mistral ([INST]), Zephyr/TinyLlama (<|user|>). Unknown or absent → null, and the
// runtime falls back to a plain "role: text" transcript.
// Invariant: the output ends with the opened assistant turn (add_generation_prompt = true); BOS is not included
// (the runtime adds it when encoding), except where the family repeats it inside the text.
using System.Text;

namespace Engine.Runtime;

public static class ChatFormats
{
    public static string? Apply(string? template, IReadOnlyList<ChatMessage> messages, string? bosText)
    {
        if (string.IsNullOrEmpty(template)) return null;
        var sb = new StringBuilder();
        if (template.Contains("<|im_start|>"))
        {
            foreach (var m in messages) sb.Append("<|im_start|>").Append(m.Role).Append('\n').Append(m.Content).Append("<|im_end|>\n");
            return sb.Append("<|im_start|>assistant\n").ToString();
        }
        if (template.Contains("<|start_header_id|>"))
        {
            foreach (var m in messages)
                sb.Append("<|start_header_id|>").Append(m.Role).Append("<|end_header_id|>\n\n").Append(m.Content.Trim()).Append("<|eot_id|>");
            return sb.Append("<|start_header_id|>assistant<|end_header_id|>\n\n").ToString();
        }
        if (template.Contains("<|user|>"))
        {
            foreach (var m in messages) sb.Append("<|").Append(m.Role).Append("|>\n").Append(m.Content).Append("</s>\n");
            return sb.Append("<|assistant|>\n").ToString();
        }
        if (template.Contains("[INST]"))
        {
            string? system = messages.FirstOrDefault(m => m.Role == "system")?.Content;
            bool first = true;
            foreach (var m in messages.Where(m => m.Role != "system"))
            {
                if (m.Role == "user")
                {
                    if (!first && bosText != null) sb.Append(bosText);
                    sb.Append("[INST] ");
                    if (first && system != null) sb.Append("<<SYS>>\n").Append(system).Append("\n<</SYS>>\n\n");
                    sb.Append(m.Content.Trim()).Append(" [/INST]");
                    first = false;
                }
                else sb.Append(' ').Append(m.Content.Trim()).Append(" </s>");
            }
            return sb.ToString();
        }
        return null;
    }
}
