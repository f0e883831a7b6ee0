// Owns: the in-process generation API — load a model + tokenizer, validate a prompt, and stream complete UTF-8 text with
// token ids and usage from the engine's one step loop (Serving.ServingLoop). Every configuration runs in that loop; a
// single request is a batch of one. What differs is the executor the loop drives (chosen here, once, at construction):
//   - transformer, EngineOptions.Paged (default), no KV store decorator → PagedKvExecutor: continuous batching over a
//     paged KV pool, prefix caching, preemption, an optional disk tier, KV policies batched (PolicyKvRouter; their kept
//     rows live in the same pool, which gets the evicted rows' blocks back);
//   - recurrent model (RWKV), no decorator → RecurrentPlanExecutor: one state slot per running request (Paged = false:
//     one slot), prefix reuse from the state store's checkpoints;
//   - anything else (Paged = false transformer, a persistent memory, a KV policy with Paged = false, a caller's
//     KvStoreDecorator) → ContiguousKvExecutor, the adapter for a single-sequence store: one request at a time, the
//     cached KV of the longest common prefix with the previous sequence kept (chat turns), per-request policy switching.
// EngineOptions.KvDiskBytes needs the paged store: set on any other configuration it is rejected with ArgumentException.
// Invariants: a prompt that cannot fit is rejected (PromptTooLongException / KvBudgetExceededException) before any model
// work; cancellation ends only its request and leaves the engine usable; Dispose ends every request in flight (see
// ServingLoop.Dispose) before the model, backend and KV memory are freed.
using System.Diagnostics;
using System.Runtime.CompilerServices;
using Engine.Formats;
using Engine.Kernels;
using Engine.Memory;
using Engine.Memory.Recurrent;
using Engine.Model;
using Engine.Runtime.Sampling;
using Engine.Runtime.Serving;

namespace Engine.Runtime;

public sealed partial class InferenceEngine : IDisposable
{
    private readonly ILanguageModel _model;
    private readonly IBackend _backend;
    private readonly ServingLoop _serving;   // the one step loop; its executor is the memory kind
    private readonly bool _batched;          // the configuration batches concurrent requests (IsPaged)
    private int _disposed;
    private Memory.MemoryStore? _memory;   // the memory opened by Load for EngineOptions.Memory (owned)

    /// <summary>What the KV policy store (EngineOptions.KvPolicy) holds; null without a policy. Paged engine: what the most
    /// recently finished policy request held just before its state was dropped (its HeldBytes include the paged blocks'
    /// float32 rows, which stay allocated); single-sequence store: what it holds now for the cached sequence.</summary>
    public KvPolicyUsage? KvPolicyUsage => _serving.Executor.PolicyUsage;

    /// <summary>Wraps an already-built model (the engine takes ownership of model and backend). <paramref name="serving"/>
    /// supplies the serving knobs (Paged, MaxConcurrentSequences, KvBudgetBytes, BlockSize, PrefixCaching) and
    /// KvStoreDecorator (which selects the single-sequence store adapter: the decorator wraps its KV store); its
    /// ContextLength/PrefillChunk are ignored in favour of the explicit arguments.</summary>
    public InferenceEngine(ILanguageModel model, IBackend backend, ITextTokenizer? tokenizer, int contextLength = 0, int prefillChunk = 512,
        EngineOptions? serving = null) : this(model, backend, tokenizer, contextLength, prefillChunk, serving, null, null)
    {
    }

    /// <param name="policyBackend">The model's backend when EngineOptions.KvPolicy is set (the model runs over it).</param>
    /// <param name="enginePolicy">EngineOptions.KvPolicy as parsed (null = none).</param>
    private InferenceEngine(ILanguageModel model, IBackend backend, ITextTokenizer? tokenizer, int contextLength, int prefillChunk,
        EngineOptions? serving, Engine.Memory.Policies.PolicyBackend? policyBackend, Engine.Memory.Policies.KvPolicySpec? enginePolicy)
    {
        serving ??= new EngineOptions();
        serving.Validate();   // OptionsValidation (Load already ran it; this covers callers of the public constructor)
        bool decorated = serving.KvStoreDecorator != null;
        if (serving.KvDiskBytes is long disk && disk != 0 && !(serving.Paged && model is TransformerModel && !decorated))
        {
            string why = model is not TransformerModel ? $"{model.Config.Architecture} keeps recurrent states, not KV blocks"
                : !serving.Paged ? "Paged = false selects the single-sequence path"
                : "a KV store decorator (a memory, or a KV policy on the single-sequence path) selects the single-sequence path";
            throw new ArgumentException($"EngineOptions.KvDiskBytes ({disk} bytes, --kv-disk-mb) needs the paged KV store of a transformer engine; {why}");
        }
        _model = model; _backend = backend; Tokenizer = tokenizer; _enginePolicy = enginePolicy;
        ContextLength = contextLength > 0 ? contextLength : model.Config.ContextLength;
        int chunk = Math.Max(1, prefillChunk);
        int maxSeq = Math.Max(1, serving.MaxConcurrentSequences);
        IStepExecutor exec;
        if (serving.Paged && model is TransformerModel && !decorated)
        {
            var c = model.Config;
            long perToken = 2L * c.LayerCount * c.KvDim * sizeof(float);
            long budget = serving.KvBudgetBytes > 0 ? serving.KvBudgetBytes
                : Math.Max(Math.Min((long)ContextLength * maxSeq * perToken, 2L << 30), (long)(ContextLength + serving.BlockSize) * perToken);
            exec = new PagedKvExecutor(model, ContextLength, budget, Math.Max(1, serving.BlockSize), maxSeq, serving.PrefixCaching,
                serving.KvDiskBytes, serving.KvDiskPath, enginePolicy != null ? policyBackend : null);
            _batched = true;
        }
        else if (model is RwkvModel rwkv && !decorated)
        {
            // Recurrent models: one state slot per running request. The KV budget is the one byte budget of live states +
            // in-memory checkpoints; it decides how many states run at once (Paged = false: one).
            RecurrentStateStore states;
            if (serving.Paged)
                states = RecurrentStore(rwkv, serving.KvBudgetBytes > 0 ? serving.KvBudgetBytes
                    : Math.Max(rwkv.StoreOptions.MemoryBudgetBytes, maxSeq * rwkv.StateBytesPerSequence), maxSeq);
            else
                states = serving.KvBudgetBytes > 0 ? RecurrentStore(rwkv, serving.KvBudgetBytes, 1) : rwkv.CreateStateStore(1);
            exec = new RecurrentPlanExecutor(model, states, ContextLength);
            _batched = serving.Paged;
        }
        else
        {
            IKvStore kv = model is RwkvModel rm && serving.KvBudgetBytes > 0
                ? RecurrentStore(rm, serving.KvBudgetBytes, 1)   // counts its state + checkpoints against the KV budget too
                : model.CreateKvStore(ContextLength);   // contiguous; allocates on first write
            if (serving.KvStoreDecorator is { } decorate) kv = decorate(kv);
            exec = new ContiguousKvExecutor(model, kv, ContextLength, policyBackend, enginePolicy);
        }
        _serving = new ServingLoop(exec, model.Config.VocabSize, tokenizer, ContextLength, chunk);
    }

    /// <summary>A state store for <paramref name="model"/> whose live states and in-memory checkpoints are counted
    /// against <paramref name="budgetBytes"/>, with as many state slots (≤ <paramref name="maxSequences"/>) as the budget
    /// holds; a budget smaller than one state is rejected (no request could ever run).</summary>
    private static RecurrentStateStore RecurrentStore(RwkvModel model, long budgetBytes, int maxSequences)
    {
        long state = model.StateBytesPerSequence;
        if (budgetBytes < state)
            throw new ArgumentException($"the KV budget of {budgetBytes} bytes holds no recurrent state of this model ({state} bytes per sequence); " +
                $"set KvBudgetBytes ≥ {state}");
        int slots = (int)Math.Min(maxSequences, budgetBytes / state);
        return model.CreateStateStore(slots, model.StoreOptions with { Budget = new MemoryBudget(budgetBytes) });
    }

    /// <summary>The recurrent state store (live states + checkpoints) of an RWKV engine; null for transformers.</summary>
    public RecurrentStateStore? RecurrentStates => (_serving.Executor as RecurrentPlanExecutor)?.Store;

    /// <summary>True when concurrent requests are batched together (paged KV pool, or RWKV state slots with Paged); false
    /// for the single-sequence store adapter and Paged = false, where requests run one at a time in the same loop.</summary>
    public bool IsPaged => _batched;

    /// <summary>Counters of the step loop (every configuration; the single-sequence store is one block of a whole context).</summary>
    public EngineStats Stats => _serving.Stats;

    /// <summary>Token positions the KV memory holds in all (paged: the pool; otherwise the context length).</summary>
    public int KvBudgetTokens => _serving.BudgetTokens;

    /// <summary>Paged path with EngineOptions.KvDiskBytes: the KV disk tier's file (deleted on Dispose); else null.</summary>
    public string? KvDiskFile => (_serving.Executor as PagedKvExecutor)?.DiskFilePath;

    /// <summary>Test hook: checks the KV pool and scheduler invariants (throws InvalidOperationException).</summary>
    internal void ValidateKvPool() => _serving.Validate();

    /// <summary>Test / benchmark hook: drops every unreferenced cached prefix block; returns how many.</summary>
    internal int EvictPrefixCache() => _serving.EvictCachedBlocks();

    /// <summary>Test / benchmark hook: holds the step loop until the handle is disposed, so requests submitted meanwhile
    /// are admitted and batched together.</summary>
    internal IDisposable PauseServing() => _serving.Pause();

    /// <summary>Test hook: holds the step loop from the end of its next non-empty step until disposed.</summary>
    internal IDisposable PauseServingAfterNextStep() => _serving.PauseAfterNextStep();

    /// <summary>Tests: called on the serving loop's thread, under its lock, after every completed step with the scheduler.</summary>
    internal Action<Engine.Scheduling.Scheduler>? AfterServingStep { set => _serving.AfterStep = value; }

    /// <summary>Opens <paramref name="path"/> (any format ModelFiles reads), builds the model on the chosen backend
    /// and the tokenizer from the file's metadata (or EngineOptions.TokenizerPath).</summary>
    public static InferenceEngine Load(string path, EngineOptions? options = null) => Load(path, options, tokenizerFactory: null);

    /// <summary>Opens <paramref name="path"/> (any format ModelFiles reads), builds the model on the chosen backend
    /// and the tokenizer from the file's metadata (<paramref name="tokenizerFactory"/>; null = no text API).</summary>
    public static InferenceEngine Load(string path, EngineOptions? options, Func<ModelFile, ITextTokenizer?>? tokenizerFactory)
    {
        options ??= new EngineOptions();
        options.Validate();   // every field, before the file is opened (OptionsValidation)
        if (!File.Exists(path) && !Directory.Exists(path)) throw new FileNotFoundException($"model file not found: {path}", path);
        var policy = KvPolicyWiring.Parse(options);   // a bad --kv-policy fails here, before the file is opened
        var file = ModelFiles.Open(path, options.TokenizerPath);
        IBackend? backend = null;
        Memory.MemoryStore? memory = null;
        try
        {
            backend = Backends.Create(options.Backend, options.Threads);
            var policyBackend = policy != null ? new Engine.Memory.Policies.PolicyBackend(backend) : null;
            var model = Backends.LoadModel(file, (IBackend?)policyBackend ?? backend, ownsFile: true, kvBytesF32: options.KvBudgetBytes);
            var tokenizer = (tokenizerFactory ?? DefaultTokenizer)(file);
            var decorator = options.KvStoreDecorator;
            if (options.Memory != null)
            {
                memory = Memory.MemoryStore.Open(options.MemoryDirectory ?? Memory.MemoryStore.DefaultRoot, options.Memory,
                    Memory.MemoryStore.Identify(file, model.Config), writable: false);
                var inner = decorator;
                var withMemory = memory.Decorator(options.MemoryTopK);
                decorator = kv => withMemory(inner?.Invoke(kv) ?? kv);
            }
            // A policy runs batched on the paged executor (PolicyKvRouter: kept rows packed in the request's pool blocks, the
            // rest of its blocks returned to the pool after each step) when requests
            // may run concurrently or a disk tier is asked for; an engine that runs one sequence at a time
            // (MaxConcurrentSequences = 1, no disk tier) or Paged = false gets the single-sequence policy store instead,
            // which frees what the policy evicts or quantizes. The runtime decides; callers (the CLI) only state the shape.
            bool oneAtATime = options.MaxConcurrentSequences == 1 && options.KvDiskBytes == 0;
            bool servedPolicy = policy != null && options.Paged && !oneAtATime && model is TransformerModel && decorator == null;
            if (policy != null && !servedPolicy) decorator = KvPolicyWiring.Decorator(policy, model, policyBackend!, decorator);
            return new InferenceEngine(model, backend, tokenizer, options.ContextLength, options.PrefillChunk, options with { KvStoreDecorator = decorator },
                policyBackend, policy)
                { ModelPath = path, _memory = memory };
        }
        catch
        {
            memory?.Dispose();   // releases the memory's lock too
            backend?.Dispose();
            file.Dispose();
            throw;
        }
    }

    /// <summary>The tokenizer used when none is given: built from the model file's tokenizer metadata.</summary>
    public static Func<ModelFile, ITextTokenizer?> DefaultTokenizer { get; } = TokenizerAdapter.FromModelFile;

    public string? ModelPath { get; private init; }
    public ModelConfig Config => _model.Config;

    /// <summary>The loaded model's architecture and sizes, for front ends (no Engine.Model types).</summary>
    public ModelInfo ModelInfo => new(Config.Architecture, Config.LayerCount, Config.EmbeddingLength, Config.VocabSize, Config.ContextLength);
    public ITextTokenizer? Tokenizer { get; }
    public int ContextLength { get; }
    public string BackendName => _backend.Name;

    /// <summary>Prompt tokens of the last generation not recomputed (kept KV prefix, or a restored recurrent-state checkpoint); same as Usage.ReusedPromptTokens.</summary>
    public int PromptTokensReused { get; private set; }

    /// <summary>Streams the continuation of <paramref name="prompt"/> (BOS added per options). Empty prompt = from BOS alone.</summary>
    public IAsyncEnumerable<GenerationChunk> GenerateAsync(string prompt, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new GenerationOptions();
        var tok = RequireTokenizer();
        var ids = tok.Encode(prompt, addSpecial: options.AddBos, parseSpecial: false);
        return Start(ids, options, atTextStart: prompt.Length == 0, cancellationToken);
    }

    /// <summary>Streams the assistant's reply to <paramref name="messages"/> using the model's chat template
    /// (a plain "role: text" transcript when the model has none).</summary>
    public IAsyncEnumerable<GenerationChunk> GenerateAsync(IReadOnlyList<ChatMessage> messages, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new GenerationOptions();
        var tok = RequireTokenizer();
        string? templated = tok.ApplyChatTemplate(messages);
        int[] ids = templated != null
            ? tok.Encode(templated, addSpecial: options.AddBos, parseSpecial: true)
            : tok.Encode(PlainTranscript(messages), addSpecial: options.AddBos, parseSpecial: false);
        if (templated == null && !options.StopStrings.Contains("\nuser:"))
            options = options with { StopStrings = [.. options.StopStrings, "\nuser:"] };
        return Start(ids, options, atTextStart: false, cancellationToken);
    }

    /// <summary>Streams a continuation of <paramref name="promptIds"/> (used as given; empty = BOS alone).</summary>
    public IAsyncEnumerable<GenerationChunk> GenerateAsync(IReadOnlyList<int> promptIds, GenerationOptions? options = null, CancellationToken cancellationToken = default)
        => Start(promptIds, options, atTextStart: promptIds.Count <= 1, cancellationToken);

    private IAsyncEnumerable<GenerationChunk> Start(IReadOnlyList<int> promptIds, GenerationOptions? options, bool atTextStart, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        options ??= new GenerationOptions();
        int[] ids = promptIds.Count > 0 ? [.. promptIds]
            : Tokenizer?.BosId is int bos ? [bos] : throw new ArgumentException("empty prompt and the model has no BOS token", nameof(promptIds));
        // Validation happens here, eagerly, before any work is queued.
        if (ids.Length >= ContextLength) throw new PromptTooLongException(ids.Length, ContextLength);
        foreach (int id in ids)
            if ((uint)id >= (uint)Config.VocabSize) throw new ArgumentOutOfRangeException(nameof(promptIds), $"token id {id} is outside the vocabulary (0..{Config.VocabSize - 1})");
        options.Validate();   // OptionsValidation: every field, eagerly
        _ = new Sampler(options.Sampling, Config.VocabSize);
        _ = RequestPolicy(options);   // validates a per-request KV policy eagerly
        if (ids.Length > _serving.BudgetTokens) throw new KvBudgetExceededException(ids.Length, _serving.BudgetTokens);
        var policy = _enginePolicy != null ? RequestPolicy(options) ?? _enginePolicy : null;
        return TrackReuse(_serving.Run(ids, options, atTextStart, cancellationToken, policy));
    }

    /// <summary>Passes a stream through, recording its final usage's reused prompt tokens in PromptTokensReused.</summary>
    private async IAsyncEnumerable<GenerationChunk> TrackReuse(IAsyncEnumerable<GenerationChunk> stream)
    {
        await foreach (var chunk in stream.ConfigureAwait(false))
        {
            if (chunk.Usage is { } u) PromptTokensReused = u.ReusedPromptTokens;
            yield return chunk;
        }
    }

    /// <summary>Collects a whole generation: text, ids and usage.</summary>
    public async Task<(string Text, int[] TokenIds, GenerationUsage Usage)> GenerateTextAsync(IAsyncEnumerable<GenerationChunk> stream)
    {
        var sb = new System.Text.StringBuilder();
        var ids = new List<int>();
        GenerationUsage? usage = null;
        await foreach (var c in stream) { sb.Append(c.Text); ids.AddRange(c.TokenIds); usage ??= c.Usage; }
        return (sb.ToString(), ids.ToArray(), usage!);
    }

    private ITextTokenizer RequireTokenizer() =>
        Tokenizer ?? throw new InvalidOperationException("this model has no tokenizer; pass token ids instead of text");

    /// <summary>Fallback chat format for models without a template.</summary>
    public static string PlainTranscript(IReadOnlyList<ChatMessage> messages)
    {
        var sb = new System.Text.StringBuilder();
        foreach (var m in messages) sb.Append(m.Role).Append(": ").Append(m.Content).Append('\n');
        sb.Append("assistant:");
        return sb.ToString();
    }

    /// <summary>Ends every request in flight (ObjectDisposedException; a forward running now finishes first), then frees
    /// the KV / state memory, the memory store, the model and the backend. Safe to call more than once and from any thread.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _serving.Dispose();
        _memory?.Dispose();
        _model.Dispose();
        _backend.Dispose();
    }
}
