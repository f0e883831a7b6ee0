// Owns: how a model is loaded and served (EngineOptions): the most-used knobs flat (Backend, Threads, ContextLength),
// the rest grouped — Kv (the model's memory state: KV cache or recurrent state), Serving (batching), Policy (a KV memory
// policy), Documents (a persistent memory). Every option means one thing for every model kind (see each group).
// The flat KvBudgetBytes / Paged / KvPolicy / Memory … properties are shorthands that read and write the groups (kept
// because many callers and tests set them; a group and its shorthand are the same storage, the later assignment wins).
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
    /// <summary>Longest sequence (prompt + generated) in tokens; 0 = the model's trained context length (negative →
    /// ArgumentException).</summary>
    public int ContextLength { get; init; }
    /// <summary>Optional separate tokenizer file (llama2.c tokenizer .bin or a GGUF with tokenizer metadata).</summary>
    public string? TokenizerPath { get; init; }
    /// <summary>Largest number of prompt tokens per forward call during prefill (bounds scratch memory, lets cancellation in).</summary>
    public int PrefillChunk { get; init; } = 512;

    /// <summary>The model's memory state: byte budget, disk tier, block size, prefix caching.</summary>
    public KvCacheOptions Kv { get; init; } = new();
    /// <summary>How concurrent requests are served (batched or one at a time, how many at once).</summary>
    public ServingOptions Serving { get; init; } = new();
    /// <summary>The engine's KV memory policy (<see cref="KvPolicyOptions.Spec"/> null = none).</summary>
    public KvPolicyOptions Policy { get; init; } = new();
    /// <summary>A persistent memory every prompt attends over (<see cref="DocumentMemoryOptions.Name"/> null = none).</summary>
    public DocumentMemoryOptions Documents { get; init; } = new();

    // ---- shorthands for the groups (same storage) ----

    /// <summary>Shorthand for <see cref="ServingOptions.Paged"/> (Serving.Paged).</summary>
    public bool Paged { get => Serving.Paged; init => Serving = Serving with { Paged = value }; }
    /// <summary>Shorthand for <see cref="ServingOptions.MaxConcurrentSequences"/> (Serving.MaxConcurrentSequences).</summary>
    public int MaxConcurrentSequences { get => Serving.MaxConcurrentSequences; init => Serving = Serving with { MaxConcurrentSequences = value }; }
    /// <summary>Shorthand for <see cref="KvCacheOptions.BudgetBytes"/> (Kv.BudgetBytes: bytes of memory state, every model kind).</summary>
    public long KvBudgetBytes { get => Kv.BudgetBytes; init => Kv = Kv with { BudgetBytes = value }; }
    /// <summary>Shorthand for <see cref="KvCacheOptions.DiskBytes"/> (Kv.DiskBytes).</summary>
    public long KvDiskBytes { get => Kv.DiskBytes; init => Kv = Kv with { DiskBytes = value }; }
    /// <summary>Shorthand for <see cref="KvCacheOptions.DiskPath"/> (Kv.DiskPath).</summary>
    public string? KvDiskPath { get => Kv.DiskPath; init => Kv = Kv with { DiskPath = value }; }
    /// <summary>Shorthand for <see cref="KvCacheOptions.BlockSize"/> (Kv.BlockSize).</summary>
    public int BlockSize { get => Kv.BlockSize; init => Kv = Kv with { BlockSize = value }; }
    /// <summary>Shorthand for <see cref="KvCacheOptions.PrefixCaching"/> (Kv.PrefixCaching).</summary>
    public bool PrefixCaching { get => Kv.PrefixCaching; init => Kv = Kv with { PrefixCaching = value }; }
    /// <summary>Shorthand for <see cref="KvPolicyOptions.Spec"/> (Policy.Spec).</summary>
    public string? KvPolicy { get => Policy.Spec; init => Policy = Policy with { Spec = value }; }
    /// <summary>Shorthand for <see cref="KvPolicyOptions.Budget"/> (Policy.Budget).</summary>
    public double KvPolicyBudget { get => Policy.Budget; init => Policy = Policy with { Budget = value }; }
    /// <summary>Shorthand for <see cref="KvPolicyOptions.BudgetTokens"/> (Policy.BudgetTokens).</summary>
    public int? KvPolicyBudgetTokens { get => Policy.BudgetTokens; init => Policy = Policy with { BudgetTokens = value }; }
    /// <summary>Shorthand for <see cref="DocumentMemoryOptions.Name"/> (Documents.Name).</summary>
    public string? Memory { get => Documents.Name; init => Documents = Documents with { Name = value }; }
    /// <summary>Shorthand for <see cref="DocumentMemoryOptions.Directory"/> (Documents.Directory).</summary>
    public string? MemoryDirectory { get => Documents.Directory; init => Documents = Documents with { Directory = value }; }
    /// <summary>Shorthand for <see cref="DocumentMemoryOptions.TopK"/> (Documents.TopK).</summary>
    public int MemoryTopK { get => Documents.TopK; init => Documents = Documents with { TopK = value }; }

    /// <summary>Internal (tests and the persistent-memory wiring): wraps the single-sequence KV store. Setting it selects the
    /// single-sequence store adapter, which is why it is not public API — a persistent memory is
    /// <see cref="Documents"/>, a policy is <see cref="Policy"/>.</summary>
    internal Func<Engine.Memory.IKvStore, Engine.Memory.IKvStore>? KvStoreDecorator { get; init; }
}

/// <summary>The model's memory state — the KV cache of a transformer, the recurrent states of an RWKV model — and where
/// it may live. Each field means the same for every model kind; what a kind cannot do is rejected, not ignored.</summary>
public sealed record KvCacheOptions
{
    /// <summary>Bytes of memory state the engine may hold in RAM, every model kind: transformers — the KV pool (F32 K + V,
    /// all layers; ≤ 0 = ContextLength × MaxConcurrentSequences tokens, capped at 2 GiB but at least one full context);
    /// recurrent models (RWKV) — live states + in-memory state checkpoints (one running request = one state; ≤ 0 = the
    /// model's own checkpoint budget, at least MaxConcurrentSequences states). A budget below one sequence's state (one
    /// RWKV state) is rejected with ArgumentException; above the machine's memory, too.</summary>
    public long BudgetBytes { get; init; }
    /// <summary>Bytes of a disk tier for memory state: blocks in one memory-mapped file beside the RAM pool. When RAM blocks
    /// run out the scheduler moves cold full blocks there (attention reads them in place) before it preempts anything.
    /// 0 = none. Only the paged KV store of a transformer has blocks to move: any other configuration (RWKV, Paged = false,
    /// a persistent memory) rejects a non-zero value with ArgumentException.</summary>
    public long DiskBytes { get; init; }
    /// <summary>Folder for the disk tier's file (a fresh file per engine, deleted on Dispose); null = the system temp folder.</summary>
    public string? DiskPath { get; init; }
    /// <summary>Token positions per KV block (allocation and prefix-cache granularity of the paged store).</summary>
    public int BlockSize { get; init; } = 16;
    /// <summary>Reuse the memory state of identical prompt prefixes across requests (transformers: whole KV blocks; RWKV:
    /// state checkpoints).</summary>
    public bool PrefixCaching { get; init; } = true;
}

/// <summary>How concurrent requests are served. Both settings run in the same step loop.</summary>
public sealed record ServingOptions
{
    /// <summary>Batch concurrent requests (true: a paged KV pool for transformers, one state slot per request for recurrent
    /// models), or serve one request at a time over a contiguous KV cache / one state (false).</summary>
    public bool Paged { get; init; } = true;
    /// <summary>Most sequences running (holding memory state) at once; more requests wait in the queue.</summary>
    public int MaxConcurrentSequences { get; init; } = 16;
}

/// <summary>A KV memory policy for the engine (a request may override it: GenerationOptions.KvPolicy).</summary>
public sealed record KvPolicyOptions
{
    /// <summary>Policy spec ("sinks", "h2o", "snapkv", "arkv", "int8", "kivi4", optionally "+quest"/"+msa", e.g.
    /// "arkv+quest"; "full" = the policy layer keeping everything); null = none. The runtime picks the store: requests run
    /// batched on the paged executor (rows stay in the pool's blocks; prefix caching off there), unless the engine runs one
    /// sequence at a time (MaxConcurrentSequences = 1 without a disk tier, or Paged = false): then the single-sequence policy
    /// store, which frees what the policy evicts or quantizes (see KvPolicyWiring). Parsed by Load before any model work:
    /// a bad spec throws KvPolicyException (an ArgumentException).</summary>
    public string? Spec { get; init; }
    /// <summary>Fraction in (0, 1] of the sequence the policy may hold/read (float32-token equivalents). Default 0.25.</summary>
    public double Budget { get; init; } = KvPolicyWiring.DefaultBudget;
    /// <summary>Tokens a selection policy (quest, msa) reads per step and KV head, whatever the context length (Quest's fixed
    /// token budget); overrides <see cref="Budget"/> for selection (retention keeps the fraction). null = the fraction;
    /// ≤ 0 throws KvPolicyException from Load.</summary>
    public int? BudgetTokens { get; init; }
}

/// <summary>A persistent memory (MemoryStore) whose routed top-k document chunks every prompt attends over.</summary>
public sealed record DocumentMemoryOptions
{
    /// <summary>Memory name; null = none. Opened from <see cref="Directory"/> and checked against the model's identity.
    /// Runs on the single-sequence store adapter.</summary>
    public string? Name { get; init; }
    /// <summary>Folder holding memories; null = MemoryStore.DefaultRoot ($ENGINE_MEMORY_DIR or ~/.cache/engine/memories).</summary>
    public string? Directory { get; init; }
    /// <summary>Memory chunks attended per layer (top-k by routing score).</summary>
    public int TopK { get; init; } = 16;
}
