// Faults: a client that disconnects mid-stream cancels its request and its KV blocks are freed at once (checked while
// the serving loop is held, so nothing but the cancellation can free them); a full queue answers 503 with Retry-After
// and the admitted requests still complete; a wrong or missing API key → 401; a body over the limit → 413.
using System.Net;
using System.Text;

namespace Engine.Server.Tests;

[NonParallelizable]
public class FaultTests
{
    private static StringContent Body(string json) => new(json, Encoding.UTF8, "application/json");

    private const string LongStream = "{\"model\":\"stories260K\",\"prompt\":\"Once upon a time\",\"max_tokens\":400,\"stream\":true,\"engine\":{\"ignore_eos\":true}}";

    [Test]
    public async Task DisconnectMidStreamCancelsTheRequestAndFreesItsBlocksAtOnce()
    {
        await using var host = await TestServerHost.StartAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));   // a hang fails the test instead
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = Body(LongStream) };
        // The loop holds after the request's first step (however fast the model is), so it is caught mid-stream.
        using (host.Engine.PauseServingAfterNextStep())
        {
            var resp = await host.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cts.Token);
            var reader = new StreamReader(await resp.Content.ReadAsStreamAsync(cts.Token));
            string? first = await reader.ReadLineAsync(cts.Token);
            Assert.That(first, Does.StartWith("data: {"), "the stream started");
            var before = host.Engine.Stats!;
            Assert.That(before.BlocksInUse, Is.GreaterThan(0), "the request holds KV blocks mid-stream");
            Assert.That(before.Running, Is.EqualTo(1));
            cts.Cancel();   // the client goes away
            resp.Dispose();
            var sw = System.Diagnostics.Stopwatch.StartNew();
            while ((host.Engine.Stats!.BlocksInUse > 0 || host.Engine.Stats!.Cancelled == 0) && sw.Elapsed < TimeSpan.FromSeconds(10)) await Task.Delay(5);
            var after = host.Engine.Stats!;
            Assert.Multiple(() =>
            {
                Assert.That(after.Cancelled, Is.EqualTo(1), "the engine cancelled the request");
                Assert.That(after.BlocksInUse, Is.EqualTo(0), "its blocks were freed while the loop was held (not at the next step)");
                Assert.That(after.Finished, Is.EqualTo(0), "it did not finish by itself");
            });
        }
        await host.AssertPoolIdleAsync();
        using var ok = await host.Http.PostAsync("/v1/completions", Body("{\"model\":\"stories260K\",\"prompt\":\"Once\",\"max_tokens\":4}"));
        Assert.That(ok.StatusCode, Is.EqualTo(HttpStatusCode.OK), "the server still serves");
    }

    [Test]
    public async Task FullQueueAnswers503WithRetryAfterAndAdmittedRequestsComplete()
    {
        await using var host = await TestServerHost.StartAsync(new ServerOptions { MaxPendingRequests = 2, RetryAfterSeconds = 3 });
        const string req = "{\"model\":\"stories260K\",\"prompt\":\"Once\",\"max_tokens\":8}";
        Task<HttpResponseMessage>[] admitted;
        using (host.Engine.PauseServing())
        {
            admitted = [host.Http.PostAsync("/v1/completions", Body(req)), host.Http.PostAsync("/v1/completions", Body(req))];
            var sw = System.Diagnostics.Stopwatch.StartNew();
            while (host.Engine.Stats!.Waiting < 2 && sw.Elapsed < TimeSpan.FromSeconds(10)) await Task.Delay(5);
            Assert.That(host.Engine.Stats!.Waiting, Is.EqualTo(2), "both requests queued in the held engine");
            using var rejected = await host.Http.PostAsync("/v1/completions", Body(req));
            Assert.That((int)rejected.StatusCode, Is.EqualTo(503));
            Assert.That(rejected.Headers.RetryAfter?.Delta, Is.EqualTo(TimeSpan.FromSeconds(3)));
            BadRequestTests.AssertErrorObject(await rejected.Content.ReadAsStringAsync(), code: "queue_full");
        }
        foreach (var t in admitted)
        {
            using var r = await t;
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        }
        await host.AssertPoolIdleAsync();
    }

    [Test]
    public async Task ApiKeyIsRequiredOnV1ButNotOnHealth()
    {
        await using var host = await TestServerHost.StartAsync(new ServerOptions { ApiKey = "s3cret" });
        using var bare = Microsoft.AspNetCore.TestHost.HostBuilderTestServerExtensions.GetTestServer(host.App).CreateClient();   // no default key header
        async Task<HttpResponseMessage> Get(string path, string? auth)
        {
            var m = new HttpRequestMessage(HttpMethod.Get, path);
            m.Headers.Authorization = auth == null ? null : new("Bearer", auth);
            return await bare.SendAsync(m);
        }
        using (var none = await Get("/v1/models", null)) { Assert.That((int)none.StatusCode, Is.EqualTo(401)); BadRequestTests.AssertErrorObject(await none.Content.ReadAsStringAsync(), code: "invalid_api_key"); }
        using (var wrong = await Get("/v1/models", "guess")) Assert.That((int)wrong.StatusCode, Is.EqualTo(401));
        using (var right = await Get("/v1/models", "s3cret")) Assert.That((int)right.StatusCode, Is.EqualTo(200));
        using (var health = await Get("/health", null)) Assert.That((int)health.StatusCode, Is.EqualTo(200));
        // the official client with the key
        var r = await host.Chat().CompleteChatAsync([new OpenAI.Chat.UserChatMessage("Hi")], new OpenAI.Chat.ChatCompletionOptions { MaxOutputTokenCount = 3 });
        Assert.That(r.Value.Usage.OutputTokenCount, Is.GreaterThan(0));
    }

    [Test]
    public async Task BodyOverTheLimitIs413()
    {
        await using var host = await TestServerHost.StartAsync(new ServerOptions { MaxBodyBytes = 1000 });
        string big = "{\"model\":\"stories260K\",\"prompt\":\"" + new string('a', 2000) + "\"}";
        using var resp = await host.Http.PostAsync("/v1/completions", Body(big));
        Assert.That((int)resp.StatusCode, Is.EqualTo(413));
        BadRequestTests.AssertErrorObject(await resp.Content.ReadAsStringAsync(), code: "request_too_large");
        // also without a Content-Length (chunked): the limit is enforced while reading
        var chunked = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(big))) };
        chunked.Content.Headers.ContentLength = null;
        using var resp2 = await host.Http.SendAsync(chunked);
        Assert.That((int)resp2.StatusCode, Is.EqualTo(413));
    }
}
