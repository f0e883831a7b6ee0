// Owns: chat template recognition and rendering. Expected strings are written by hand from each family's
// published format (the Jinja templates shipped in shared/models: Llama 3 / Qwen3 tokenizer_config.json,
// Phi-3 GGUF), not produced by the code.
using Engine.Formats;

namespace Engine.Tokenizers.Tests;

public class ChatTemplateTests
{
    private static readonly ChatTurn[] Conversation =
        [ChatTurn.System("Be brief."), ChatTurn.User("Hi"), ChatTurn.Assistant("Hello!"), ChatTurn.User("Bye")];

    [Test]
    public void Llama3FromTokenizerConfig()
    {
        var tok = StreamingAndSpecialTests.Load("models/tokenizers/llama3/tokenizer.json");
        var t = ChatTemplate.FromTokenizer(tok);
        Assert.That(t.Kind, Is.EqualTo(ChatTemplateKind.Llama3));
        Assert.That(t.Render(Conversation), Is.EqualTo(
            "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\n"));
        var ids = tok.Encode(t.Render([ChatTurn.User("Hi")]), addSpecial: true, parseSpecial: true);
        Assert.That(ids[..3], Is.EqualTo(new[] { 128000, 128006, tok.TokenToId("user")!.Value }));
    }

    [Test]
    public void ChatMLFromQwenConfig()
    {
        var t = ChatTemplate.FromTokenizer(StreamingAndSpecialTests.Load("models/tokenizers/qwen3/tokenizer.json"));
        Assert.That(t.Kind, Is.EqualTo(ChatTemplateKind.ChatML));
        Assert.That(t.Render(Conversation), Is.EqualTo(
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n" +
            "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"));
        Assert.That(t.Render([ChatTurn.User("Hi")], addGenerationPrompt: false), Is.EqualTo("<|im_start|>user\nHi<|im_end|>\n"));
    }

    [Test]
    public void Phi3FromGguf()
    {
        using var file = ModelFiles.Open(SharedData.Get("models/vocab/ggml-vocab-phi-3.gguf"));
        var t = ChatTemplate.FromModelFile(file);
        Assert.That(t.Kind, Is.EqualTo(ChatTemplateKind.Phi3));
        // The GGUF's template: user → "<|user|>\n" + content + "<|end|>\n<|assistant|>\n"; assistant → content + "<|end|>\n".
        Assert.That(t.Render([ChatTurn.User("Hi"), ChatTurn.Assistant("Hello!"), ChatTurn.User("Bye")]), Is.EqualTo(
            "<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n<|user|>\nBye<|end|>\n<|assistant|>\n"));
    }

    [Test]
    public void Llama2AndMistralFromInstMarkers()
    {
        Assert.That(ChatTemplate.Family("{% if messages[0]['role'] == 'system' %}<<SYS>>\\n{% endif %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"),
            Is.EqualTo(ChatTemplateKind.Llama2));
        Assert.That(ChatTemplate.ForKind(ChatTemplateKind.Llama2).Render(Conversation), Is.EqualTo(
            "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Bye [/INST]"));
        Assert.That(ChatTemplate.Family("{{ bos_token }}{% for message in messages %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% endfor %}"),
            Is.EqualTo(ChatTemplateKind.Mistral));
        Assert.That(ChatTemplate.ForKind(ChatTemplateKind.Mistral).Render([ChatTurn.User("Hi"), ChatTurn.Assistant("Hello!"), ChatTurn.User("Bye")]),
            Is.EqualTo("[INST] Hi [/INST]Hello!</s>[INST] Bye [/INST]"));
    }

    [Test]
    public void NoTemplateIsPlainConcatenation()
    {
        var tok = StreamingAndSpecialTests.Load("models/llama2c/tok512.bin");
        var t = ChatTemplate.FromTokenizer(tok);
        Assert.That(t.Kind, Is.EqualTo(ChatTemplateKind.Plain));
        Assert.That(t.Render([ChatTurn.User("Once upon a time")]), Is.EqualTo("Once upon a time"));
    }

    [Test]
    public void UnknownTemplateIsAClearError()
    {
        // A template of no known family is executed; one the interpreter cannot parse is an error naming the construct.
        Assert.That(ChatTemplate.Detect("{% for m in messages %}### {{ m.role }}: {{ m.content }}\n{% endfor %}").Render([ChatTurn.User("Hi")]),
            Is.EqualTo("### user: Hi\n"));
        var e = Assert.Throws<NotSupportedException>(() => ChatTemplate.Detect("### Human: {% raw %}{{ message }}{% endraw %}"));
        Assert.That(e!.Message, Does.Contain("### Human").And.Contain("unsupported tag '{% raw %}'"));
        Assert.Throws<ArgumentException>(() => ChatTemplate.ForKind(ChatTemplateKind.ChatML).Render([new ChatTurn("tool", "x")]));
    }
}
