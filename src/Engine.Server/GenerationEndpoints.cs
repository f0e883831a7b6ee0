// Owns: POST /v1/chat/completions and POST /v1/completions — admission (a full queue → 503 + Retry-After), starting the
// engine's generation (eager validation errors → 400), and answering either one JSON object or an SSE stream
// ("data: {chunk}\n\n" … "data: [DONE]\n\n", OpenAI's chunk objects; with stream_options.include_usage a last chunk
// with empty choices and the usage). Invariants: the generation runs under the request's RequestAborted token, so a
// client that disconnects cancels its request in the engine (its KV blocks are freed at once); a failure after the SSE
// headers went out is reported as one "data: {"error": …}" event, never as a stack trace.
// Response shapes: OpenAI API reference (chat.completion, chat.completion.chunk, text_completion).
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Engine.Runtime;
using Engine.Runtime.Sampling;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Engine.Server;

internal sealed class GenerationEndpoints(InferenceEngine engine, ServerOptions options, ServerMetrics metrics, string modelId, ILogger log)
{
    private readonly int _maxPending = options.MaxPendingRequests > 0 ? options.MaxPendingRequests : 64;
    private int _pending;

    public Task Chat(HttpContext ctx) => Handle(ctx, chat: true);
    public Task Completion(HttpContext ctx) => Handle(ctx, chat: false);

    private async Task Handle(HttpContext ctx, bool chat)
    {
        using var body = await RequestBody.ReadJsonAsync(ctx, options.MaxBodyBytes);
        var req = chat ? OpenAiRequest.ParseChat(body.RootElement, modelId, engine.ContextLength)
            : OpenAiRequest.ParseCompletion(body.RootElement, modelId, engine.ContextLength);
        if (Interlocked.Increment(ref _pending) > _maxPending)
        {
            Interlocked.Decrement(ref _pending);
            metrics.Rejected();
            ctx.Response.Headers.RetryAfter = options.RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            throw new ApiException(503, $"the server is busy ({_maxPending} requests pending); retry later", type: "server_overloaded", code: "queue_full");
        }
        try
        {
            using var _ = metrics.InFlight();
            var admitted = Stopwatch.StartNew();
            IAsyncEnumerable<GenerationChunk> stream;
            try
            {
                stream = req.Messages != null ? engine.GenerateAsync(req.Messages, req.Options, ctx.RequestAborted)
                    : req.PromptText != null ? engine.GenerateAsync(req.PromptText, req.Options, ctx.RequestAborted)
                    : engine.GenerateAsync(req.PromptIds!, req.Options, ctx.RequestAborted);
            }
            catch (ArgumentException e) { throw Rejection(e, chat); }
            var run = new Run(engine.Tokenizer, admitted, chat, "chatcmpl-" + Guid.NewGuid().ToString("N"), DateTimeOffset.UtcNow.ToUnixTimeSeconds(), modelId);
            if (req.Stream) await StreamAsync(ctx, req, stream, run);
            else await ctx.Response.WriteAsJsonAsync(await CollectAsync(stream, run), ctx.RequestAborted);
            if (run.Usage is { } u) metrics.Generation(u.PromptTokens, u.GeneratedTokens, run.Ttft, run.Tpot);
            else if (run.Generated > 0) metrics.Generation(0, run.Generated, run.Ttft, null);
        }
        finally
        {
            Interlocked.Decrement(ref _pending);
        }
    }

    /// <summary>An engine validation error → 400 (prompt too long gets OpenAI's context_length_exceeded code).</summary>
    private static ApiException Rejection(ArgumentException e, bool chat) => e switch
    {
        PromptTooLongException or KvBudgetExceededException => ApiException.BadRequest(e.Message, chat ? "messages" : "prompt", "context_length_exceeded"),
        _ => ApiException.BadRequest(OneLine(e), e.ParamName == "promptIds" ? "prompt" : null),
    };

    /// <summary>The exception's first line without .NET's " (Parameter 'x')" suffix (an internal name).</summary>
    private static string OneLine(ArgumentException e)
    {
        string m = e.Message.Split('\n')[0].Trim();
        return e.ParamName is { } p ? m.Replace($" (Parameter '{p}')", "") : m;
    }

    private async Task<object> CollectAsync(IAsyncEnumerable<GenerationChunk> stream, Run run)
    {
        var text = new StringBuilder();
        var lps = run.Tokenizer != null ? new List<TokenLogProb>() : null;
        bool any = false;
        await foreach (var c in stream.ConfigureAwait(false))
        {
            run.Observe(c);
            text.Append(c.Text);
            if (c.LogProbs != null) { any = true; lps?.AddRange(c.LogProbs); }
        }
        var u = run.Usage!;
        object? logprobs = any && lps != null ? run.LogProbsObject(lps) : null;
        object choice = run.Chat
            ? new { index = 0, message = new { role = "assistant", content = text.ToString(), refusal = (string?)null }, logprobs, finish_reason = Finish(u) }
            : new { text = text.ToString(), index = 0, logprobs, finish_reason = Finish(u) };
        return new
        {
            id = run.Id, @object = run.Chat ? "chat.completion" : "text_completion", created = run.Created, model = run.Model,
            choices = new[] { choice }, usage = UsageObject(u), system_fingerprint = (string?)null,
        };
    }

    private async Task StreamAsync(HttpContext ctx, OpenAiRequest req, IAsyncEnumerable<GenerationChunk> stream, Run run)
    {
        var r = ctx.Response;
        r.ContentType = "text/event-stream";
        r.Headers.CacheControl = "no-cache";
        r.Headers["X-Accel-Buffering"] = "no";
        var ct = ctx.RequestAborted;
        object? usageNull = req.IncludeUsage ? null : Absent;
        if (run.Chat) await SendAsync(r, ChunkObject(run, new { role = "assistant", content = "" }, null, null, usageNull), ct);
        try
        {
            await foreach (var c in stream.ConfigureAwait(false))
            {
                run.Observe(c);
                object? lp = c.LogProbs is { Count: > 0 } l ? run.LogProbsObject(l) : null;
                if (c.Text.Length > 0 || lp != null)
                    await SendAsync(r, run.Chat ? ChunkObject(run, new { content = c.Text }, lp, null, usageNull)
                        : ChunkObject(run, c.Text, lp, null, usageNull), ct);
            }
        }
        catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            // headers are out: the error becomes one SSE event (no stack trace); the log keeps the details
            var api = e as ApiException ?? (e is ArgumentException a ? Rejection(a, run.Chat) : ApiErrors.Internal());
            if (api.Status >= 500) log.LogError(e, "generation failed mid-stream");
            await SendAsync(r, ApiErrors.Body(api), ct);
            await r.WriteAsync("data: [DONE]\n\n", ct);
            return;
        }
        var u = run.Usage!;
        await SendAsync(r, run.Chat ? ChunkObject(run, new { }, null, Finish(u), usageNull) : ChunkObject(run, "", null, Finish(u), usageNull), ct);
        if (req.IncludeUsage)
            await SendAsync(r, new { id = run.Id, @object = run.Chat ? "chat.completion.chunk" : "text_completion", created = run.Created, model = run.Model,
                choices = Array.Empty<object>(), usage = UsageObject(u) }, ct);
        await r.WriteAsync("data: [DONE]\n\n", ct);
        await r.Body.FlushAsync(ct);
    }

    /// <summary>Marker: leave the "usage" field out of a chunk (no include_usage).</summary>
    private static readonly object Absent = new();

    private static Dictionary<string, object?> ChunkObject(Run run, object delta, object? logprobs, string? finish, object? usage)
    {
        var choice = run.Chat
            ? new Dictionary<string, object?> { ["index"] = 0, ["delta"] = delta, ["logprobs"] = logprobs, ["finish_reason"] = finish }
            : new Dictionary<string, object?> { ["text"] = delta, ["index"] = 0, ["logprobs"] = logprobs, ["finish_reason"] = finish };
        var o = new Dictionary<string, object?>
        {
            ["id"] = run.Id, ["object"] = run.Chat ? "chat.completion.chunk" : "text_completion", ["created"] = run.Created,
            ["model"] = run.Model, ["system_fingerprint"] = null, ["choices"] = new[] { choice },
        };
        if (!ReferenceEquals(usage, Absent)) o["usage"] = usage;
        return o;
    }

    private static async Task SendAsync(HttpResponse r, object payload, CancellationToken ct)
    {
        await r.WriteAsync("data: " + JsonSerializer.Serialize(payload) + "\n\n", ct);
        await r.Body.FlushAsync(ct);
    }

    private static string Finish(GenerationUsage u) => u.FinishReason is FinishReason.Stop or FinishReason.StopString ? "stop" : "length";

    private static object UsageObject(GenerationUsage u) => new
    {
        prompt_tokens = u.PromptTokens, completion_tokens = u.GeneratedTokens, total_tokens = u.PromptTokens + u.GeneratedTokens,
        prompt_tokens_details = new { cached_tokens = u.ReusedPromptTokens },
    };

    /// <summary>One generation's identity, timing and usage.</summary>
    private sealed class Run(ITextTokenizer? tokenizer, Stopwatch admitted, bool chat, string id, long created, string model)
    {
        public ITextTokenizer? Tokenizer => tokenizer;
        public bool Chat => chat;
        public string Id => chat ? id : "cmpl-" + id[9..];
        public long Created => created;
        public string Model => model;
        public GenerationUsage? Usage;
        public int Generated;
        public double? Ttft;
        private TimeSpan _first, _last;

        public double? Tpot => Generated > 1 ? (_last - _first).TotalSeconds / (Generated - 1) : null;

        public void Observe(GenerationChunk c)
        {
            if (c.TokenIds.Count > 0)
            {
                var now = admitted.Elapsed;
                if (Generated == 0) { _first = now; Ttft = now.TotalSeconds; }
                _last = now;
                Generated += c.TokenIds.Count;
            }
            if (c.Usage != null) Usage = c.Usage;
        }

        /// <summary>OpenAI's logprobs object: chat {"content": [{token, logprob, bytes, top_logprobs}]}; completions
        /// {"tokens", "token_logprobs", "top_logprobs", "text_offset"}.</summary>
        public object LogProbsObject(IReadOnlyList<TokenLogProb> lps)
        {
            if (chat)
                return new
                {
                    content = lps.Select(l => new
                    {
                        token = Text(l.TokenId), logprob = l.LogProb, bytes = Bytes(l.TokenId),
                        top_logprobs = l.Top.Select(a => new { token = Text(a.TokenId), logprob = a.LogProb, bytes = Bytes(a.TokenId) }).ToArray(),
                    }).ToArray(),
                    refusal = (object?)null,
                };
            int offset = 0;
            var offsets = new List<int>();
            foreach (var l in lps) { offsets.Add(offset); offset += Text(l.TokenId).Length; }
            return new
            {
                tokens = lps.Select(l => Text(l.TokenId)).ToArray(),
                token_logprobs = lps.Select(l => l.LogProb).ToArray(),
                top_logprobs = lps.Select(l => l.Top.GroupBy(a => Text(a.TokenId)).ToDictionary(g => g.Key, g => g.First().LogProb)).ToArray(),
                text_offset = offsets,
            };
        }

        private string Text(int tokenId)
        {
            if (tokenizer == null) return tokenId.ToString(System.Globalization.CultureInfo.InvariantCulture);
            var d = tokenizer.CreateStreamingDecoder(atTextStart: false);
            return d.Push(tokenId) + d.Flush();
        }

        private int[] Bytes(int tokenId) => Encoding.UTF8.GetBytes(Text(tokenId)).Select(b => (int)b).ToArray();
    }
}
