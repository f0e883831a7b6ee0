// Owns: `engine serve` — loads one model into a paged (continuous-batching) engine and serves the OpenAI-compatible API
// (Engine.Server) until Ctrl+C. Diagnostics on stderr; failures to load or bind are one line and exit code 1.
using System.CommandLine;
using Engine.Runtime;
using Engine.Server;
using Microsoft.AspNetCore.Builder;

namespace Engine.Cli.Commands;

public static class ServeCommand
{
    public static Command Create()
    {
        var model = GenerationCommandSupport.ModelOption();
        var host = new Option<string>("--host") { Description = "Address to listen on (default loopback only).", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "TCP port.", DefaultValueFactory = _ => 8080 };
        var apiKey = new Option<string?>("--api-key") { Description = "Require \"Authorization: Bearer KEY\" on /v1 requests (default: $ENGINE_API_KEY, else none)." };
        var maxConcurrent = new Option<int>("--max-concurrent") { Description = "Sequences batched at once (more requests queue).", DefaultValueFactory = _ => 16 };
        var maxPending = new Option<int>("--max-pending") { Description = "Requests admitted (running + queued) before new ones get 503 + Retry-After (0 = 4 × --max-concurrent).", DefaultValueFactory = _ => 0 };
        var modelId = new Option<string?>("--model-id") { Description = "The model name clients send (default: the file name without extension)." };
        var threads = GenerationCommandSupport.ThreadsOption();
        var backend = GenerationCommandSupport.BackendOption();
        var tokenizer = GenerationCommandSupport.TokenizerOption();
        var kvBudget = GenerationCommandSupport.KvBudgetOption();
        var kvDisk = GenerationCommandSupport.KvDiskOption();
        var kvPolicy = GenerationCommandSupport.KvPolicyOption();
        kvPolicy.Description = "KV memory policy of the engine (full, sinks, h2o, snapkv, arkv, int8, kivi4, +quest/+msa); requests may pick another in engine.kv_policy. Default: none.";
        var kvPolicyBudget = GenerationCommandSupport.KvPolicyBudgetOption();
        var ctx = new Option<int>("--ctx-size", "-c") { Description = "Context length (0 = the model's).", DefaultValueFactory = _ => 0 };
        var memory = new Option<string?>("--memory") { Description = "Attend over the top-k chunks of this persistent memory (requests then run one at a time)." };

        var cmd = new Command("serve", "Serve the OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models, /health, /metrics).")
        {
            model, host, port, apiKey, maxConcurrent, maxPending, modelId, threads, backend, tokenizer, kvBudget, kvDisk, kvPolicy, kvPolicyBudget, ctx, memory,
        };
        cmd.SetAction((pr, ct) => GenerationCommandSupport.Guard(async () =>
        {
            int p = pr.GetValue(port), mc = pr.GetValue(maxConcurrent), mp = pr.GetValue(maxPending);
            if (p is < 0 or > 65535) throw new ArgumentException($"--port: {p} is not a TCP port (0..65535)");
            if (mc < 1) throw new ArgumentException($"--max-concurrent: {mc} must be ≥ 1");
            if (mp < 0) throw new ArgumentException($"--max-pending: {mp} must be ≥ 0");
            string path = GenerationCommandSupport.ResolveModel(pr.GetValue(model));
            var sw = System.Diagnostics.Stopwatch.StartNew();
            using var engine = InferenceEngine.Load(path, new EngineOptions
            {
                Backend = pr.GetValue(backend)!, Threads = pr.GetValue(threads), ContextLength = pr.GetValue(ctx), TokenizerPath = pr.GetValue(tokenizer),
                Kv = new KvCacheOptions { BudgetBytes = GenerationCommandSupport.ParseBytes(pr.GetValue(kvBudget)), DiskBytes = GenerationCommandSupport.KvDiskBytes(pr.GetValue(kvDisk)) },
                Policy = new KvPolicyOptions { Spec = GenerationCommandSupport.KvPolicyName(pr, kvPolicy, kvPolicyBudget), Budget = pr.GetValue(kvPolicyBudget) },
                Documents = new DocumentMemoryOptions { Name = pr.GetValue(memory) },
                Serving = new ServingOptions { MaxConcurrentSequences = mc },
            });
            var options = new ServerOptions
            {
                Host = pr.GetValue(host)!, Port = p, ApiKey = pr.GetValue(apiKey) ?? Environment.GetEnvironmentVariable("ENGINE_API_KEY"),
                ModelId = pr.GetValue(modelId), MaxPendingRequests = mp > 0 ? mp : 4 * mc,
            };
            var app = EngineServer.Build(engine, options);
            await using var _ = app;
            await app.StartAsync(ct);
            Console.Error.WriteLine($"loaded {Path.GetFileName(path)} in {sw.Elapsed.TotalMilliseconds:F0} ms ({(engine.IsPaged ? $"paged, {mc} sequences, KV {engine.KvBudgetTokens} tokens" : "single-sequence")}); "
                + $"serving '{EngineServer.ModelIdOf(engine, options)}' on {string.Join(", ", app.Urls)}{(options.ApiKey != null ? " (API key required)" : "")}; Ctrl+C stops");
            try { await Task.Delay(Timeout.Infinite, ct); } catch (OperationCanceledException) { }
            await app.StopAsync(CancellationToken.None);
            return 0;
        }));
        return cmd;
    }
}
