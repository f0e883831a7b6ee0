// Owns: the OpenAI-compatible HTTP server over one InferenceEngine — building the ASP.NET Core app (Kestrel on
// ServerOptions.Host:Port, or a caller's host such as TestServer), the middleware (error mapping, API key) and the
// routes: GET /health, GET /metrics, GET /v1/models, POST /v1/chat/completions, POST /v1/completions.
// Invariants: every error answer is an OpenAI error object; an unexpected exception is logged and answered with a
// generic 500 (no stack trace reaches a client) and never stops the server; the engine is shared by all requests
// (its serving loop batches them) and is not owned by the server.
using System.Security.Cryptography;
using System.Text;
using Engine.Runtime;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Engine.Server;

public sealed class EngineServer
{
    /// <summary>Builds (does not start) the server app. <paramref name="configure"/> may change the builder before the app is
    /// built (tests: UseTestServer; extra logging).</summary>
    public static WebApplication Build(InferenceEngine engine, ServerOptions options, Action<WebApplicationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; }).SetMinimumLevel(LogLevel.Warning);
        builder.WebHost.UseUrls($"http://{(options.Host.Contains(':') ? $"[{options.Host}]" : options.Host)}:{options.Port}");
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = options.MaxBodyBytes);
        configure?.Invoke(builder);
        var app = builder.Build();
        Map(app, engine, options);
        return app;
    }

    /// <summary>The model id clients name: ServerOptions.ModelId, else the model file's name without extension.</summary>
    public static string ModelIdOf(InferenceEngine engine, ServerOptions options) =>
        options.ModelId ?? (engine.ModelPath is { } p ? Path.GetFileNameWithoutExtension(Path.TrimEndingDirectorySeparator(p)) : "model");

    private static void Map(WebApplication app, InferenceEngine engine, ServerOptions options)
    {
        string modelId = ModelIdOf(engine, options);
        var log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Engine.Server");
        var metrics = new ServerMetrics(engine);
        var generation = new GenerationEndpoints(engine, options, metrics, modelId, log);
        byte[]? key = options.ApiKey is { Length: > 0 } k ? Encoding.UTF8.GetBytes("Bearer " + k) : null;
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

        app.Use(async (ctx, next) =>
        {
            string endpoint = ctx.Request.Path.Value ?? "";
            try
            {
                if (key != null && ctx.Request.Path.StartsWithSegments("/v1") && !KeyMatches(ctx, key))
                    throw new ApiException(401, "missing or wrong API key: send \"Authorization: Bearer <key>\"", type: "invalid_request_error", code: "invalid_api_key");
                await next(ctx);
            }
            catch (ApiException e) when (!ctx.Response.HasStarted)
            {
                await ApiErrors.WriteAsync(ctx, e);
            }
            catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
            {
                // the client went away; its generation was cancelled with the token
            }
            catch (Exception e)
            {
                log.LogError(e, "request {Method} {Path} failed", ctx.Request.Method, endpoint);
                if (!ctx.Response.HasStarted) { ctx.Response.Clear(); await ApiErrors.WriteAsync(ctx, ApiErrors.Internal()); }
                else ctx.Abort();
            }
            if (endpoint.StartsWith("/v1/", StringComparison.Ordinal))
                metrics.Request(endpoint is "/v1/models" or "/v1/chat/completions" or "/v1/completions" ? endpoint : "other", ctx.RequestAborted.IsCancellationRequested ? 499 : ctx.Response.StatusCode);
        });

        app.MapGet("/health", () => Results.Json(new { status = "ok" }));
        app.MapGet("/metrics", async ctx =>
        {
            ctx.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            await metrics.ExportAsync(ctx.Response.Body, ctx.RequestAborted);
        });
        app.MapGet("/v1/models", () => Results.Json(new
        {
            @object = "list",
            data = new[] { new { id = modelId, @object = "model", created, owned_by = "engine", context_length = engine.ContextLength } },
        }));
        app.MapPost("/v1/chat/completions", generation.Chat);
        app.MapPost("/v1/completions", generation.Completion);
        app.MapFallback(ctx => throw new ApiException(404, $"no route {ctx.Request.Method} {ctx.Request.Path}", code: "not_found"));
    }

    private static bool KeyMatches(HttpContext ctx, byte[] expected)
    {
        var given = Encoding.UTF8.GetBytes(ctx.Request.Headers.Authorization.ToString());
        return CryptographicOperations.FixedTimeEquals(given, expected);
    }
}
