// Unexpected failures inside the engine: a tokenizer that throws (with internal details in its message) while encoding
// a request → 500 with a generic OpenAI error object, and while decoding mid-stream → one SSE error event then [DONE];
// neither the details nor a stack trace reach the client, and the server keeps serving the next request.
using System.Text;
using Engine.Runtime;

namespace Engine.Server.Tests;

[NonParallelizable]
public class FailureIsolationTests
{
    private const string Secret = "SECRET-INTERNAL-DETAIL";

    /// <summary>The model's own tokenizer, except: encoding text containing "BOOM" throws, and decoding a token after
    /// the first 5 of a stream whose decoder was created while <see cref="FailDecode"/> is set throws.</summary>
    private sealed class FaultyTokenizer(ITextTokenizer inner) : ITextTokenizer
    {
        public volatile bool FailDecode;
        public int VocabSize => inner.VocabSize;
        public int? BosId => inner.BosId;
        public IReadOnlySet<int> EndOfGenerationIds => inner.EndOfGenerationIds;
        public int[] Encode(string text, bool addSpecial, bool parseSpecial) =>
            text.Contains("BOOM") ? throw new InvalidOperationException(Secret) : inner.Encode(text, addSpecial, parseSpecial);
        public IStreamingTextDecoder CreateStreamingDecoder(bool atTextStart) =>
            FailDecode ? new FaultyDecoder(inner.CreateStreamingDecoder(atTextStart)) : inner.CreateStreamingDecoder(atTextStart);
        public string? ApplyChatTemplate(IReadOnlyList<ChatMessage> messages) => inner.ApplyChatTemplate(messages);
    }

    private sealed class FaultyDecoder(IStreamingTextDecoder inner) : IStreamingTextDecoder
    {
        private int _n;
        public string Push(int tokenId) => ++_n > 5 ? throw new InvalidOperationException(Secret) : inner.Push(tokenId);
        public string Flush() => inner.Flush();
    }

    [Test]
    public async Task InternalFailuresAreGeneric500sOrOneStreamErrorAndTheServerCarriesOn()
    {
        FaultyTokenizer? faulty = null;
        var engine = InferenceEngine.Load(TestServerHost.ModelPath, new EngineOptions { Threads = 2 },
            f => faulty = new FaultyTokenizer(TokenizerAdapter.FromModelFile(f)!));
        await using var host = await TestServerHost.StartAsync(engine: engine);
        StringContent Body(string prompt, bool stream) => OpenAiClientTests.Json(new { model = TestServerHost.ModelId, prompt, max_tokens = 20, stream });

        using (var r = await host.Http.PostAsync("/v1/completions", Body("BOOM", false)))
        {
            string text = await r.Content.ReadAsStringAsync();
            Assert.That((int)r.StatusCode, Is.EqualTo(500));
            BadRequestTests.AssertErrorObject(text, code: "internal_error");
            Assert.That(text, Does.Not.Contain(Secret).And.Not.Contain("Exception"));
        }

        faulty!.FailDecode = true;
        using (var r = await host.Http.PostAsync("/v1/completions", Body("Once upon a time", true)))
        {
            string text = await r.Content.ReadAsStringAsync();
            Assert.That((int)r.StatusCode, Is.EqualTo(200), "the stream had started");
            var events = text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
            Assert.That(events[^1], Is.EqualTo("data: [DONE]"));
            BadRequestTests.AssertErrorObject(events[^2]["data: ".Length..], code: "internal_error");
            Assert.That(text, Does.Not.Contain(Secret).And.Not.Contain("   at "));
        }
        faulty.FailDecode = false;
        await host.AssertPoolIdleAsync();

        using var ok = await host.Http.PostAsync("/v1/completions", Body("Once upon a time", false));
        Assert.That((int)ok.StatusCode, Is.EqualTo(200), "the server still serves");
    }
}
