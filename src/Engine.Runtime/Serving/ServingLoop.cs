// Owns: the continuous-batching step loop of a transformer engine — one background task that, while requests are
// live, asks the Scheduler for a plan, applies its disk-tier moves and copy-on-write orders, binds every scheduled request to a slot of the
// PagedKvStore (its block table + computed length), runs ALL scheduled tokens of all requests as ONE ForwardBatch
// (weights read once per step), samples for the requests whose SamplesToken is set (logits only for their last rows),
// turns tokens into streamed text (StopStringMatcher, EOS, max tokens, full context) and reports StepResults.
// Invariants: the Scheduler is touched only under _lock (it is not thread-safe); the forward runs outside the lock so
// AddRequest/Cancel never wait for a step; a cancelled request's blocks are freed at once by Scheduler.Cancel (the step
// in flight may still write into them, but nothing else can take them before the next Step, which runs after it);
// the loop sleeps on a semaphore when no request is live (no busy-spinning); a failed forward fails only the requests
// of that step. Per-request processing mirrors the single-sequence loop exactly (same sampler calls, same order), so a
// greedy request alone gives the tokens it gave before.
// Disk tier (EngineOptions.KvDiskBytes > 0): the PagedKvStore gets that many bytes of blocks in a memory-mapped file
// (ids after the RAM blocks) and the scheduler the same disk block count; a plan's BlockMove orders copy cold blocks
// there before the forward, which then reads them in place. The file is deleted when the loop is disposed.
// Recurrent models (RWKV) run through the same loop with a RecurrentPlanExecutor instead of the paged KV store: the
// scheduler's "block" is then one whole recurrent state (BlockSize = context + 1 tokens, so every request holds
// exactly one block = one state slot; BlockCount = state slots), prefix caching in the scheduler is off and prefix
// reuse comes from the state store's checkpoints instead (the executor restores the longest checkpointed prefix on
// admission; the loop checkpoints each request's state at the end of its prompt).
// KV policies (EngineOptions.KvPolicy / GenerationOptions.KvPolicy): the model runs over a PolicyKvRouter on the paged
// store — each step routes every slot either straight to the paged store or through the PolicyKvStore of the request's
// spec (rows stay in the paged blocks; the policy decides what is presented and read), so policy requests batch with
// plain ones. A request's policy sequence id (stable across steps, unlike its slot) is taken when it is first scheduled
// and its state cleared on the loop thread before the next step once it finishes, is cancelled, fails or is preempted
// (recompute restarts it from position 0). Prefix caching is off in such a loop: a policy request's K/V rows depend on
// what its policy kept, so its blocks must neither be reused nor reuse others'. The blocks of every token stay allocated
// (the scheduler's accounting is unchanged): what batching gains here is throughput + per-request read-time selection
// and retention semantics, not pool memory.
// Source: vLLM v1 engine core loop (schedule → execute → update), reduced to one in-process CPU executor.
using System.Diagnostics;
using System.Threading.Channels;
using Engine.Memory;
using Engine.Memory.Paged;
using Engine.Memory.Policies;
using Engine.Memory.Recurrent;
using Engine.Model;
using Engine.Runtime.Sampling;
using Engine.Scheduling;

namespace Engine.Runtime.Serving;

/// <summary>Engine-wide counters of the serving loop (cumulative unless named otherwise).</summary>
/// <param name="Steps">Non-empty steps run.</param>
/// <param name="TokensScheduled">Tokens computed by all steps (prefill chunks + decodes + recomputes).</param>
/// <param name="LastStepTokens">Tokens of the most recent step.</param>
/// <param name="PrefixHitTokens">Tokens taken from the prefix cache instead of computed.</param>
/// <param name="Preemptions">Requests preempted (recompute) for lack of blocks.</param>
/// <param name="BlocksInUse">Blocks referenced by running requests now.</param>
/// <param name="BlocksCached">Unreferenced blocks holding reusable prefixes now (evictable).</param>
/// <param name="BlocksFree">Empty blocks now.</param>
/// <param name="MaxRequestsPerStep">The most requests that shared one step (one forward batch) so far.</param>
/// <param name="BlockCount">All blocks of the pool: RAM + disk tier (BlocksInUse/Cached/Free count both tiers).</param>
/// <param name="DiskBlockCount">Blocks of the disk tier (0 = none).</param>
/// <param name="DiskBlocksInUse">Disk-tier blocks referenced by running requests now.</param>
/// <param name="BlocksMovedToDisk">RAM blocks offloaded to the disk tier so far (instead of preempting).</param>
public sealed record EngineStats(long Steps, long TokensScheduled, int LastStepTokens, long PrefixHitTokens, long Preemptions,
    long Finished, long Cancelled, int Running, int Waiting, int BlockCount, int BlockSize, int BlocksInUse, int BlocksCached, int BlocksFree,
    int MaxRequestsPerStep = 0, int DiskBlockCount = 0, int DiskBlocksInUse = 0, long BlocksMovedToDisk = 0);

internal sealed class ServingLoop : IDisposable
{
    private readonly ILanguageModel _model;
    private readonly PagedKvStore? _kv;                 // transformers
    private readonly RecurrentPlanExecutor? _recurrent; // recurrent models
    private readonly Scheduler _scheduler;
    private readonly ITextTokenizer? _tokenizer;
    private readonly int _contextLength;
    private readonly object _lock = new();
    private readonly Dictionary<long, Live> _live = new();
    private readonly SemaphoreSlim _wake = new(0, int.MaxValue);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private float[] _logits = [];
    private long _nextId = 1, _tokensScheduled, _emptySteps;
    private int _lastStepTokens;
    private int _maxRequestsPerStep;
    private volatile TaskCompletionSource? _hold;   // non-null: the loop waits before its next step (Pause)
    private readonly PolicyKvRouter? _router;           // KV policies: the store the model sees (over _kv); null = plain _kv
    private readonly Dictionary<long, (KvPolicySpec Spec, int Seq)> _policySeqs = new();   // loop thread: requests holding policy state
    private readonly Stack<int> _freePolicySeqs = new();                                  // loop thread: free policy sequence ids
    private volatile KvPolicyUsage? _lastPolicyUsage;

    /// <param name="kvDiskBytes">Bytes of the KV disk tier (0 = none).</param>
    /// <param name="kvDiskDirectory">Folder of the disk tier's file (null = the system temp folder).</param>
    public ServingLoop(ILanguageModel model, ITextTokenizer? tokenizer, int contextLength, long kvBudgetBytes, int blockSize,
        int maxSequences, int maxTokensPerStep, bool prefixCaching, long kvDiskBytes = 0, string? kvDiskDirectory = null,
        PolicyBackend? policyBackend = null)
        : this(model, tokenizer, contextLength, NewPaged(model, contextLength, kvBudgetBytes, blockSize, maxSequences, kvDiskBytes, kvDiskDirectory), null,
            maxSequences, maxTokensPerStep, prefixCaching && policyBackend == null)
    {
        if (policyBackend != null)
        {
            // the model was built over policyBackend; the router points it at the policy store of each Pages call
            _router = new PolicyKvRouter(_kv!, policyBackend, maxSequences);
            for (int i = maxSequences - 1; i >= 0; i--) _freePolicySeqs.Push(i);
        }
    }

    /// <summary>True when requests may carry KV policies (the loop runs over a PolicyKvRouter).</summary>
    public bool HasPolicies => _router != null;

    /// <summary>What the policy store held for the most recently finished policy request, just before its state was
    /// dropped (null before any). HeldBytes include the paged store's float32 rows of its positions (they stay allocated).</summary>
    public KvPolicyUsage? LastPolicyUsage => _lastPolicyUsage;

    /// <summary>A loop for a recurrent model over <paramref name="states"/> (one slot per running request).</summary>
    public ServingLoop(ILanguageModel model, ITextTokenizer? tokenizer, int contextLength, RecurrentStateStore states, int maxTokensPerStep)
        : this(model, tokenizer, contextLength, null, new RecurrentPlanExecutor(model, states), states.SequenceCapacity, maxTokensPerStep, false)
    {
    }

    private ServingLoop(ILanguageModel model, ITextTokenizer? tokenizer, int contextLength, PagedKvStore? kv, RecurrentPlanExecutor? recurrent,
        int maxSequences, int maxTokensPerStep, bool prefixCaching)
    {
        _model = model; _tokenizer = tokenizer; _contextLength = contextLength;
        _kv = kv; _recurrent = recurrent;
        // Recurrent: one "block" holds a whole sequence (its fixed-size state), one block per state slot.
        int blocks = kv?.RamBlockCount ?? maxSequences, blockSize = kv?.BlockSize ?? contextLength + 1;
        _scheduler = new Scheduler(new SchedulerOptions
        {
            BlockCount = blocks, DiskBlockCount = kv?.DiskBlockCount ?? 0, BlockSize = blockSize, MaxRunningRequests = maxSequences,
            MaxTokensPerStep = Math.Max(1, maxTokensPerStep),
            // The last sampled token is never fed back: a context of C positions holds C + 1 tokens.
            MaxModelLength = contextLength + 1,
            EnablePrefixCaching = prefixCaching && kv != null,
        });
        _loop = Task.Factory.StartNew(Loop, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();
    }

    private static PagedKvStore NewPaged(ILanguageModel model, int contextLength, long kvBudgetBytes, int blockSize, int maxSequences,
        long kvDiskBytes, string? kvDiskDirectory)
    {
        var c = model.Config;
        int blocks = PagedKvStore.BlockCountForBudget(kvBudgetBytes, c.BlockCount, c.KeyDim, blockSize);
        long blockBytes = 2L * c.BlockCount * blockSize * c.KeyDim * sizeof(float);
        if (blocks < 1)
            throw new ArgumentException($"the KV budget of {kvBudgetBytes} bytes holds no block of {blockSize} tokens ({blockBytes} bytes)");
        if (kvDiskBytes < 0) throw new ArgumentException($"the KV disk tier size must be ≥ 0 bytes, got {kvDiskBytes}");
        int diskBlocks = kvDiskBytes > 0 ? PagedKvStore.BlockCountForBudget(kvDiskBytes, c.BlockCount, c.KeyDim, blockSize) : 0;
        if (kvDiskBytes > 0 && diskBlocks < 1)
            throw new ArgumentException($"the KV disk tier of {kvDiskBytes} bytes holds no block of {blockSize} tokens ({blockBytes} bytes)");
        string? diskPath = diskBlocks > 0 && kvDiskDirectory != null
            ? Path.Combine(kvDiskDirectory, $"engine-kv-{Environment.ProcessId}-{Guid.NewGuid():N}.bin")
            : null;
        return new PagedKvStore(c.BlockCount, c.KeyDim, blockSize, blocks, contextLength, maxSequences, selfManaged: false,
            diskBlockCount: diskBlocks, diskPath: diskPath);
    }

    /// <summary>The KV disk tier's file (null without one); deleted on Dispose.</summary>
    public string? DiskFilePath => _kv?.DiskFilePath;

    /// <summary>Tokens the KV pool holds in all (BlockCount · BlockSize).</summary>
    /// <summary>Recurrent models: the context length (a state does not grow with tokens).</summary>
    public int BudgetTokens => _kv != null ? _kv.BlockCount * _kv.BlockSize : _contextLength;

    /// <summary>The executor of a recurrent model (null for transformers).</summary>
    public RecurrentPlanExecutor? Recurrent => _recurrent;

    public EngineStats Stats
    {
        get
        {
            lock (_lock)
            {
                var s = _scheduler.Stats;
                var p = _scheduler.Pool;
                return new EngineStats(s.Steps - _emptySteps, _tokensScheduled, _lastStepTokens, s.PrefixHitTokens, s.Preemptions,
                    s.Finished, s.Cancelled, _scheduler.RunningCount, _scheduler.WaitingCount, p.Capacity, p.BlockSize,
                    p.UsedCount, p.CachedCount, p.FreeCount, _maxRequestsPerStep, p.DiskCapacity, p.DiskUsedCount, p.MovesToDisk);
            }
        }
    }

    /// <summary>Checks the block pool's and scheduler's invariants (tests).</summary>
    public void Validate() { lock (_lock) _scheduler.Validate(); }

    /// <summary>Evicts every unreferenced cached block (tests: "the pool is completely free afterwards").</summary>
    public int EvictCachedBlocks() { lock (_lock) return _scheduler.Pool.EvictAllCached(); }

    /// <summary>Streams one request through the loop. The prompt was validated by the caller.</summary>
    /// <param name="policy">The request's KV policy (null = none); needs a loop built with a PolicyBackend.</param>
    public async IAsyncEnumerable<GenerationChunk> Run(int[] prompt, GenerationOptions o, bool atTextStart,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct, KvPolicySpec? policy = null)
    {
        ct.ThrowIfCancellationRequested();
        if (policy != null && _router == null) throw new ArgumentException("a KV policy request needs a serving loop built with a PolicyBackend");
        var live = new Live(prompt, o, new Sampler(o.Sampling, _model.Config.VocabSize), _tokenizer?.CreateStreamingDecoder(atTextStart),
            new StopStringMatcher(o.StopStrings), _tokenizer?.EndOfGenerationIds ?? new HashSet<int>()) { Policy = policy };
        // Room for generated tokens: the context holds C positions (C + 1 tokens), the pool BudgetTokens positions.
        int room = Math.Min(_contextLength, BudgetTokens) + 1 - prompt.Length;
        int maxNew = Math.Max(1, Math.Min(o.MaxTokens, room));
        live.Room = room;
        lock (_lock)
        {
            live.Id = _nextId++;
            _scheduler.AddRequest(new Request(live.Id, prompt, maxNew));
            _live.Add(live.Id, live);
        }
        _wake.Release();
        bool done = false;
        try
        {
            using var reg = ct.Register(() => CancelRequest(live.Id));
            await foreach (var chunk in live.Output.Reader.ReadAllAsync(CancellationToken.None).ConfigureAwait(false))
            {
                ct.ThrowIfCancellationRequested();
                if (chunk.Usage != null) done = true;
                yield return chunk;
            }
            ct.ThrowIfCancellationRequested();
        }
        finally
        {
            if (!done) CancelRequest(live.Id);
        }
    }

    /// <summary>Holds the step loop until the returned handle is disposed: requests queue meanwhile, so a burst of
    /// requests is admitted and batched together (deterministic batching for tests and benchmarks).</summary>
    public IDisposable Pause()
    {
        var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (Interlocked.CompareExchange(ref _hold, tcs, null) != null) throw new InvalidOperationException("the serving loop is already paused");
        return new Resume(this, tcs);
    }

    private sealed class Resume(ServingLoop loop, TaskCompletionSource tcs) : IDisposable
    {
        public void Dispose()
        {
            if (Interlocked.CompareExchange(ref loop._hold, null, tcs) == tcs) tcs.TrySetResult();
        }
    }

    private void CancelRequest(long id)
    {
        lock (_lock)
        {
            if (!_live.Remove(id, out var live)) return;
            live.Cancelled = true;
            _scheduler.Cancel(id);
            _scheduler.Forget(id);
            live.Output.Writer.TryComplete(new OperationCanceledException("the request was cancelled"));
        }
        _wake.Release();
    }

    private async Task Loop()
    {
        var results = new List<StepResult>();
        var finishedNow = new List<(Live Live, GenerationUsage Usage)>();
        while (!_stop.IsCancellationRequested)
        {
            if (_hold is { } hold)
            {
                try { await hold.Task.WaitAsync(_stop.Token).ConfigureAwait(false); }
                catch (OperationCanceledException) { break; }
            }
            SchedulePlan plan;
            Live?[] lives;
            lock (_lock)
            {
                plan = _scheduler.Step();
                if (plan.IsEmpty) _emptySteps++;
                if (_recurrent != null)
                    foreach (var id in plan.PreemptedIds.Concat(plan.FinishedIds).Concat(plan.CancelledIds)) _recurrent.Release(id);
                if (_router != null) ReleasePolicyState(plan.PreemptedIds);
                lives = new Live?[plan.Requests.Count];
                for (int i = 0; i < lives.Length; i++) lives[i] = _live.GetValueOrDefault(plan.Requests[i].RequestId);
            }
            if (plan.IsEmpty)
            {
                try { await _wake.WaitAsync(_stop.Token).ConfigureAwait(false); }
                catch (OperationCanceledException) { break; }
                continue;
            }

            results.Clear();
            finishedNow.Clear();
            Exception? failure = null;
            try
            {
                Execute(plan, lives, results, finishedNow);
            }
            catch (Exception e)
            {
                failure = e;
            }
            lock (_lock)
            {
                if (failure != null)
                {
                    // Fail only this step's requests; the scheduler and everyone else carry on.
                    foreach (var r in plan.Requests)
                    {
                        _scheduler.Cancel(r.RequestId);
                        _scheduler.Forget(r.RequestId);
                        if (_live.Remove(r.RequestId, out var l)) l.Output.Writer.TryComplete(failure);
                    }
                    _scheduler.OnStepCompleted([]);
                }
                else
                {
                    _scheduler.OnStepCompleted(results);
                    _tokensScheduled += plan.TotalTokens;
                    _lastStepTokens = plan.TotalTokens;
                    _maxRequestsPerStep = Math.Max(_maxRequestsPerStep, plan.Requests.Count);
                    var pool = _scheduler.Pool;
                    foreach (var (live, usage) in finishedNow)
                    {
                        if (!_live.Remove(live.Id)) continue; // cancelled meanwhile
                        var snap = _scheduler.GetRequest(live.Id);
                        var final = usage with
                        {
                            ReusedPromptTokens = live.FirstHit,
                            Serving = new RequestServingStats(live.Computed, snap.PrefixHitTokens, snap.PreemptionCount, live.Steps,
                                pool.UsedCount, pool.FreeCount + pool.CachedCount),
                        };
                        _scheduler.Forget(live.Id);
                        if (_router != null && _policySeqs.TryGetValue(live.Id, out var ps))
                            _lastPolicyUsage = KvPolicyWiring.Usage(_router.StoreFor(ps.Spec), ps.Seq);
                        live.Output.Writer.TryWrite(live.FinalChunk! with { Usage = final });
                        live.Output.Writer.TryComplete();
                    }
                }
            }
        }
    }

    /// <summary>Loop thread, under _lock, between steps: drops the policy state of requests that are no longer live
    /// (finished, cancelled, failed) or were just preempted (they restart from position 0), freeing their policy ids.</summary>
    private void ReleasePolicyState(IReadOnlyList<long> preempted)
    {
        List<long>? done = null;
        foreach (var id in _policySeqs.Keys)
            if (!_live.ContainsKey(id) || preempted.Contains(id)) (done ??= new()).Add(id);
        if (done == null) return;
        foreach (var id in done)
        {
            var (spec, seq) = _policySeqs[id];
            _router!.Release(spec, seq);
            _policySeqs.Remove(id);
            _freePolicySeqs.Push(seq);
        }
    }

    /// <summary>Routes slot <paramref name="slot"/> of this step: through the policy store of its request's spec under the
    /// request's policy sequence id (taken on its first step), or straight to the paged store.</summary>
    private void RoutePolicy(PolicyKvRouter router, int slot, long requestId, Live? live)
    {
        if (!_policySeqs.TryGetValue(requestId, out var ps))
        {
            if (live?.Policy is not { } spec) { router.Route(slot, null); return; }
            if (!_freePolicySeqs.TryPop(out int seq))
                throw new InvalidOperationException("no free KV policy sequence id (more policy requests than MaxConcurrentSequences hold state)");
            _policySeqs[requestId] = ps = (spec, seq);
        }
        router.Route(slot, ps.Spec, ps.Seq);
    }

    /// <summary>Runs one plan: copies, bindings, one forward, sampling. Fills results and the list of requests that end.</summary>
    private void Execute(SchedulePlan plan, Live?[] lives, List<StepResult> results, List<(Live, GenerationUsage)> finished)
    {
        if (_recurrent != null) { ExecuteRecurrent(_recurrent, plan, lives, results, finished); return; }
        var kv = _kv!;
        foreach (var move in plan.Moves) kv.MoveBlock(move.SourceBlock, move.DestinationBlock); // before copies: a source may be reused
        foreach (var copy in plan.Copies)
        {
            kv.CopyBlock(copy.SourceBlock, copy.DestinationBlock, copy.TokenCount);
            (_model as TransformerModel)?.Executor?.CopyBlock(copy.SourceBlock, copy.DestinationBlock, copy.TokenCount);   // device KV (GPU)
        }
        int n = plan.TotalTokens, vocab = _model.Config.VocabSize;
        var tokens = new int[n];
        var positions = new int[n];
        var seqs = new int[n];
        var logitRows = new List<int>();
        int at = 0;
        for (int i = 0; i < plan.Requests.Count; i++)
        {
            var r = plan.Requests[i];
            kv.Bind(i, r.BlockTable, r.StartPosition);
            if (_router != null) RoutePolicy(_router, i, r.RequestId, lives[i]);
            for (int t = 0; t < r.TokenCount; t++, at++)
            {
                tokens[at] = r.TokenIds[t];
                positions[at] = r.StartPosition + t;
                seqs[at] = i;
            }
            if (r.SamplesToken) logitRows.Add(at - 1);
            if (lives[i] is { } l)
            {
                if (l.Steps == 0 && r.StartPosition > 0) l.FirstHit = r.StartPosition;
                l.Computed += r.TokenCount;
                l.Steps++;
            }
        }
        if (_logits.Length < logitRows.Count * vocab) _logits = new float[Math.Max(logitRows.Count * vocab, 2 * _logits.Length)];
        _model.Forward(new ForwardBatch(tokens, positions, seqs), (IKvStore?)_router ?? kv, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(logitRows), _logits);

        int row = 0;
        for (int i = 0; i < plan.Requests.Count; i++)
        {
            var r = plan.Requests[i];
            if (!r.SamplesToken) continue;
            var logits = _logits.AsSpan(row++ * vocab, vocab);
            var live = lives[i];
            if (live == null || live.Cancelled) { results.Add(new StepResult(r.RequestId, null, Finished: true)); continue; }
            var (token, usage) = live.OnLogits(logits, _contextLength);
            results.Add(new StepResult(r.RequestId, token, Finished: usage != null));
            if (usage != null) finished.Add((live, usage));
        }
    }

    /// <summary>Runs one plan of a recurrent model: the executor feeds every request's tokens to its state slot in one
    /// forward; sampling and per-request bookkeeping are the same as the paged path.</summary>
    private void ExecuteRecurrent(RecurrentPlanExecutor exec, SchedulePlan plan, Live?[] lives, List<StepResult> results,
        List<(Live, GenerationUsage)> finished)
    {
        var byId = new Dictionary<long, Live?>(plan.Requests.Count);
        for (int i = 0; i < plan.Requests.Count; i++) byId[plan.Requests[i].RequestId] = lives[i];
        var sampled = new Dictionary<long, StepResult>();
        exec.Execute(plan, (id, logits) =>
        {
            var live = byId[id];
            if (live == null || live.Cancelled) { sampled[id] = new StepResult(id, null, Finished: true); return 0; }
            // The state now holds exactly the prompt: checkpoint it so a later prompt extending it restores it.
            if (live.Generated == 0) exec.SaveCheckpoint(id);
            var (token, usage) = live.OnLogits(logits.ToArray(), _contextLength);
            sampled[id] = new StepResult(id, token, Finished: usage != null);
            if (usage != null) finished.Add((live, usage));
            return token ?? 0;
        });
        for (int i = 0; i < plan.Requests.Count; i++)
        {
            var r = plan.Requests[i];
            if (lives[i] is { } l)
            {
                int skip = r.StartPosition == 0 ? exec.ReusedBy(r.RequestId) : 0;
                if (l.Steps == 0) l.FirstHit = skip;
                l.Computed += r.TokenCount - skip;
                l.Steps++;
            }
            if (r.SamplesToken) results.Add(sampled[r.RequestId]);
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        try { _loop.Wait(TimeSpan.FromSeconds(30)); } catch (AggregateException) { }
        lock (_lock)
        {
            foreach (var l in _live.Values) l.Output.Writer.TryComplete(new ObjectDisposedException(nameof(InferenceEngine)));
            _live.Clear();
        }
        _router?.Dispose();
        _kv?.Dispose();
        _wake.Dispose();
        _stop.Dispose();
    }

    /// <summary>One live request: its sampler, detokenizer, stop matcher and output channel (owned by the loop thread).</summary>
    private sealed class Live(int[] prompt, GenerationOptions o, Sampler sampler, IStreamingTextDecoder? decoder,
        StopStringMatcher stops, IReadOnlySet<int> eog)
    {
        public long Id;
        public KvPolicySpec? Policy;
        public int Room, FirstHit, Computed, Steps, Generated;
        public volatile bool Cancelled;
        public readonly Channel<GenerationChunk> Output = Channel.CreateUnbounded<GenerationChunk>(new UnboundedChannelOptions { SingleReader = true });
        public GenerationChunk? FinalChunk;
        private readonly List<int> _history = new(prompt);
        private readonly List<int> _pending = new();
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private TimeSpan _firstToken;

        /// <summary>Samples from the logits of the last fed position; returns the token (null when it ends without
        /// one) and, when the request ends now, its usage (the final chunk is kept in FinalChunk).</summary>
        public (int? Token, GenerationUsage? Usage) OnLogits(Span<float> logits, int contextLength)
        {
            if (Generated >= o.MaxTokens) return (null, End(FinishReason.Length));
            int id = sampler.Sample(logits, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_history));
            if (Generated == 0) _firstToken = _clock.Elapsed;
            if (o.StopAtEndOfGeneration && eog.Contains(id)) return (id, End(FinishReason.Stop));
            Generated++;
            _history.Add(id);
            _pending.Add(id);
            string text = stops.Push(decoder?.Push(id) ?? "");
            if (text.Length > 0 || decoder == null || stops.Stopped)
            {
                Output.Writer.TryWrite(new GenerationChunk(text, _pending.ToArray()));
                _pending.Clear();
            }
            if (stops.Stopped) return (id, End(FinishReason.StopString));
            if (Generated >= o.MaxTokens) return (id, End(FinishReason.Length));
            if (prompt.Length + Generated - 1 >= contextLength || Generated >= Room) return (id, End(FinishReason.ContextFull));
            return (id, null);
        }

        private GenerationUsage End(FinishReason finish)
        {
            string tail = stops.Stopped ? "" : stops.Push(decoder?.Flush() ?? "") + stops.Flush();
            var total = _clock.Elapsed;
            if (Generated == 0) _firstToken = total;
            double decodeSeconds = (total - _firstToken).TotalSeconds;
            int promptComputed = prompt.Length - FirstHit;
            var usage = new GenerationUsage(prompt.Length, Generated, _firstToken, total,
                _firstToken.TotalSeconds > 0 ? promptComputed / _firstToken.TotalSeconds : 0,
                Generated > 1 && decodeSeconds > 0 ? (Generated - 1) / decodeSeconds : 0, finish, FirstHit);
            FinalChunk = new GenerationChunk(tail, _pending.ToArray());
            _pending.Clear();
            return usage;
        }
    }
}
