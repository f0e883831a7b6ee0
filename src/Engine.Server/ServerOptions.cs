// Owns: the knobs of `engine serve` that are the server's own (the engine's are EngineOptions): where to listen, the API
// key, the model id clients name, admission (how many requests may wait beyond the running ones) and the body size limit.
namespace Engine.Server;

public sealed record ServerOptions
{
    /// <summary>Address to bind (Kestrel). Default loopback only.</summary>
    public string Host { get; init; } = "127.0.0.1";
    public int Port { get; init; } = 8080;
    /// <summary>When set, every /v1 request must send "Authorization: Bearer KEY" (else 401). /health and /metrics stay open.</summary>
    public string? ApiKey { get; init; }
    /// <summary>The id clients put in "model" and /v1/models lists; null = the model file's name without extension.</summary>
    public string? ModelId { get; init; }
    /// <summary>Generation requests admitted at once (running + queued); one more gets 503 with Retry-After.
    /// ≤ 0 = 64 (`engine serve` passes 4 × --max-concurrent).</summary>
    public int MaxPendingRequests { get; init; }
    /// <summary>Seconds a rejected client is told to wait (Retry-After).</summary>
    public int RetryAfterSeconds { get; init; } = 1;
    /// <summary>Largest accepted request body in bytes (larger → 413).</summary>
    public long MaxBodyBytes { get; init; } = 4 << 20;
}
