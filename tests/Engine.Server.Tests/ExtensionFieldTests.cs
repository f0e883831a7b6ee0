// The "engine" extension object: a per-request KV policy runs on a server started with a policy (the engine reports the
// policy the finished request held), and top_k = 1 is greedy whatever the temperature. (ignore_eos is exercised by
// bench/Engine.ServerLoad: stories260K's stories never emit its end-of-text id, so a test here could not tell.) Also: the CLI build carries the default model beside the binary (models/ under the output folder).
using System.Text.Json;

namespace Engine.Server.Tests;

[NonParallelizable]
public class ExtensionFieldTests
{
    private static async Task<JsonElement> Post(TestServerHost host, object body)
    {
        using var r = await host.Http.PostAsync("/v1/completions", OpenAiClientTests.Json(body));
        string text = await r.Content.ReadAsStringAsync();
        Assert.That((int)r.StatusCode, Is.EqualTo(200), text);
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    [Test]
    public async Task PerRequestKvPolicyRunsOnAPolicyServer()
    {
        await using var host = await TestServerHost.StartAsync(engine: TestServerHost.LoadEngine(kvPolicy: "full"));
        await Post(host, new { model = TestServerHost.ModelId, prompt = "Once upon a time", max_tokens = 20, temperature = 0, engine = new { kv_policy = "int8", kv_policy_budget = 0.5 } });
        Assert.That(host.Engine.KvPolicyUsage?.Policy, Does.StartWith("int8"), "the request ran under its own policy");
        await Post(host, new { model = TestServerHost.ModelId, prompt = "Once upon a time", max_tokens = 20, temperature = 0 });
        Assert.That(host.Engine.KvPolicyUsage?.Policy, Does.StartWith("full"), "without the field the engine's policy applies");
    }

    [Test]
    public async Task TopKOneIsGreedyWhateverTheTemperature()
    {
        await using var host = await TestServerHost.StartAsync();
        var greedy = await Post(host, new { model = TestServerHost.ModelId, prompt = "Once upon a time", max_tokens = 60, temperature = 0 });
        var topK1 = await Post(host, new { model = TestServerHost.ModelId, prompt = "Once upon a time", max_tokens = 60, temperature = 1.5, seed = 9, engine = new { top_k = 1 } });
        Assert.That(topK1.GetProperty("choices")[0].GetProperty("text").GetString(), Is.EqualTo(greedy.GetProperty("choices")[0].GetProperty("text").GetString()));
    }

    [Test]
    public void CliOutputCarriesTheDefaultModel()
    {
        // the test output folder is built with Engine.Cli's content items (CopyToOutputDirectory), as `dotnet build -o DIR` is
        var beside = Path.Combine(AppContext.BaseDirectory, "models", "stories260K.gguf");
        Assert.That(File.Exists(beside), $"{beside} exists");
        Assert.That(new FileInfo(beside).Length, Is.EqualTo(new FileInfo(TestServerHost.ModelPath).Length));
    }
}
