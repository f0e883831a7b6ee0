// Owns: chat templates executed end to end through ChatTemplate: the models' own templates (Qwen3 from
// shared/models/tokenizers/qwen3/tokenizer_config.json, Llama 3.x, Llama 3.2 with tools) with tools, tool calls,
// <think> handling and the generation prompt; agreement of the built-in family formats with the real templates of
// the same family; and the errors a user sees. Expected strings come from Jinja2 (the reference implementation, run
// as transformers configures it) or from llama.cpp's test file (LlamaCppTemplateCases), never from this code.
using System.Text.Json;
using Engine.Formats;

namespace Engine.Tokenizers.Tests.Jinja;

public class JinjaChatTemplateTests
{
    private static readonly JsonElement WeatherTool = JsonDocument.Parse(
        """{"type":"function","function":{"name":"get_weather","description":"Get the weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}""").RootElement;

    private static ChatTemplate Qwen3() =>
        ChatTemplate.FromTokenizer(StreamingAndSpecialTests.Load("models/tokenizers/qwen3/tokenizer.json"));

    [Test]
    public void Qwen3WithToolsToolCallsAndThinking()
    {
        var t = Qwen3();
        Assert.That(t.IsExecuted, Is.True);
        ChatTurn[] conversation =
        [
            ChatTurn.System("You are a helpful assistant."),
            ChatTurn.User("What's the weather in Paris?"),
            ChatTurn.Assistant("<think>\nI should call the tool.\n</think>\n\n") with { ToolCalls = [new ChatToolCall("call_1", "get_weather", """{"city": "Paris"}""")] },
            ChatTurn.Tool("{\"temperature\": 21}", "call_1"),
        ];
        // Jinja2 3.1.6 rendering of the same template and input (transformers settings).
        const string expected =
            "<|im_start|>system\nYou are a helpful assistant.\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n" +
            "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n" +
            "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get the weather\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}\n" +
            "</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n" +
            "<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" +
            "<|im_start|>user\nWhat's the weather in Paris?<|im_end|>\n" +
            "<|im_start|>assistant\n<think>\nI should call the tool.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n" +
            "<|im_start|>user\n<tool_response>\n{\"temperature\": 21}\n</tool_response><|im_end|>\n<|im_start|>assistant\n";
        Assert.That(t.Render(conversation, new ChatRenderOptions { Tools = [WeatherTool] }), Is.EqualTo(expected));
    }

    [Test]
    public void Qwen3DropsPastThinkingAndHonoursEnableThinking()
    {
        ChatTurn[] conversation = [ChatTurn.User("Hi"), ChatTurn.Assistant("<think>\nGreeting.\n</think>\n\nHello!"), ChatTurn.User("Bye")];
        var text = Qwen3().Render(conversation, new ChatRenderOptions { Variables = new Dictionary<string, object?> { ["enable_thinking"] = false } });
        Assert.That(text, Is.EqualTo(
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"));
    }

    [Test]
    public void Llama32WithToolsAndDate()
    {
        var t = ChatTemplate.Detect(Llama32Template.Text, "<|begin_of_text|>", "<|eot_id|>");
        Assert.That((t.Kind, t.IsExecuted), Is.EqualTo((ChatTemplateKind.Llama3, true)));
        var options = new ChatRenderOptions { Tools = [WeatherTool], Clock = () => JinjaOracleCases.Clock };
        ChatTurn[] conversation =
        [
            ChatTurn.System("You are a helpful assistant."),
            ChatTurn.User("What's the weather in Paris?"),
            ChatTurn.Assistant("") with { ToolCalls = [new ChatToolCall("call_1", "get_weather", """{"city":"Paris"}""")] },
            ChatTurn.Tool("{\"temperature\": 21}", "call_1"),
        ];
        // The template writes bos_token first; ChatTemplate removes it (the tokenizer adds BOS when encoding).
        Assert.That(t.Render(conversation, options), Is.EqualTo(Llama32Template.ExpectedWithTools["<|begin_of_text|>".Length..]));
        Assert.That(t.Render([ChatTurn.User("Hi")], new ChatRenderOptions { Clock = () => JinjaOracleCases.Clock }),
            Is.EqualTo(Llama32Template.ExpectedPlain["<|begin_of_text|>".Length..]));
    }

    private static readonly ChatTurn[] NoSystem = [ChatTurn.User("Hi"), ChatTurn.Assistant("Hello!"), ChatTurn.User("Bye")];
    private static readonly ChatTurn[] WithSystem = [ChatTurn.System("Be brief."), .. NoSystem];

    private static string Case(string prefix) => LlamaCppTemplateCases.All().Single(c => c.Name.StartsWith(prefix, StringComparison.Ordinal)).Template;

    private static IEnumerable<TestCaseData> FamilyAgreement()
    {
        yield return new TestCaseData(ChatTemplateKind.Llama3, Case("Llama-3"), WithSystem, "<s>").SetName("Llama3 family = Llama 3 template");
        yield return new TestCaseData(ChatTemplateKind.ChatML, Case("teknium/OpenHermes"), WithSystem, "").SetName("ChatML family = OpenHermes template");
        yield return new TestCaseData(ChatTemplateKind.Phi3, Case("Phi-3-mini"), NoSystem, "<s>").SetName("Phi3 family = Phi-3-mini template");
        yield return new TestCaseData(ChatTemplateKind.Phi3, Case("Phi-3-small"), WithSystem, "<s>").SetName("Phi3 family = Phi-3-small template");
        yield return new TestCaseData(ChatTemplateKind.Gemma, Case("google/gemma-7b-it"), NoSystem, "<bos>").SetName("Gemma family = gemma-7b-it template");
        yield return new TestCaseData(ChatTemplateKind.Mistral, Case("mistralai/Mistral-7B-Instruct-v0.2 (pre-v1"), NoSystem, "<s>").SetName("Mistral family = Mistral v0.2 template");
    }

    [TestCaseSource(nameof(FamilyAgreement))]
    public void BuiltInFamilyMatchesTheRealTemplate(ChatTemplateKind kind, string template, ChatTurn[] conversation, string bos)
    {
        var executed = ChatTemplate.Detect(template, bos, "</s>");
        Assert.That(executed.IsExecuted, Is.True);
        // Phi-3-small builds '<|' + role + '|>' at run time, so its markers are not in the text: Custom.
        Assert.That(executed.Kind, Is.EqualTo(kind).Or.EqualTo(ChatTemplateKind.Custom));
        Assert.That(ChatTemplate.ForKind(kind).Render(conversation), Is.EqualTo(executed.Render(conversation)));
    }

    [Test]
    public void TemplateRefusalIsAChatTemplateExceptionWithItsMessage()
    {
        var t = ChatTemplate.Detect(Case("mistralai/Mistral-7B-Instruct-v0.2 (pre-v1"), "<s>", "</s>");
        var e = Assert.Throws<ChatTemplateException>(() => t.Render([ChatTurn.User("a"), ChatTurn.User("b")]));
        Assert.That(e!.Message, Does.Contain("Conversation roles must alternate user/assistant/user/assistant/..."));
        Assert.That(e, Is.InstanceOf<ArgumentException>(), "a refused conversation is the caller's fault (HTTP 400)");
    }

    [Test]
    public void SystemTurnIsFoldedIntoTheFirstUserTurnWhenTheTemplateRefusesIt()
    {
        // gemma-7b-it raises 'System role not supported'; llama.cpp then passes "system\nuser" as the first user turn,
        // and its expected rendering of the full test conversation is the case's Expected.
        var gemma = LlamaCppTemplateCases.All().Single(c => c.Name == "google/gemma-7b-it");
        var t = ChatTemplate.Detect(gemma.Template);
        var conversation = LlamaCppTemplateCases.Conversation.Select(m => new ChatTurn(m.Role, m.Content)).ToList();
        Assert.That(t.Render(conversation), Is.EqualTo(gemma.Expected));
    }

    [Test]
    public void UnsupportedConstructNamesItOrFallsBackToTheFamily()
    {
        var e = Assert.Throws<NotSupportedException>(() => ChatTemplate.Detect("{% include 'chat.jinja' %}"));
        Assert.That(e!.Message, Does.Contain("unsupported tag '{% include %}'").And.Contain("line 1, column 4"));
        var fallback = ChatTemplate.Detect("{% for m in messages %}<|im_start|>{{ m.role }}{% call x() %}{% endcall %}{% endfor %}");
        Assert.That((fallback.Kind, fallback.IsExecuted), Is.EqualTo((ChatTemplateKind.ChatML, false)));
        Assert.That(fallback.JinjaProblem, Does.Contain("unsupported tag '{% call %}'"));
        Assert.That(fallback.Render([ChatTurn.User("Hi")]), Is.EqualTo("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
        Assert.Throws<ChatTemplateException>(() => fallback.Render([ChatTurn.User("Hi")], new ChatRenderOptions { Tools = [WeatherTool] }));
    }

    [Test]
    public void LeadingBosIsRemovedOnlyWhenTheTokenizerAddsIt()
    {
        var llama3 = ChatTemplate.FromTokenizer(StreamingAndSpecialTests.Load("models/tokenizers/llama3/tokenizer.json"));
        Assert.That((llama3.BosToken, llama3.StripLeadingBos), Is.EqualTo(("<|begin_of_text|>", true)));
        Assert.That(llama3.Render([ChatTurn.User("Hi")]), Does.StartWith("<|start_header_id|>user"));
        Assert.That(Qwen3().StripLeadingBos, Is.False, "Qwen's vocabulary adds no BOS, so a template's BOS text would be kept");
    }

    [Test]
    public void GgufTemplateIsExecutedWithItsBosText()
    {
        using var file = ModelFiles.Open(SharedData.Get("models/vocab/ggml-vocab-phi-3.gguf"));
        var t = ChatTemplate.FromModelFile(file);
        Assert.That((t.Kind, t.IsExecuted, t.BosToken), Is.EqualTo((ChatTemplateKind.Phi3, true, "<s>")));
    }
}
