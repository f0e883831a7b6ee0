// Owns: the runtime's chat-template entry points with tools: ITextTokenizer.ApplyChatTemplate(messages, options)
// passes tool definitions, tool calls and tool results through TokenizerAdapter to the model's executed Jinja
// template (Qwen3's, from shared/models/tokenizers/qwen3), the one-argument overload is unchanged, a refusal is an
// ArgumentException, and a tokenizer without a template refuses tools instead of silently dropping them.
// Expected text: Qwen3's tool format as Jinja2 renders the same template (see Engine.Tokenizers.Tests' oracle cases).
using System.Text.Json;
using Engine.Tokenizers;

namespace Engine.Runtime.Tests;

public class ChatTemplateToolsTests
{
    private static TokenizerAdapter Qwen3() =>
        new(Engine.Tokenizers.Tokenizer.FromTokenizerJson(SharedData.Get("models/tokenizers/qwen3/tokenizer.json")));

    [Test]
    public void ToolsAndToolCallsReachTheTemplate()
    {
        ITextTokenizer tok = Qwen3();
        var tool = JsonDocument.Parse("""{"type":"function","function":{"name":"now","description":"Time","parameters":{"type":"object","properties":{}}}}""").RootElement;
        ChatMessage[] messages =
        [
            new("user", "Time?"),
            new("assistant", "") { ToolCalls = [new ChatToolCall("c1", "now", "{}")] },
            new("tool", "12:00") { ToolCallId = "c1" },
        ];
        var text = tok.ApplyChatTemplate(messages, new ChatRenderOptions { Tools = [tool] });
        Assert.That(text, Does.StartWith("<|im_start|>system\n# Tools\n"));
        Assert.That(text, Does.Contain("<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"now\", \"description\": \"Time\", \"parameters\": {\"type\": \"object\", \"properties\": {}}}}\n</tools>"));
        Assert.That(text, Does.Contain("<|im_start|>assistant\n<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call><|im_end|>\n"));
        Assert.That(text, Does.EndWith("<|im_start|>user\n<tool_response>\n12:00\n</tool_response><|im_end|>\n<|im_start|>assistant\n"));
        Assert.That(tok.ApplyChatTemplate([new ChatMessage("user", "Hi")]), Is.EqualTo("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
    }

    [Test]
    public void ToolsWithoutATemplateAreRefusedNotDropped()
    {
        ITextTokenizer bytes = new TokenizerAdapter(new Engine.Tokenizers.ByteTokenizer());
        var e = Assert.Throws<ChatTemplateException>(() => bytes.ApplyChatTemplate([new ChatMessage("user", "x")],
            new ChatRenderOptions { Tools = [JsonDocument.Parse("{}").RootElement] }));
        Assert.That(e, Is.InstanceOf<ArgumentException>());
        Assert.That(bytes.ApplyChatTemplate([new ChatMessage("user", "x")], new ChatRenderOptions()), Is.Null, "no template, no options: the transcript fallback stays");
    }
}
