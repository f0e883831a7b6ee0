// Owns: the server load benchmark — starts Engine.Server on Kestrel at 127.0.0.1 (a free port) over a paged engine, runs
// N concurrent streaming clients × R sequential requests each against /v1/completions (greedy, ignore_eos, random
// token-id prompts, logprobs 0 so every token arrives as its own event, also for models without a tokenizer), and prints
// one markdown row per KV setting: failures, throughput, p50/p99 time to first token and per output token, preemptions.
// The constrained row (KV budget = --kv-fraction of what all clients need at once) must complete every response with
// exactly the tokens of the unconstrained row (preemption by recompute is exact for greedy decoding).
// Usage: dotnet run -c Release --project bench/Engine.ServerLoad -- --model PATH [--clients 64] [--requests 3]
//        [--prompt-tokens 32] [--max-tokens 48] [--threads 0] [--kv-fraction 0.25]
using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using Engine.Runtime;
using Engine.Server;

var a = Args(args);
string model = a.GetValueOrDefault("model") ?? Path.Combine(FindRepo(), "models", "stories260K.gguf");
int clients = Int("clients", 64), requests = Int("requests", 3), promptTokens = Int("prompt-tokens", 32), maxTokens = Int("max-tokens", 48), threads = Int("threads", 0);
double fraction = double.Parse(a.GetValueOrDefault("kv-fraction") ?? "0.25", System.Globalization.CultureInfo.InvariantCulture);

Console.WriteLine($"model {Path.GetFileName(model)}, {clients} clients × {requests} streaming requests, prompt {promptTokens} tokens, {maxTokens} generated (greedy, ignore_eos)");
Console.WriteLine("| KV budget | requests | failed | identical to full | wall s | gen tok/s | TTFT p50 ms | TTFT p99 ms | per-token p50 ms | per-token p99 ms | preemptions |");
Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|");
var full = await Row(1.0, null);
await Row(fraction, full);
return 0;

async Task<Dictionary<(int, int), int[]>> Row(double kvFraction, Dictionary<(int, int), int[]>? reference)
{
    // bytes of one token's K+V over all layers (F32), from the model's shape via a probe load
    long perToken;
    int vocab;
    using (var probe = InferenceEngine.Load(model, new EngineOptions { Threads = 1, MaxConcurrentSequences = 1 }))
    {
        perToken = 2L * probe.Config.LayerCount * probe.Config.KvDim * sizeof(float);
        vocab = probe.Config.VocabSize;
    }
    const int blockSize = 16;
    long neededTokens = (long)clients * ((promptTokens + maxTokens + blockSize - 1) / blockSize + 1) * blockSize;
    long budget = (long)(neededTokens * perToken * kvFraction);
    using var engine = InferenceEngine.Load(model, new EngineOptions { Threads = threads, MaxConcurrentSequences = clients, KvBudgetBytes = budget, BlockSize = blockSize });
    var app = EngineServer.Build(engine, new ServerOptions { Host = "127.0.0.1", Port = 0, MaxPendingRequests = clients * 2, ModelId = "m" });
    await app.StartAsync();
    string url = app.Urls.First();
    using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = clients * 2 }) { BaseAddress = new Uri(url), Timeout = TimeSpan.FromMinutes(30) };
    var results = new Dictionary<(int, int), int[]>();
    var ttft = new List<double>(); var tpot = new List<double>();
    int failed = 0;
    long generated = 0;
    var wall = Stopwatch.StartNew();
    await Task.WhenAll(Enumerable.Range(0, clients).Select(c => Task.Run(async () =>
    {
        for (int r = 0; r < requests; r++)
        {
            var rng = new Random(c * 1000 + r);
            int[] prompt = [1, .. Enumerable.Range(0, promptTokens - 1).Select(_ => rng.Next(3, vocab))];
            string body = JsonSerializer.Serialize(new
            {
                model = "m", prompt, max_tokens = maxTokens, temperature = 0, stream = true, logprobs = 0, engine = new { ignore_eos = true },
            });
            try
            {
                var sw = Stopwatch.StartNew();
                using var req = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
                using var resp = await http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead);
                if (resp.StatusCode != HttpStatusCode.OK) { Interlocked.Increment(ref failed); continue; }
                using var reader = new StreamReader(await resp.Content.ReadAsStreamAsync());
                var tokens = new List<int>();
                double first = 0, last = 0;
                bool done = false;
                while (await reader.ReadLineAsync() is { } line)
                {
                    if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
                    string data = line[6..];
                    if (data == "[DONE]") { done = true; break; }
                    using var doc = JsonDocument.Parse(data);
                    if (doc.RootElement.TryGetProperty("error", out _)) break;
                    var choice = doc.RootElement.GetProperty("choices")[0];
                    if (choice.GetProperty("logprobs") is { ValueKind: JsonValueKind.Object } lp)
                        foreach (var t in lp.GetProperty("tokens").EnumerateArray())
                        {
                            double now = sw.Elapsed.TotalMilliseconds;
                            if (tokens.Count == 0) first = now;
                            last = now;
                            tokens.Add(Token(t.GetString()!));
                        }
                }
                if (!done || tokens.Count != maxTokens) { Interlocked.Increment(ref failed); continue; }
                lock (results)
                {
                    results[(c, r)] = tokens.ToArray();
                    ttft.Add(first);
                    if (tokens.Count > 1) tpot.Add((last - first) / (tokens.Count - 1));
                    generated += tokens.Count;
                }
            }
            catch (Exception e) when (e is HttpRequestException or IOException or JsonException or TaskCanceledException)
            {
                Interlocked.Increment(ref failed);
            }
        }
    })));
    wall.Stop();
    int identical = reference == null ? results.Count : results.Count(kv => reference.TryGetValue(kv.Key, out var f) && f.AsSpan().SequenceEqual(kv.Value));
    var s = engine.Stats!;
    Console.WriteLine($"| {kvFraction:P0} ({budget / perToken} tokens) | {clients * requests} | {failed} | {(reference == null ? "(reference)" : $"{identical}/{results.Count}")} | {wall.Elapsed.TotalSeconds:F1} | "
        + $"{generated / wall.Elapsed.TotalSeconds:F0} | {P(ttft, 50):F0} | {P(ttft, 99):F0} | {P(tpot, 50):F1} | {P(tpot, 99):F1} | {s.Preemptions} |");
    await app.StopAsync();
    await app.DisposeAsync();
    return results;

    // token text → id: without a tokenizer the server writes the id itself; with one, the text is mapped back through a stable table
    int Token(string text) => int.TryParse(text, out int id) && engine.Tokenizer == null ? id : Intern(text);
}

static int Intern(string text)
{
    lock (Interned) { if (!Interned.TryGetValue(text, out int id)) Interned[text] = id = Interned.Count; return id; }
}

static double P(List<double> xs, double p)
{
    if (xs.Count == 0) return double.NaN;
    var s = xs.OrderBy(x => x).ToArray();
    return s[Math.Clamp((int)Math.Ceiling(p / 100 * s.Length) - 1, 0, s.Length - 1)];
}

int Int(string name, int d) => a.TryGetValue(name, out var v) ? int.Parse(v, System.Globalization.CultureInfo.InvariantCulture) : d;

static Dictionary<string, string> Args(string[] args)
{
    var d = new Dictionary<string, string>();
    for (int i = 0; i + 1 < args.Length; i += 2)
        d[args[i].TrimStart('-')] = args[i + 1];
    return d;
}

static string FindRepo()
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        if (File.Exists(Path.Combine(dir.FullName, "Engine.sln"))) return dir.FullName;
    return ".";
}

partial class Program
{
    private static readonly Dictionary<string, int> Interned = new();
}
