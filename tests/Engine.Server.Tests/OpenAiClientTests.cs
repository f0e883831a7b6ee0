// The official OpenAI .NET SDK (2.15) against the in-process server on stories260K: non-streaming and streaming chat,
// usage, stop sequences, seed reproducibility, logprobs, and greedy output equal to what the in-process engine and the
// `engine run` command produce for the same input (independent oracles: a separately loaded engine, the CLI).
#pragma warning disable OPENAI001 // Seed is marked experimental in the SDK
using System.Text;
using System.Text.Json;
using Engine.Runtime;
using Engine.Runtime.Sampling;
using OpenAI.Chat;
using EngineChat = Engine.Runtime.ChatMessage;

namespace Engine.Server.Tests;

[NonParallelizable]
public class OpenAiClientTests
{
    private TestServerHost _host = null!;
    private static readonly OpenAI.Chat.ChatMessage[] Story = [new SystemChatMessage("You tell stories."), new UserChatMessage("Once upon a time")];
    private static readonly EngineChat[] StoryEngine = [new("system", "You tell stories."), new("user", "Once upon a time")];

    [OneTimeSetUp] public async Task Start() => _host = await TestServerHost.StartAsync();
    [OneTimeTearDown] public async Task Stop() => await _host.DisposeAsync();

    /// <summary>What a separately loaded engine generates greedily for the same messages.</summary>
    private static async Task<(string Text, GenerationUsage Usage)> InProcess(int maxTokens, IReadOnlyList<string>? stops = null)
    {
        using var e = TestServerHost.LoadEngine();
        var (text, _, usage) = await e.GenerateTextAsync(e.GenerateAsync(StoryEngine,
            new GenerationOptions { MaxTokens = maxTokens, Sampling = SamplingOptions.Greedy, StopStrings = stops ?? [] }));
        return (text, usage);
    }

    [Test]
    public async Task GreedyChatEqualsTheInProcessEngineWithUsage()
    {
        var expected = await InProcess(40);
        var r = (await _host.Chat().CompleteChatAsync(Story, new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 40 })).Value;
        Assert.Multiple(() =>
        {
            Assert.That(r.Content[0].Text, Is.EqualTo(expected.Text));
            Assert.That(r.Usage.InputTokenCount, Is.EqualTo(expected.Usage.PromptTokens));
            Assert.That(r.Usage.OutputTokenCount, Is.EqualTo(expected.Usage.GeneratedTokens));
            Assert.That(r.Usage.TotalTokenCount, Is.EqualTo(expected.Usage.PromptTokens + expected.Usage.GeneratedTokens));
            Assert.That(r.FinishReason, Is.EqualTo(expected.Usage.FinishReason == FinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop));
            Assert.That(r.Model, Is.EqualTo(TestServerHost.ModelId));
        });
    }

    [Test]
    public async Task StreamingGivesTheSameTextAndUsageAsNonStreaming()
    {
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 40 };
        var whole = (await _host.Chat().CompleteChatAsync(Story, options)).Value;
        var sb = new StringBuilder();
        ChatTokenUsage? usage = null;
        ChatFinishReason? finish = null;
        int updates = 0;
        await foreach (var u in _host.Chat().CompleteChatStreamingAsync(Story, options))
        {
            updates++;
            foreach (var part in u.ContentUpdate) sb.Append(part.Text);
            usage ??= u.Usage;
            finish ??= u.FinishReason;
        }
        Assert.Multiple(() =>
        {
            Assert.That(updates, Is.GreaterThan(3), "streamed in pieces");
            Assert.That(sb.ToString(), Is.EqualTo(whole.Content[0].Text));
            Assert.That(usage, Is.Not.Null, "the SDK asks for stream_options.include_usage; the server sends a usage chunk");
            Assert.That(usage!.OutputTokenCount, Is.EqualTo(whole.Usage.OutputTokenCount));
            Assert.That(usage.InputTokenCount, Is.EqualTo(whole.Usage.InputTokenCount));
            Assert.That(finish, Is.EqualTo(whole.FinishReason));
        });
    }

    [Test]
    public async Task StopSequenceEndsTheReplyBeforeIt()
    {
        var full = await InProcess(60);
        // a stop string taken from the middle of the unconstrained greedy reply
        int at = full.Text.Length / 2;
        string stop = full.Text.Substring(at, 3);
        int first = full.Text.IndexOf(stop, StringComparison.Ordinal);
        var r = (await _host.Chat().CompleteChatAsync(Story, new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 60, StopSequences = { stop } })).Value;
        Assert.Multiple(() =>
        {
            Assert.That(r.Content[0].Text, Is.EqualTo(full.Text[..first]));
            Assert.That(r.FinishReason, Is.EqualTo(ChatFinishReason.Stop));
        });
    }

    [Test]
    public async Task SameSeedSameTextOtherSeedOtherText()
    {
        async Task<string> Sample(long seed) => (await _host.Chat().CompleteChatAsync(Story,
            new ChatCompletionOptions { Temperature = 1.0f, MaxOutputTokenCount = 40, Seed = seed })).Value.Content[0].Text;
        string a = await Sample(42), b = await Sample(42);
        var others = new[] { await Sample(1), await Sample(2), await Sample(3) };
        Assert.That(b, Is.EqualTo(a), "same seed → same text");
        Assert.That(others, Has.Some.Not.EqualTo(a), "other seeds → (almost surely) other text at temperature 1");
    }

    [Test]
    public async Task LogProbsOfGreedyTokensAreTheTopAlternatives()
    {
        var r = (await _host.Chat().CompleteChatAsync(Story, new ChatCompletionOptions
        {
            Temperature = 0, MaxOutputTokenCount = 10, IncludeLogProbabilities = true, TopLogProbabilityCount = 3,
        })).Value;
        var lps = r.ContentTokenLogProbabilities;
        Assert.That(lps, Has.Count.EqualTo(r.Usage.OutputTokenCount));
        Assert.That(string.Concat(lps.Select(l => l.Token)), Is.EqualTo(r.Content[0].Text));
        foreach (var l in lps)
        {
            Assert.That(l.TopLogProbabilities, Has.Count.EqualTo(3));
            Assert.That(l.LogProbability, Is.EqualTo(l.TopLogProbabilities[0].LogProbability).Within(1e-6), "greedy picks the most likely token");
            Assert.That(l.TopLogProbabilities.Select(t => t.LogProbability), Is.Ordered.Descending);
            Assert.That(l.TopLogProbabilities.Sum(t => Math.Exp(t.LogProbability)), Is.LessThanOrEqualTo(1.0 + 1e-5));
            Assert.That(l.LogProbability, Is.LessThanOrEqualTo(0));
        }
    }

    [Test]
    public async Task CompletionsEndpointGreedyEqualsEngineRun()
    {
        var (code, stdout, err) = Engine.Runtime.Tests.CliInvoker.Invoke(Engine.Cli.Commands.RunCommand.Create(),
            ["run", "--model", TestServerHost.ModelPath, "--prompt", "Once upon a time", "--temperature", "0", "--max-tokens", "30", "--threads", "2"]);
        Assert.That(code, Is.EqualTo(0), err);
        string expected = stdout.TrimEnd('\n');   // run ends its output with one newline
        using var resp = await _host.Http.PostAsync("/v1/completions", Json(new { model = TestServerHost.ModelId, prompt = "Once upon a time", temperature = 0, max_tokens = 30 }));
        Assert.That((int)resp.StatusCode, Is.EqualTo(200));
        using var doc = JsonDocument.Parse(await resp.Content.ReadAsStringAsync());
        var choice = doc.RootElement.GetProperty("choices")[0];
        Assert.That(choice.GetProperty("text").GetString(), Is.EqualTo(expected));
        Assert.That(doc.RootElement.GetProperty("object").GetString(), Is.EqualTo("text_completion"));
    }

    [Test]
    public async Task RawStreamIsServerSentEventsEndingInDone()
    {
        using var resp = await _host.Http.PostAsync("/v1/completions",
            Json(new { model = TestServerHost.ModelId, prompt = "Once", temperature = 0, max_tokens = 12, stream = true, stream_options = new { include_usage = true } }));
        Assert.That(resp.Content.Headers.ContentType!.MediaType, Is.EqualTo("text/event-stream"));
        string body = await resp.Content.ReadAsStringAsync();
        var events = body.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.That(events, Has.All.StartWith("data: "));
        Assert.That(events[^1], Is.EqualTo("data: [DONE]"));
        using var usage = JsonDocument.Parse(events[^2]["data: ".Length..]);
        Assert.That(usage.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), Is.EqualTo(12));
        var text = string.Concat(events[..^2].Select(e => JsonDocument.Parse(e["data: ".Length..]).RootElement.GetProperty("choices")[0].GetProperty("text").GetString()));
        using var e2 = TestServerHost.LoadEngine();
        var (expected, _, _) = await e2.GenerateTextAsync(e2.GenerateAsync("Once", new GenerationOptions { MaxTokens = 12, Sampling = SamplingOptions.Greedy }));
        Assert.That(text, Is.EqualTo(expected));
    }

    [Test]
    public async Task ModelsAndHealth()
    {
        var models = (await _host.OpenAi().GetOpenAIModelClient().GetModelsAsync()).Value;
        Assert.That(models.Select(m => m.Id), Is.EqualTo(new[] { TestServerHost.ModelId }));
        using var health = await _host.Http.GetAsync("/health");
        Assert.That((int)health.StatusCode, Is.EqualTo(200));
    }

    internal static StringContent Json(object o) => new(JsonSerializer.Serialize(o), Encoding.UTF8, "application/json");
}
