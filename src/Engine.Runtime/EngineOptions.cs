// Owns: how a model is loaded and served (EngineOptions): backend, threads, context, KV cache and serving knobs.
using Engine.Runtime.Sampling;

namespace Engine.Runtime;

/// <summary>How to load a model.</summary>
public sealed record EngineOptions
{
    /// <summary>"cpu" (SIMD, multi-threaded), "reference" (scalar, exact; slow), "gpu" (CUDA via ILGPU: weights, activations
    /// and KV on the device), "gpu-sim" (the same GPU kernels on ILGPU's CPU accelerator; slow) or "auto" (gpu when a
    /// CUDA device is present, else cpu).</summary>
    public string Backend { get; init; } = "cpu";
    /// <summary>Worker threads for the CPU backend: 0 = all cores; more than the cores = the cores; negative → ArgumentException.
    /// Every field is checked by OptionsValidation.Validate (Load, the constructor).</summary>
    public int Threads { get; init; }
    /// <summary>KV capacity in tokens; 0 = the model's trained context length (negative → ArgumentException).</summary>
    public int ContextLength { get; init; }
    /// <summary>Optional separate tokenizer file (llama2.c tokenizer .bin or a GGUF with tokenizer metadata).</summary>
    public string? TokenizerPath { get; init; }
    /// <summary>Largest number of prompt tokens per forward call during prefill (bounds scratch memory, lets cancellation in).</summary>
    public int PrefillChunk { get; init; } = 512;

    /// <summary>Serve concurrent requests with continuous batching (true: a paged KV pool for transformers, one state slot
    /// per request for recurrent models), or one request at a time over a contiguous KV cache / one state (false). Both
    /// run in the same step loop.</summary>
    public bool Paged { get; init; } = true;
    /// <summary>Most sequences running (holding KV blocks) at once; more requests wait in the queue.</summary>
    public int MaxConcurrentSequences { get; init; } = 16;
    /// <summary>KV pool size in bytes (F32 K + V, all layers); ≤ 0 = ContextLength × MaxConcurrentSequences tokens,
    /// capped at 2 GiB but at least one full context. Recurrent models (RWKV): the byte budget of live states + in-memory
    /// state checkpoints (one running request = one state; ≤ 0 = the model's StoreOptions budget, at least
    /// MaxConcurrentSequences states); a budget below one state is rejected with ArgumentException.</summary>
    public long KvBudgetBytes { get; init; }
    /// <summary>Paged path (transformers): bytes of a KV disk tier — blocks in one memory-mapped file beside the RAM pool
    /// (KvBudgetBytes). When RAM blocks run out the scheduler moves cold full blocks there (attention reads them in place)
    /// before it preempts anything. 0 = none. Any other path (RWKV, Paged = false, a KV store decorator or memory) rejects a
    /// non-zero value with ArgumentException.</summary>
    public long KvDiskBytes { get; init; }
    /// <summary>Folder for the KV disk tier's file (a fresh file per engine, deleted on Dispose); null = the system temp folder.</summary>
    public string? KvDiskPath { get; init; }
    /// <summary>Token slots per KV block (prefix-cache granularity).</summary>
    public int BlockSize { get; init; } = 16;
    /// <summary>Reuse the KV of identical prompt prefixes (whole blocks) across requests.</summary>
    public bool PrefixCaching { get; init; } = true;
    /// <summary>Name of a persistent memory (MemoryStore) whose routed top-k document chunks every prompt attends over;
    /// null = none. Opened from <see cref="MemoryDirectory"/> and checked against the model's identity.</summary>
    public string? Memory { get; init; }
    /// <summary>Folder holding memories; null = MemoryStore.DefaultRoot ($ENGINE_MEMORY_DIR or ~/.cache/engine/memories).</summary>
    public string? MemoryDirectory { get; init; }
    /// <summary>Memory chunks attended per layer (top-k by routing score).</summary>
    public int MemoryTopK { get; init; } = 16;
    /// <summary>Wraps the engine's KV store (e.g. a memory or policy decorator); null = the plain store. When set, transformers
    /// run on the single-sequence path (the paged serving loop has no per-engine store to wrap).</summary>
    public Func<Engine.Memory.IKvStore, Engine.Memory.IKvStore>? KvStoreDecorator { get; init; }
    /// <summary>KV memory policy for this engine (Engine.Memory.Policies spec: "sinks", "h2o", "snapkv", "arkv", "int8", "kivi4",
    /// optionally "+quest"/"+msa", e.g. "arkv+quest"); null = none, "full" = the policy layer keeping everything. Chosen per
    /// engine (a request may override it: GenerationOptions.KvPolicy). The runtime picks the store: requests run batched on the
    /// paged executor (rows stay in the pool's blocks; prefix caching off there), unless the engine runs one sequence at a
    /// time (MaxConcurrentSequences = 1 without a disk tier, or Paged = false): then the single-sequence policy store, which
    /// frees what the policy evicts or quantizes (see KvPolicyWiring). A bad spec throws
    /// KvPolicyException from Load before any model work.</summary>
    public string? KvPolicy { get; init; }
    /// <summary>Fraction in (0, 1] of the sequence the KV policy may hold/read (float32-token equivalents). Default 0.25.</summary>
    public double KvPolicyBudget { get; init; } = KvPolicyWiring.DefaultBudget;
    /// <summary>Tokens a selection policy (quest, msa) reads per step and KV head, whatever the context length (Quest's fixed
    /// token budget); overrides <see cref="KvPolicyBudget"/> for selection (retention keeps the fraction). null = the fraction;
    /// ≤ 0 throws KvPolicyException from Load.</summary>
    public int? KvPolicyBudgetTokens { get; init; }
}
