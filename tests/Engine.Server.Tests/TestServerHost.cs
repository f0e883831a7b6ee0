// Owns: an in-process server for tests — the bundled stories260K (models/ of the repository) in a paged engine, the
// Engine.Server app on ASP.NET Core's TestServer (no socket), an HttpClient on its handler, and the official OpenAI
// .NET client and a Microsoft.Extensions.AI IChatClient (Microsoft.Extensions.AI.OpenAI) whose transport is that client.
using System.ClientModel;
using System.ClientModel.Primitives;
using Engine.Runtime;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.AI;
using OpenAI;

namespace Engine.Server.Tests;

internal sealed class TestServerHost : IAsyncDisposable
{
    public const string ModelId = "stories260K";

    public InferenceEngine Engine { get; }
    public WebApplication App { get; }
    public HttpClient Http { get; }
    public ServerOptions Options { get; }

    private TestServerHost(InferenceEngine engine, WebApplication app, ServerOptions options)
    {
        Engine = engine; App = app; Options = options;
        Http = app.GetTestServer().CreateClient();
        Http.Timeout = TimeSpan.FromSeconds(60);
        if (options.ApiKey != null) Http.DefaultRequestHeaders.Authorization = new("Bearer", options.ApiKey);
    }

    public static string ModelPath
    {
        get
        {
            var p = Path.Combine(SharedData.RepoRoot, "models", "stories260K.gguf");
            if (!File.Exists(p)) Assert.Ignore($"the bundled model {p} is absent; skipping.");
            return p;
        }
    }

    public static InferenceEngine LoadEngine(int maxSequences = 16, long kvBudgetBytes = 0, string? kvPolicy = null) =>
        InferenceEngine.Load(ModelPath, new EngineOptions { Threads = 2, MaxConcurrentSequences = maxSequences, KvBudgetBytes = kvBudgetBytes, KvPolicy = kvPolicy });

    public static async Task<TestServerHost> StartAsync(ServerOptions? options = null, InferenceEngine? engine = null)
    {
        options ??= new ServerOptions();
        engine ??= LoadEngine();
        var app = EngineServer.Build(engine, options, b => b.WebHost.UseTestServer());
        await app.StartAsync();
        return new TestServerHost(engine, app, options);
    }

    public OpenAIClient OpenAi() => new(new ApiKeyCredential(Options.ApiKey ?? "unused"), new OpenAIClientOptions
    {
        Endpoint = new Uri(Http.BaseAddress!, "/v1"),
        Transport = new HttpClientPipelineTransport(Http),
        RetryPolicy = new ClientRetryPolicy(0),
    });

    public OpenAI.Chat.ChatClient Chat() => OpenAi().GetChatClient(ModelId);

    public IChatClient MeaiChat() => Chat().AsIChatClient();

    /// <summary>Waits (≤ 10 s) until no request runs or waits and no KV block is referenced; then checks the pool.</summary>
    public async Task AssertPoolIdleAsync()
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        while (Engine.Stats is { } s && (s.BlocksInUse > 0 || s.Running + s.Waiting > 0) && sw.Elapsed < TimeSpan.FromSeconds(10)) await Task.Delay(5);
        Engine.ValidateKvPool();
        var st = Engine.Stats!;
        Assert.Multiple(() =>
        {
            Assert.That(st.BlocksInUse, Is.EqualTo(0), "no KV block referenced");
            Assert.That(st.Running + st.Waiting, Is.EqualTo(0), "no request running or waiting");
            Assert.That(st.BlocksFree + st.BlocksCached, Is.EqualTo(st.BlockCount));
        });
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
        Engine.Dispose();
    }
}
