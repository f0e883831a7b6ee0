// Owns: the server's Prometheus metrics (prometheus-net, one private registry per server so several servers in one
// process — tests — do not mix counts). Request-level series are recorded by the handlers; engine-level series (queue,
// running sequences, KV blocks, preemptions, prefix hits) are read from InferenceEngine.Stats just before each scrape.
// Invariant: counters only grow (engine totals are set with IncTo, which never lowers a counter).
using Engine.Runtime;
using Prometheus;

namespace Engine.Server;

internal sealed class ServerMetrics
{
    private readonly CollectorRegistry _registry = Metrics.NewCustomRegistry();
    private readonly Counter _requests, _promptTokens, _generatedTokens, _preemptions, _prefixHits, _steps, _rejected;
    private readonly Histogram _ttft, _tpot;
    private readonly Gauge _queue, _running, _blocks, _blockCount, _inFlight;

    public ServerMetrics(InferenceEngine engine)
    {
        var f = Metrics.WithCustomRegistry(_registry);
        _requests = f.CreateCounter("engine_requests_total", "HTTP requests answered, by endpoint and status code.",
            new CounterConfiguration { LabelNames = ["endpoint", "status"] });
        _rejected = f.CreateCounter("engine_requests_rejected_total", "Generation requests turned away because the queue was full (503).");
        _promptTokens = f.CreateCounter("engine_prompt_tokens_total", "Prompt tokens of completed generation requests.");
        _generatedTokens = f.CreateCounter("engine_generated_tokens_total", "Tokens generated for completed or cancelled requests.");
        var latency = Histogram.ExponentialBuckets(0.001, 2, 16);   // 1 ms .. 33 s
        _ttft = f.CreateHistogram("engine_time_to_first_token_seconds", "From admission to the first generated token.",
            new HistogramConfiguration { Buckets = latency });
        _tpot = f.CreateHistogram("engine_time_per_output_token_seconds", "Mean time between generated tokens of one request (after the first).",
            new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.0001, 2, 16) });
        _queue = f.CreateGauge("engine_queue_depth", "Requests waiting for the scheduler to admit them.");
        _running = f.CreateGauge("engine_running_sequences", "Sequences holding KV blocks (running) now.");
        _inFlight = f.CreateGauge("engine_requests_in_flight", "Generation requests the server has admitted and not finished.");
        _blocks = f.CreateGauge("engine_kv_blocks", "KV blocks now by state: used (referenced), cached (reusable prefix), free, disk (used blocks on the disk tier).",
            new GaugeConfiguration { LabelNames = ["state"] });
        _blockCount = f.CreateGauge("engine_kv_blocks_capacity", "KV blocks of the pool (RAM + disk tier).");
        _preemptions = f.CreateCounter("engine_preemptions_total", "Requests preempted (recomputed later) for lack of KV blocks.");
        _prefixHits = f.CreateCounter("engine_prefix_hit_tokens_total", "Prompt tokens taken from the prefix cache instead of computed.");
        _steps = f.CreateCounter("engine_steps_total", "Batched forward steps run by the serving loop.");
        _registry.AddBeforeCollectCallback(() =>
        {
            if (engine.Stats is not { } s) return;
            _queue.Set(s.Waiting);
            _running.Set(s.Running);
            _blocks.WithLabels("used").Set(s.BlocksInUse);
            _blocks.WithLabels("cached").Set(s.BlocksCached);
            _blocks.WithLabels("free").Set(s.BlocksFree);
            _blocks.WithLabels("disk").Set(s.DiskBlocksInUse);
            _blockCount.Set(s.BlockCount);
            _preemptions.IncTo(s.Preemptions);
            _prefixHits.IncTo(s.PrefixHitTokens);
            _steps.IncTo(s.Steps);
        });
    }

    public void Request(string endpoint, int status) => _requests.WithLabels(endpoint, status.ToString(System.Globalization.CultureInfo.InvariantCulture)).Inc();
    public void Rejected() => _rejected.Inc();
    public IDisposable InFlight() { _inFlight.Inc(); return new Dec(_inFlight); }

    /// <summary>Records one generation: tokens, time to first token and mean time per output token (seconds).</summary>
    public void Generation(int promptTokens, int generatedTokens, double? ttft, double? tpot)
    {
        _promptTokens.Inc(promptTokens);
        _generatedTokens.Inc(generatedTokens);
        if (ttft is { } t) _ttft.Observe(t);
        if (tpot is { } p) _tpot.Observe(p);
    }

    public Task ExportAsync(Stream to, CancellationToken ct) => _registry.CollectAndExportAsTextAsync(to, ct);

    private sealed class Dec(Gauge g) : IDisposable
    {
        private int _done;
        public void Dispose() { if (Interlocked.Exchange(ref _done, 1) == 0) g.Dec(); }
    }
}
