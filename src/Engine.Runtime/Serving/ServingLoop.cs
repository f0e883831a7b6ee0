// Owns: THE step loop of every engine configuration — one background task that, while requests are live, asks the
// Scheduler for a plan, hands it to the engine's executor (IStepExecutor: PagedKvExecutor for paged KV,
// RecurrentPlanExecutor for recurrent state, ContiguousKvExecutor as the adapter for a single-sequence store), which
// runs ALL scheduled tokens of the step as one forward, then samples for the requests whose SamplesToken is set through
// LiveRequest.OnLogits (sample → EOS / stop strings / max tokens / full context → usage: the only copy of that logic)
// and reports StepResults. A single request is a batch of one in this same loop.
// Invariants: the Scheduler is touched only under _lock (it is not thread-safe); the forward runs outside the lock so
// AddRequest/Cancel never wait for a step; a cancelled request's blocks are freed at once by Scheduler.Cancel (the step
// in flight may still write into them, but nothing else can take them before the next Step, which runs after it);
// the loop sleeps on a semaphore when no request is live (no busy-spinning); a failed forward fails only the requests
// of that step.
// Dispose: marks the loop disposed under _lock (a request arriving later fails with ObjectDisposedException), stops the
// loop and waits for it with no time limit — a forward in flight finishes before any memory is freed — then ends every
// live request with ObjectDisposedException and only then disposes the executor (its KV / state memory). So disposal
// never touches freed memory and never leaves a request pending, on every configuration.
// Source: vLLM v1 engine core loop (schedule → execute → update), reduced to one in-process CPU executor.
using Engine.Memory.Policies;
using Engine.Model;
using Engine.Runtime.Sampling;
using Engine.Scheduling;

namespace Engine.Runtime.Serving;

internal sealed class ServingLoop : IDisposable
{
    private readonly IStepExecutor _exec;
    private readonly Scheduler _scheduler;
    private readonly ITextTokenizer? _tokenizer;
    private readonly int _contextLength, _vocab;
    private readonly object _lock = new();
    private readonly Dictionary<long, LiveRequest> _live = new();
    // Not disposed: neither allocates a wait handle, and a cancellation callback may still Release after Dispose.
    private readonly SemaphoreSlim _wake = new(0, int.MaxValue);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private long _nextId = 1, _tokensScheduled, _emptySteps;
    private int _lastStepTokens;
    private int _maxRequestsPerStep;
    private bool _disposed;   // under _lock
    private volatile TaskCompletionSource? _hold;   // non-null: the loop waits before its next step (Pause)
    private volatile TaskCompletionSource? _holdNext;   // non-null: becomes _hold once the loop completes a step (PauseAfterNextStep)

    /// <param name="executor">The executor of the engine's memory kind (owned: disposed after the loop has stopped).</param>
    public ServingLoop(IStepExecutor executor, int vocabSize, ITextTokenizer? tokenizer, int contextLength, int maxTokensPerStep)
    {
        _exec = executor; _tokenizer = tokenizer; _contextLength = contextLength; _vocab = vocabSize;
        _scheduler = new Scheduler(new SchedulerOptions
        {
            BlockCount = executor.BlockCount, DiskBlockCount = executor.DiskBlockCount, BlockSize = executor.BlockSize,
            MaxRunningRequests = executor.MaxSequences,
            MaxTokensPerStep = Math.Max(1, maxTokensPerStep),
            // The last sampled token is never fed back: a context of C positions holds C + 1 tokens.
            MaxModelLength = contextLength + 1,
            EnablePrefixCaching = executor.SchedulerPrefixCaching,
        });
        _loop = Task.Factory.StartNew(Loop, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();
    }

    /// <summary>The executor (its memory kind decides what the engine reports).</summary>
    public IStepExecutor Executor => _exec;

    /// <summary>Token positions the memory holds in all (paged: BlockCount · BlockSize; otherwise the context length).</summary>
    public int BudgetTokens => _exec.BudgetTokens;

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

    /// <summary>Tests: called on the loop thread under the lock after every completed step, with the scheduler (block
    /// tables of the running requests, the pool).</summary>
    internal Action<Scheduler>? AfterStep { get; set; }

    /// <summary>Checks the block pool's and scheduler's invariants (tests).</summary>
    public void Validate() { lock (_lock) _scheduler.Validate(); }

    /// <summary>Evicts every unreferenced cached block (tests: "the pool is completely free afterwards").</summary>
    public int EvictCachedBlocks() { lock (_lock) return _scheduler.Pool.EvictAllCached(); }

    /// <summary>Streams one request through the loop. The prompt was validated by the caller.</summary>
    /// <param name="policy">The request's KV policy (null = none); the executor must support it.</param>
    public async IAsyncEnumerable<GenerationChunk> Run(int[] prompt, GenerationOptions o, bool atTextStart,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct, KvPolicySpec? policy = null)
    {
        ct.ThrowIfCancellationRequested();
        var live = new LiveRequest(prompt, o, new Sampler(o.Sampling, _vocab), _tokenizer?.CreateStreamingDecoder(atTextStart),
            new StopStringMatcher(o.StopStrings), _tokenizer?.EndOfGenerationIds ?? new HashSet<int>()) { Policy = policy };
        // Room for generated tokens: the context holds C positions (C + 1 tokens), the pool BudgetTokens positions.
        int room = Math.Min(_contextLength, BudgetTokens) + 1 - prompt.Length;
        int maxNew = Math.Max(1, Math.Min(o.MaxTokens, room));
        live.Room = room;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, typeof(InferenceEngine));
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

    /// <summary>Like <see cref="Pause"/>, but the hold starts only after the loop completes its next non-empty step: a test
    /// arms it, starts a request, and catches that request mid-stream after its first step however fast the model is.</summary>
    public IDisposable PauseAfterNextStep()
    {
        var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (_hold != null || Interlocked.CompareExchange(ref _holdNext, tcs, null) != null) throw new InvalidOperationException("the serving loop is already paused");
        return new Resume(this, tcs);
    }

    private sealed class Resume(ServingLoop loop, TaskCompletionSource tcs) : IDisposable
    {
        public void Dispose()
        {
            Interlocked.CompareExchange(ref loop._holdNext, null, tcs);
            if (Interlocked.CompareExchange(ref loop._hold, null, tcs) == tcs) tcs.TrySetResult();
        }
    }

    private void CancelRequest(long id)
    {
        lock (_lock)
        {
            if (!_live.Remove(id, out var live)) return;
            live.Cancelled = true;
            if (!_disposed)
            {
                _scheduler.Cancel(id);
                _scheduler.Forget(id);
            }
            live.Output.Writer.TryComplete(new OperationCanceledException("the request was cancelled"));
        }
        _wake.Release();
    }

    private async Task Loop()
    {
        var results = new List<StepResult>();
        var finishedNow = new List<(LiveRequest Live, GenerationUsage Usage)>();
        Func<long, bool> isLive = _live.ContainsKey;
        LiveRequest?[] lives = [];
        int[] skipped = [], kept = [];
        bool stepped = false;
        while (!_stop.IsCancellationRequested)
        {
            if (stepped && _holdNext is { } next && Interlocked.CompareExchange(ref _holdNext, null, next) == next)
                Interlocked.CompareExchange(ref _hold, next, null);
            stepped = false;
            if (_hold is { } hold)
            {
                try { await hold.Task.WaitAsync(_stop.Token).ConfigureAwait(false); }
                catch (OperationCanceledException) { break; }
            }
            SchedulePlan plan;
            int count;
            lock (_lock)
            {
                plan = _scheduler.Step();
                if (plan.IsEmpty) _emptySteps++;
                _exec.Release(plan, isLive);
                count = plan.Requests.Count;
                if (lives.Length < count) { lives = new LiveRequest?[count]; skipped = new int[count]; kept = new int[count]; }
                for (int i = 0; i < count; i++) lives[i] = _live.GetValueOrDefault(plan.Requests[i].RequestId);
            }
            if (plan.IsEmpty)
            {
                try { await _wake.WaitAsync(_stop.Token).ConfigureAwait(false); }
                catch (OperationCanceledException) { break; }
                continue;
            }

            results.Clear();
            finishedNow.Clear();
            stepped = true;
            Exception? failure = null;
            try
            {
                Execute(plan, lives, skipped, kept, results, finishedNow);
            }
            catch (Exception e)
            {
                failure = e;
            }
            Array.Clear(lives, 0, count);
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
                    AfterStep?.Invoke(_scheduler);
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
                        _exec.Finished(live.Id);
                        live.Output.Writer.TryWrite(live.FinalChunk! with { Usage = final });
                        live.Output.Writer.TryComplete();
                    }
                }
            }
        }
    }

    /// <summary>Runs one plan on the executor, then samples every request that samples this step: fills results and
    /// the list of requests that end.</summary>
    private void Execute(SchedulePlan plan, LiveRequest?[] lives, int[] skipped, int[] kept, List<StepResult> results,
        List<(LiveRequest, GenerationUsage)> finished)
    {
        Array.Fill(kept, -1, 0, plan.Requests.Count);
        var logits = _exec.Forward(plan, lives, skipped, kept);
        int row = 0;
        for (int i = 0; i < plan.Requests.Count; i++)
        {
            var r = plan.Requests[i];
            if (lives[i] is { } l)
            {
                if (l.Steps == 0) l.FirstHit = r.StartPosition + skipped[i];   // prefix-cache hit or restored prefix
                l.Computed += r.TokenCount - skipped[i];
                l.Steps++;
            }
            if (!r.SamplesToken)   // a prefill chunk: nothing to report but the slots a packing KV policy kept
            {
                if (kept[i] >= 0) results.Add(new StepResult(r.RequestId, null, KeptSlots: kept[i]));
                continue;
            }
            var rowLogits = logits.Slice(row++ * _vocab, _vocab);
            var live = lives[i];
            if (live == null || live.Cancelled) { results.Add(new StepResult(r.RequestId, null, Finished: true, KeptSlots: kept[i])); continue; }
            if (live.Generated == 0) _exec.PromptDone(r.RequestId);
            var (token, usage) = live.OnLogits(rowLogits, _contextLength);
            results.Add(new StepResult(r.RequestId, token, Finished: usage != null, KeptSlots: kept[i]));
            if (usage != null) finished.Add((live, usage));
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
        }
        _stop.Cancel();
        // No time limit: a forward in flight must return before the executor's memory is freed.
        try { _loop.Wait(); } catch (AggregateException) { }
        lock (_lock)
        {
            foreach (var l in _live.Values) l.Output.Writer.TryComplete(new ObjectDisposedException(nameof(InferenceEngine)));
            _live.Clear();
        }
        _exec.Dispose();
    }
}
