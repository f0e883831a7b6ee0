// The bad-requests table: each malformed or out-of-range request gets its status code and an OpenAI error object
// ({"error": {"message", "type", "param", "code"}}, one line, no stack trace), and the server answers a good request
// right after every one of them (one failure never stops it).
using System.Net;
using System.Text;
using System.Text.Json;

namespace Engine.Server.Tests;

[NonParallelizable]
public class BadRequestTests
{
    private TestServerHost _host = null!;

    [OneTimeSetUp] public async Task Start() => _host = await TestServerHost.StartAsync();
    [OneTimeTearDown] public async Task Stop() => await _host.DisposeAsync();

    private const string Chat = "/v1/chat/completions", Completions = "/v1/completions";
    private const string Msg = "\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]";
    private const string M = "\"model\":\"stories260K\"";

    public static IEnumerable<TestCaseData> Cases()
    {
        TestCaseData C(string name, string path, string body, int status, string? param = null, string? code = null) =>
            new TestCaseData(path, body, status, param, code).SetName(name);
        yield return C("malformed JSON", Chat, "{\"model\":", 400);
        yield return C("body not an object", Chat, "[1,2]", 400);
        yield return C("empty body", Chat, "", 400);
        yield return C("missing model", Chat, "{" + Msg + "}", 400, "model");
        yield return C("unknown model", Chat, "{\"model\":\"gpt-9\"," + Msg + "}", 400, "model", "model_not_found");
        yield return C("model not a string", Chat, "{\"model\":5," + Msg + "}", 400, "model");
        yield return C("missing messages", Chat, "{" + M + "}", 400, "messages");
        yield return C("messages not an array", Chat, "{" + M + ",\"messages\":\"hi\"}", 400, "messages");
        yield return C("messages empty", Chat, "{" + M + ",\"messages\":[]}", 400, "messages");
        yield return C("unknown role", Chat, "{" + M + ",\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", 400, "messages[0].role");
        yield return C("content a number", Chat, "{" + M + ",\"messages\":[{\"role\":\"user\",\"content\":5}]}", 400, "messages[0].content");
        yield return C("image part", Chat, "{" + M + ",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}}]}]}", 400, "messages[0].content");
        yield return C("temperature a string", Chat, "{" + M + "," + Msg + ",\"temperature\":\"hot\"}", 400, "temperature");
        yield return C("temperature above 2", Chat, "{" + M + "," + Msg + ",\"temperature\":3}", 400, "temperature");
        yield return C("top_p zero", Chat, "{" + M + "," + Msg + ",\"top_p\":0}", 400, "top_p");
        yield return C("max_tokens negative", Chat, "{" + M + "," + Msg + ",\"max_tokens\":-1}", 400, "max_tokens");
        yield return C("max_completion_tokens a string", Chat, "{" + M + "," + Msg + ",\"max_completion_tokens\":\"10\"}", 400, "max_completion_tokens");
        yield return C("max_tokens fractional", Chat, "{" + M + "," + Msg + ",\"max_tokens\":1.5}", 400, "max_tokens");
        yield return C("n = 2", Chat, "{" + M + "," + Msg + ",\"n\":2}", 400, "n");
        yield return C("stop a number", Chat, "{" + M + "," + Msg + ",\"stop\":7}", 400, "stop");
        yield return C("five stop sequences", Chat, "{" + M + "," + Msg + ",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", 400, "stop");
        yield return C("presence_penalty out of range", Chat, "{" + M + "," + Msg + ",\"presence_penalty\":5}", 400, "presence_penalty");
        yield return C("frequency_penalty a bool", Chat, "{" + M + "," + Msg + ",\"frequency_penalty\":true}", 400, "frequency_penalty");
        yield return C("top_logprobs over 20", Chat, "{" + M + "," + Msg + ",\"logprobs\":true,\"top_logprobs\":21}", 400, "top_logprobs");
        yield return C("top_logprobs without logprobs", Chat, "{" + M + "," + Msg + ",\"top_logprobs\":2}", 400, "top_logprobs");
        yield return C("seed a string", Chat, "{" + M + "," + Msg + ",\"seed\":\"x\"}", 400, "seed");
        yield return C("stream a string", Chat, "{" + M + "," + Msg + ",\"stream\":\"yes\"}", 400, "stream");
        yield return C("stream_options not an object", Chat, "{" + M + "," + Msg + ",\"stream\":true,\"stream_options\":1}", 400, "stream_options");
        yield return C("engine extension not an object", Chat, "{" + M + "," + Msg + ",\"engine\":[]}", 400, "engine");
        yield return C("engine.top_k negative", Chat, "{" + M + "," + Msg + ",\"engine\":{\"top_k\":-1}}", 400, "engine.top_k");
        yield return C("kv policy on an engine without policies", Chat, "{" + M + "," + Msg + ",\"engine\":{\"kv_policy\":\"h2o\"}}", 400);
        yield return C("prompt over the context", Chat,
            "{" + M + ",\"messages\":[{\"role\":\"user\",\"content\":\"" + string.Concat(Enumerable.Repeat("once upon a time ", 300)) + "\"}]}", 400, "messages", "context_length_exceeded");
        yield return C("tools (not supported yet, never ignored)", Chat, "{" + M + "," + Msg + ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}", 400, "tools");
        yield return C("completions: missing prompt", Completions, "{" + M + "}", 400, "prompt");
        yield return C("completions: mixed prompt array", Completions, "{" + M + ",\"prompt\":[1,\"a\"]}", 400, "prompt");
        yield return C("completions: two prompts", Completions, "{" + M + ",\"prompt\":[\"a\",\"b\"]}", 400, "prompt");
        yield return C("completions: token id outside the vocabulary", Completions, "{" + M + ",\"prompt\":[1,99999]}", 400, "prompt");
        yield return C("completions: logprobs over 5", Completions, "{" + M + ",\"prompt\":\"a\",\"logprobs\":6}", 400, "logprobs");
        yield return C("completions: echo", Completions, "{" + M + ",\"prompt\":\"a\",\"echo\":true}", 400, "echo");
        yield return C("completions: best_of 3", Completions, "{" + M + ",\"prompt\":\"a\",\"best_of\":3}", 400, "best_of");
        yield return C("completions: prompt over the context", Completions,
            "{" + M + ",\"prompt\":\"" + string.Concat(Enumerable.Repeat("once upon a time ", 300)) + "\"}", 400, "prompt", "context_length_exceeded");
        yield return C("unknown route", "/v1/embeddings", "{}", 404);
    }

    [TestCaseSource(nameof(Cases))]
    public async Task AnswersWithItsStatusAndAnErrorObject(string path, string body, int status, string? param, string? code)
    {
        using var resp = await _host.Http.PostAsync(path, new StringContent(body, Encoding.UTF8, "application/json"));
        string text = await resp.Content.ReadAsStringAsync();
        Assert.That((int)resp.StatusCode, Is.EqualTo(status), text);
        AssertErrorObject(text, param, code);
        await AssertStillServes();
    }

    /// <summary>OpenAI's error shape, one line, no stack trace.</summary>
    internal static void AssertErrorObject(string text, string? param = null, string? code = null)
    {
        using var doc = JsonDocument.Parse(text);
        var e = doc.RootElement.GetProperty("error");
        string message = e.GetProperty("message").GetString()!;
        Assert.Multiple(() =>
        {
            Assert.That(message, Is.Not.Empty);
            Assert.That(message, Does.Not.Contain("\n").And.Not.Contain("   at ").And.Not.Contain("(Parameter '"), "one line, no stack trace or internal names");
            Assert.That(e.GetProperty("type").ValueKind, Is.EqualTo(JsonValueKind.String));
            Assert.That(e.TryGetProperty("param", out var p), "param present (may be null)");
            Assert.That(e.TryGetProperty("code", out var c), "code present (may be null)");
            if (param != null) Assert.That(p.GetString(), Is.EqualTo(param));
            if (code != null) Assert.That(c.GetString(), Is.EqualTo(code));
        });
    }

    private async Task AssertStillServes()
    {
        using var ok = await _host.Http.PostAsync(Chat, new StringContent("{" + M + "," + Msg + ",\"max_tokens\":3}", Encoding.UTF8, "application/json"));
        Assert.That(ok.StatusCode, Is.EqualTo(HttpStatusCode.OK), "a good request right after the bad one is served");
    }
}
