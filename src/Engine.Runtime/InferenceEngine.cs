// Owns: the in-process generation API — load a model + tokenizer, run prompt → prefill → sample/decode loop, stream
// complete UTF-8 text with token ids, stop on EOS / stop strings / max tokens / full context, report usage.
// Two executors: transformer models (EngineOptions.Paged, the default) are served by Serving.ServingLoop — many
// concurrent GenerateAsync calls batched every step over a paged KV pool with prefix caching and preemption (see that
// file); recurrent models (RWKV) are served by the same loop with one recurrent state slot per running request
// (prefix reuse from the state store's checkpoints); Paged = false or a KvStoreDecorator selects the single-sequence path below.
// KV policies (EngineOptions.KvPolicy, per request GenerationOptions.KvPolicy) run batched in the serving loop (a
// PolicyKvRouter over the paged store, see ServingLoop); Paged = false keeps them on the single-sequence path.
// EngineOptions.KvDiskBytes needs the paged store: set on any other path (RWKV, Paged = false, a KV store decorator such
// as a memory) it is rejected with ArgumentException, not ignored.
// Single-sequence path invariants: one generation at a time per engine (requests queue on a semaphore); each generation keeps the cached
// KV of the longest common prefix with the previous sequence (chat turns) and recomputes the rest; a prompt that cannot fit is rejected (PromptTooLongException) before any model work; cancellation
// is checked between forward calls (prefill runs in chunks) and leaves the engine usable.
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
    private const int SeqId = 0;
    private readonly ILanguageModel _model;
    private readonly IBackend _backend;
    private IKvStore _kv;   // replaced only by a per-request KV policy switch (InferenceEngine.KvPolicy.cs), under _gate
    private readonly float[] _logits;   // [vocab]
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly int _prefillChunk;
    private readonly List<int> _cached = new();   // tokens whose K/V are in _kv (positions 0 .. Count-1)
    private readonly ServingLoop? _serving;   // paged continuous batching (transformers); null = single-sequence path
    private bool _disposed;
    private Memory.MemoryStore? _memory;   // the memory opened by Load for EngineOptions.Memory (owned)
    private Engine.Memory.Policies.PolicyBackend? _policyBackend;   // the model's backend when EngineOptions.KvPolicy is set (wraps _backend)

    /// <summary>What the KV policy store (EngineOptions.KvPolicy) holds now for the cached sequence; null without a policy.
    /// On the paged path: what the most recently finished policy request held just before its state was dropped (its
    /// HeldBytes include the paged blocks' float32 rows, which stay allocated).</summary>
    public KvPolicyUsage? KvPolicyUsage => _serving?.HasPolicies == true ? _serving.LastPolicyUsage
        : _policyBackend?.Store is { } s ? KvPolicyWiring.Usage(s, SeqId) : null;

    /// <summary>Wraps an already-built model (the engine takes ownership of model and backend). <paramref name="serving"/>
    /// supplies the paged-serving knobs (Paged, MaxConcurrentSequences, KvBudgetBytes, BlockSize, PrefixCaching) and
    /// KvStoreDecorator (which selects the single-sequence path: the decorator wraps its KV store); its
    /// ContextLength/PrefillChunk are ignored in favour of the explicit arguments.</summary>
    public InferenceEngine(ILanguageModel model, IBackend backend, ITextTokenizer? tokenizer, int contextLength = 0, int prefillChunk = 512,
        EngineOptions? serving = null) : this(model, backend, tokenizer, contextLength, prefillChunk, serving, null)
    {
    }

    /// <param name="policyBackend">The model's backend when KV policies run in the serving loop (paged path, no decorator).</param>
    private InferenceEngine(ILanguageModel model, IBackend backend, ITextTokenizer? tokenizer, int contextLength, int prefillChunk,
        EngineOptions? serving, Engine.Memory.Policies.PolicyBackend? policyBackend)
    {
        if (serving?.KvDiskBytes is long disk && disk != 0 && !(serving.Paged && model is TransformerModel && serving.KvStoreDecorator == null))
        {
            string why = model is not TransformerModel ? $"{model.Config.Architecture} keeps recurrent states, not KV blocks"
                : !serving.Paged ? "Paged = false selects the single-sequence path"
                : "a KV store decorator (a memory, or a KV policy on the single-sequence path) selects the single-sequence path";
            throw new ArgumentException($"EngineOptions.KvDiskBytes ({disk} bytes, --kv-disk-mb) needs the paged KV store of a transformer engine; {why}");
        }
        _model = model; _backend = backend; Tokenizer = tokenizer;
        ContextLength = contextLength > 0 ? contextLength : model.Config.ContextLength;
        _kv = model is RwkvModel rm && serving?.KvBudgetBytes > 0
            ? RecurrentStore(rm, serving.KvBudgetBytes, 1)   // the single-sequence path counts its state + checkpoints against the KV budget too
            : model.CreateKvStore(ContextLength);   // contiguous; allocates on first write, so unused on the paged path
        if (serving?.KvStoreDecorator is { } decorate) _kv = decorate(_kv);
        _logits = new float[model.Config.VocabSize];
        _prefillChunk = Math.Max(1, prefillChunk);
        serving ??= new EngineOptions();
        if (serving.Paged && model is TransformerModel && serving.KvStoreDecorator == null)
        {
            var c = model.Config;
            long perToken = 2L * c.BlockCount * c.KeyDim * sizeof(float);
            int maxSeq = Math.Max(1, serving.MaxConcurrentSequences);
            long budget = serving.KvBudgetBytes > 0 ? serving.KvBudgetBytes
                : Math.Max(Math.Min((long)ContextLength * maxSeq * perToken, 2L << 30), (long)(ContextLength + serving.BlockSize) * perToken);
            _serving = new ServingLoop(model, tokenizer, ContextLength, budget, Math.Max(1, serving.BlockSize), maxSeq, _prefillChunk, serving.PrefixCaching,
                serving.KvDiskBytes, serving.KvDiskPath, policyBackend);
        }
        else if (serving.Paged && model is RwkvModel rwkv && serving.KvStoreDecorator == null)
        {
            // Recurrent models: the same scheduler loop, one state slot per running request (see ServingLoop). The KV
            // budget is the one byte budget of live states + in-memory checkpoints; it decides how many states run at once.
            _kv.Dispose();
            long budget = serving.KvBudgetBytes > 0 ? serving.KvBudgetBytes
                : Math.Max(rwkv.StoreOptions.MemoryBudgetBytes, Math.Max(1, serving.MaxConcurrentSequences) * rwkv.StateBytesPerSequence);
            var states = RecurrentStore(rwkv, budget, Math.Max(1, serving.MaxConcurrentSequences));
            _kv = states;
            _serving = new ServingLoop(model, tokenizer, ContextLength, states, _prefillChunk);
        }
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
    public RecurrentStateStore? RecurrentStates => _kv as RecurrentStateStore;

    /// <summary>True when requests are served by the paged continuous-batching loop.</summary>
    public bool IsPaged => _serving != null;

    /// <summary>Counters of the paged serving loop (null on the single-sequence path).</summary>
    public EngineStats? Stats => _serving?.Stats;

    /// <summary>Tokens the paged KV pool holds (0 on the single-sequence path).</summary>
    public int KvBudgetTokens => _serving?.BudgetTokens ?? 0;

    /// <summary>Paged path with EngineOptions.KvDiskBytes: the KV disk tier's file (deleted on Dispose); else null.</summary>
    public string? KvDiskFile => _serving?.DiskFilePath;

    /// <summary>Paged path: checks the KV pool and scheduler invariants (throws InvalidOperationException).</summary>
    public void ValidateKvPool() => _serving?.Validate();

    /// <summary>Paged path: drops every unreferenced cached prefix block; returns how many.</summary>
    public int EvictPrefixCache() => _serving?.EvictCachedBlocks() ?? 0;

    /// <summary>Paged path: holds the step loop until the handle is disposed, so requests submitted meanwhile are
    /// admitted and batched together. Throws on the single-sequence path.</summary>
    public IDisposable PauseServing() => (_serving ?? throw new InvalidOperationException("PauseServing needs the paged serving path")).Pause();

    /// <summary>Opens <paramref name="path"/> (any format ModelFiles reads), builds the model on the chosen backend
    /// and the tokenizer from the file's metadata (<paramref name="tokenizerFactory"/>; null = no text API).</summary>
    public static InferenceEngine Load(string path, EngineOptions? options = null, Func<ModelFile, ITextTokenizer?>? tokenizerFactory = null)
    {
        options ??= new EngineOptions();
        if (!File.Exists(path) && !Directory.Exists(path)) throw new FileNotFoundException($"model file not found: {path}", path);
        var policy = KvPolicyWiring.Parse(options);   // a bad --kv-policy fails here, before the file is opened
        var file = ModelFiles.Open(path, options.TokenizerPath);
        IBackend? backend = null;
        try
        {
            backend = Backends.Create(options.Backend, options.Threads);
            var policyBackend = policy != null ? new Engine.Memory.Policies.PolicyBackend(backend) : null;
            var model = Backends.LoadModel(file, (IBackend?)policyBackend ?? backend, ownsFile: true, kvBytesF32: options.KvBudgetBytes);
            var tokenizer = (tokenizerFactory ?? DefaultTokenizer)(file);
            var decorator = options.KvStoreDecorator;
            Memory.MemoryStore? memory = null;
            if (options.Memory != null)
            {
                memory = Memory.MemoryStore.Open(options.MemoryDirectory ?? Memory.MemoryStore.DefaultRoot, options.Memory,
                    Memory.MemoryStore.Identify(file, model.Config));
                var inner = decorator;
                var withMemory = memory.Decorator(options.MemoryTopK);
                decorator = kv => withMemory(inner?.Invoke(kv) ?? kv);
            }
            // a policy on the paged path runs in the serving loop (PolicyKvRouter); elsewhere it decorates the single-sequence store
            bool servedPolicy = policy != null && options.Paged && model is TransformerModel && decorator == null;
            if (policy != null && !servedPolicy) decorator = KvPolicyWiring.Decorator(policy, model, policyBackend!, decorator);
            return new InferenceEngine(model, backend, tokenizer, options.ContextLength, options.PrefillChunk, options with { KvStoreDecorator = decorator },
                servedPolicy ? policyBackend : null)
                { ModelPath = path, _memory = memory, _policyBackend = policyBackend, _enginePolicy = policy };
        }
        catch
        {
            backend?.Dispose();
            file.Dispose();
            throw;
        }
    }

    /// <summary>The tokenizer used when none is given: built from the model file's tokenizer metadata.</summary>
    public static Func<ModelFile, ITextTokenizer?> DefaultTokenizer { get; set; } = TokenizerAdapter.FromModelFile;

    public string? ModelPath { get; private init; }
    public ModelConfig Config => _model.Config;
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
        ObjectDisposedException.ThrowIf(_disposed, this);
        options ??= new GenerationOptions();
        int[] ids = promptIds.Count > 0 ? [.. promptIds]
            : Tokenizer?.BosId is int bos ? [bos] : throw new ArgumentException("empty prompt and the model has no BOS token", nameof(promptIds));
        // Validation happens here, eagerly, before any work is queued.
        if (ids.Length >= ContextLength) throw new PromptTooLongException(ids.Length, ContextLength);
        foreach (int id in ids)
            if ((uint)id >= (uint)Config.VocabSize) throw new ArgumentOutOfRangeException(nameof(promptIds), $"token id {id} is outside the vocabulary (0..{Config.VocabSize - 1})");
        if (options.MaxTokens < 0) throw new ArgumentOutOfRangeException(nameof(options), "MaxTokens must be ≥ 0");
        _ = new Sampler(options.Sampling, Config.VocabSize);   // validates sampling options eagerly
        _ = RequestPolicy(options);   // validates a per-request KV policy eagerly
        if (_serving != null)
        {
            if (ids.Length > _serving.BudgetTokens) throw new KvBudgetExceededException(ids.Length, _serving.BudgetTokens);
            var policy = _serving.HasPolicies ? RequestPolicy(options) ?? _enginePolicy : null;
            return TrackReuse(_serving.Run(ids, options, atTextStart, cancellationToken, policy));
        }
        return Run(ids, options, atTextStart, cancellationToken);
    }

    /// <summary>Passes a paged stream through, recording its final usage's reused prompt tokens in PromptTokensReused.</summary>
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

    private async IAsyncEnumerable<GenerationChunk> Run(int[] prompt, GenerationOptions o, bool atTextStart, [EnumeratorCancellation] CancellationToken ct)
    {
        await _gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            ApplyRequestPolicy(o);
            var sw = Stopwatch.StartNew();
            int reuse = 0;
            if (_kv is RecurrentStateStore rs)
            {
                // Recurrent models: a state cannot be truncated at any position; restore the longest checkpointed
                // prefix of this prompt instead (checkpoints every N tokens and at the end of each prompt).
                reuse = rs.RestoreLongestPrefix(SeqId, prompt, prompt.Length - 1);
                _cached.Clear();
                _cached.AddRange(prompt.AsSpan(0, reuse));
            }
            else
            {
                // Prefix reuse: keep the cached KV of the longest common prefix with the previous sequence (chat turns),
                // always recomputing at least the last prompt token to get its logits.
                while (reuse < _cached.Count && reuse < prompt.Length - 1 && _cached[reuse] == prompt[reuse]) reuse++;
                _kv.Truncate(SeqId, reuse);
                _cached.RemoveRange(reuse, _cached.Count - reuse);
            }
            PromptTokensReused = reuse;
            var sampler = new Sampler(o.Sampling, Config.VocabSize);
            var decoder = Tokenizer?.CreateStreamingDecoder(atTextStart);
            var stops = new StopStringMatcher(o.StopStrings);
            var eog = Tokenizer?.EndOfGenerationIds ?? new HashSet<int>();
            var history = new List<int>(prompt);

            // Prefill in chunks; only the last chunk's final logits matter.
            for (int start = reuse; start < prompt.Length; start += _prefillChunk)
            {
                ct.ThrowIfCancellationRequested();
                int len = Math.Min(_prefillChunk, prompt.Length - start);
                await ForwardAsync(ForwardBatch.ForSequence(prompt.AsSpan(start, len), start, SeqId), ct).ConfigureAwait(false);
            }
            if (_kv is RecurrentStateStore rsAfter && prompt.Length > 0) rsAfter.SaveCheckpoint(SeqId); // next turn reuses this prompt
            TimeSpan prefillTime = sw.Elapsed, firstToken = TimeSpan.Zero;
            int generated = 0, position = prompt.Length;
            FinishReason finish = FinishReason.Length;
            var pendingIds = new List<int>();

            while (true)
            {
                ct.ThrowIfCancellationRequested();
                if (generated >= o.MaxTokens) { finish = FinishReason.Length; break; }
                int id = sampler.Sample(_logits, CollectionsMarshalSpan(history));
                if (generated == 0) firstToken = sw.Elapsed;
                if (o.StopAtEndOfGeneration && eog.Contains(id)) { finish = FinishReason.Stop; break; }
                generated++;
                history.Add(id);
                pendingIds.Add(id);
                string text = stops.Push(decoder?.Push(id) ?? "");
                if (text.Length > 0 || decoder == null || stops.Stopped)
                {
                    yield return new GenerationChunk(text, pendingIds.ToArray());
                    pendingIds.Clear();
                }
                if (stops.Stopped) { finish = FinishReason.StopString; break; }
                if (generated >= o.MaxTokens) { finish = FinishReason.Length; break; }
                if (position >= ContextLength) { finish = FinishReason.ContextFull; break; }
                await ForwardAsync(ForwardBatch.ForSequence([id], position++, SeqId), ct).ConfigureAwait(false);
            }

            string tail = stops.Stopped ? "" : stops.Push(decoder?.Flush() ?? "") + stops.Flush();
            var total = sw.Elapsed;
            double decodeSeconds = (total - firstToken).TotalSeconds;
            var usage = new GenerationUsage(prompt.Length, generated, firstToken, total,
                prefillTime.TotalSeconds > 0 ? (prompt.Length - reuse) / prefillTime.TotalSeconds : 0,
                generated > 1 && decodeSeconds > 0 ? (generated - 1) / decodeSeconds : 0, finish, reuse);
            yield return new GenerationChunk(tail, pendingIds.ToArray(), usage);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Runs one forward off the caller's thread and records its tokens as cached; a failed forward may have
    /// written some layers only, so it drops the whole cached sequence.</summary>
    private async Task ForwardAsync(ForwardBatch batch, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        try
        {
            await Task.Run(() => _model.Forward(batch, _kv, _logits, allLogits: false), CancellationToken.None).ConfigureAwait(false);
        }
        catch
        {
            _kv.Clear(SeqId);
            _cached.Clear();
            throw;
        }
        _cached.AddRange(batch.Tokens);
    }

    private static ReadOnlySpan<int> CollectionsMarshalSpan(List<int> list) => System.Runtime.InteropServices.CollectionsMarshal.AsSpan(list);

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

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _serving?.Dispose();
        _kv.Dispose();
        _memory?.Dispose();
        _model.Dispose();
        _backend.Dispose();
        _gate.Dispose();
    }
}
