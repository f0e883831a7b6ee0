// Microsoft.Extensions.AI 11: the in-process EngineChatClient and an IChatClient built with Microsoft.Extensions.AI.OpenAI
// pointed at the server behave the same — same text, usage and finish reason for greedy, seeded-sampled, stop-sequence
// and streaming requests (the in-process client is given OpenAI's sampling defaults: no top-k / min-p, top-p 1).
using Engine.Runtime;
using Engine.Runtime.Sampling;
using Microsoft.Extensions.AI;

namespace Engine.Server.Tests;

[NonParallelizable]
public class ChatClientEquivalenceTests
{
    private TestServerHost _host = null!;
    private IChatClient _remote = null!, _local = null!;
    private static readonly Microsoft.Extensions.AI.ChatMessage[] Messages =
        [new(ChatRole.System, "You tell stories."), new(ChatRole.User, "Tell me about a dog")];

    [OneTimeSetUp]
    public async Task Start()
    {
        _host = await TestServerHost.StartAsync();
        _remote = _host.MeaiChat();
        _local = new EngineChatClient(TestServerHost.LoadEngine(), new GenerationOptions
        {
            Sampling = new SamplingOptions { Temperature = 1, TopK = 0, TopP = 1, MinP = 0 },
        }, ownsEngine: true);
    }

    [OneTimeTearDown]
    public async Task Stop() { _local.Dispose(); _remote.Dispose(); await _host.DisposeAsync(); }

    private static IEnumerable<TestCaseData> Options()
    {
        yield return new TestCaseData(new ChatOptions { Temperature = 0, MaxOutputTokens = 30 }).SetName("greedy");
        yield return new TestCaseData(new ChatOptions { Temperature = 0.9f, MaxOutputTokens = 30, Seed = 1234 }).SetName("seeded sampling");
        yield return new TestCaseData(new ChatOptions { Temperature = 0.7f, TopP = 0.8f, MaxOutputTokens = 30, Seed = 7, PresencePenalty = 0.5f, FrequencyPenalty = 0.3f }).SetName("top-p and penalties");
        yield return new TestCaseData(new ChatOptions { Temperature = 0, MaxOutputTokens = 40, StopSequences = ["the"] }).SetName("stop sequence");
    }

    [TestCaseSource(nameof(Options))]
    public async Task SameResponse(ChatOptions options)
    {
        var local = await _local.GetResponseAsync(Messages, options.Clone());
        var remote = await _remote.GetResponseAsync(Messages, options.Clone());
        Assert.Multiple(() =>
        {
            Assert.That(remote.Text, Is.EqualTo(local.Text));
            Assert.That(local.Text, Is.Not.Empty);
            Assert.That(remote.FinishReason, Is.EqualTo(local.FinishReason));
            Assert.That(remote.Usage?.InputTokenCount, Is.EqualTo(local.Usage?.InputTokenCount));
            Assert.That(remote.Usage?.OutputTokenCount, Is.EqualTo(local.Usage?.OutputTokenCount));
        });
    }

    [TestCaseSource(nameof(Options))]
    public async Task SameStreamingResponse(ChatOptions options)
    {
        var local = await _local.GetStreamingResponseAsync(Messages, options.Clone()).ToChatResponseAsync();
        var remote = await _remote.GetStreamingResponseAsync(Messages, options.Clone()).ToChatResponseAsync();
        Assert.Multiple(() =>
        {
            Assert.That(remote.Text, Is.EqualTo(local.Text));
            Assert.That(remote.FinishReason, Is.EqualTo(local.FinishReason));
            Assert.That(remote.Usage?.OutputTokenCount, Is.EqualTo(local.Usage?.OutputTokenCount));
        });
    }
}
