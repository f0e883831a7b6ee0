// Owns: continuous-batching bookkeeping — which tokens of which requests run each step, admission, chunked
// prefill, preemption by recompute, prefix-cache reuse at admission, and freeing blocks of finished/cancelled
// requests. Emits data-only SchedulePlans; never touches tensors.
// Model (vLLM v1 scheduler): "there is no prefill phase nor decode phase". Each request has a token list
// (prompt + generated) and a computed-token count that catches up to it; a step gives each scheduled request a
// range [computed, computed + n). Order per step: running requests with one token left (decodes) first, then
// running requests with more left (prefill chunks), then waiting requests (FIFO by priority) while the token
// budget, the running cap and the pool allow. When the pool runs dry the least important running request
// (lowest priority, latest arrival) is preempted by recompute: its blocks are freed and it re-queues with its
// generated tokens kept in its token list, so it resumes exactly (its cached full blocks often come back as
// prefix hits).
// Disk tier (SchedulerOptions.DiskBlockCount > 0): when a reservation needs more RAM blocks than are free, the
// scheduler first offloads instead of preempting — unreferenced cached prefix blocks move to free disk blocks (kept
// for later hits instead of evicted), then cold full blocks of running requests (least important request first,
// lowest position first; outside each one's last RecentWindowBlocks full blocks and its first block; then, if still
// short, any full computed block) move to the disk tier, evicting cached disk blocks when it is full. The plan carries
// these as BlockMove orders (applied before Copies and the forward); block tables name the disk ids from then on and
// attention reads those blocks in place. Admissions offload the same way (so a disk tier keeps the batch as wide as
// an unconstrained pool would), and a prefill chunk or first chunk shrinks to what RAM can hold rather than
// preempting or waiting. Blocks never come back to RAM: a disk block is read in place until its sequence frees it
// (a cached one may be hit by a later prefix and is then read in place too). Preemption happens only when nothing
// can move (disk full of referenced blocks, or RAM held by partial blocks and this step's new blocks). A block is
// offloaded only when it lies wholly below its sequence's computed count, which does not change during Step: so no
// block the step writes (new, partial, copy-on-write) ever moves.
// Packing KV policies (StepResult.KeptSlots): the executor may report that a request's policy keeps its rows packed in
// the first KeptSlots slots of its table; the table then keeps only their blocks (the rest return to the pool at once,
// for the next admission), later reservations append after those slots, and the request is marked Packed (slots ≠
// positions: never committed to the prefix cache, never offloaded — its policy rewrites its blocks when it compacts).
// Admission still checks a request's full length against the pool (a policy's saving is not known in advance).
// Invariants: a request that fits the pool and the context alone is never dropped (the most important running
// request can always get blocks by preempting everyone else); Step and OnStepCompleted alternate; computed
// counts advance only in OnStepCompleted; waiting requests hold no blocks; finished and cancelled requests free
// their blocks immediately; no waiting request is admitted in a step that had to preempt (avoids thrashing).
// Not thread-safe: the runtime's step loop owns it (serialise AddRequest/Cancel from other threads with a lock).
using System.Runtime.InteropServices;
using Engine.Memory.Paged;

namespace Engine.Scheduling;

/// <summary>Continuous-batching scheduler over a paged KV block pool (pure bookkeeping).</summary>
public sealed class Scheduler
{
    private sealed class State(Request request, long arrival)
    {
        public readonly Request Request = request;
        public readonly long Arrival = arrival;
        public readonly List<int> Tokens = new(request.PromptArray); // prompt + generated
        public RequestStatus Status = RequestStatus.Waiting;
        public FinishReason FinishReason;
        public int OutputCount, Computed, PrefixHitTokens, Preemptions;
        public bool Packed; // its KV policy packs kept rows into the front of its table (StepResult.KeptSlots): slots ≠ positions
        public Entry? Entry; // set while the step being built schedules this request
        public long Id => Request.Id;
    }

    private sealed class Entry(State state, int start, int count, List<int> newBlocks, List<BlockCopy> copies)
    {
        public readonly State State = state;
        public readonly int Start = start, Count = count;
        public readonly List<int> NewBlocks = newBlocks;
        public readonly List<BlockCopy> Copies = copies;
        public bool Samples => Start + Count == State.Tokens.Count;
    }

    /// <summary>More important first: larger priority, then earlier arrival.</summary>
    private static readonly Comparer<State> Importance = Comparer<State>.Create((a, b) =>
    {
        int c = b.Request.Priority.CompareTo(a.Request.Priority);
        return c != 0 ? c : a.Arrival.CompareTo(b.Arrival);
    });

    private readonly SchedulerOptions _options;
    private readonly BlockManager _blocks;
    private readonly Dictionary<long, State> _states = new();
    private readonly SortedSet<State> _waiting = new(Importance);
    private readonly List<State> _running = new();
    private readonly List<long> _pendingFinished = new(), _pendingCancelled = new();
    private List<Entry>? _inFlight;
    private long _arrivals, _steps, _computedTokens, _prefixHitTokens, _preemptions, _finished, _cancelled, _rejected;

    public Scheduler(SchedulerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.BlockCount < 1) throw new ArgumentOutOfRangeException(nameof(options), options.BlockCount, "BlockCount must be ≥ 1");
        if (options.BlockSize < 1) throw new ArgumentOutOfRangeException(nameof(options), options.BlockSize, "BlockSize must be ≥ 1");
        if (options.MaxTokensPerStep < 1) throw new ArgumentOutOfRangeException(nameof(options), options.MaxTokensPerStep, "MaxTokensPerStep must be ≥ 1");
        if (options.MaxRunningRequests < 1) throw new ArgumentOutOfRangeException(nameof(options), options.MaxRunningRequests, "MaxRunningRequests must be ≥ 1");
        if (options.MaxModelLength < 2) throw new ArgumentOutOfRangeException(nameof(options), options.MaxModelLength, "MaxModelLength must be ≥ 2");
        if (options.DiskBlockCount < 0) throw new ArgumentOutOfRangeException(nameof(options), options.DiskBlockCount, "DiskBlockCount must be ≥ 0");
        if (options.RecentWindowBlocks < 0) throw new ArgumentOutOfRangeException(nameof(options), options.RecentWindowBlocks, "RecentWindowBlocks must be ≥ 0");
        _options = options;
        _blocks = new BlockManager(new BlockPool(options.BlockCount, options.BlockSize, options.HashFunction, options.DiskBlockCount));
    }

    public SchedulerOptions Options => _options;
    public BlockPool Pool => _blocks.Pool;
    public BlockManager Blocks => _blocks;
    public int WaitingCount => _waiting.Count;
    public int RunningCount => _running.Count;
    public bool HasUnfinishedRequests => _waiting.Count > 0 || _running.Count > 0;
    public bool IsStepInFlight => _inFlight != null;

    public SchedulerStats Stats => new(_steps, _computedTokens, _prefixHitTokens, _preemptions, _finished, _cancelled, _rejected,
        _blocks.Pool.MovesToDisk);

    /// <summary>
    /// Queues a request; it joins the batch at the next <see cref="Step"/> that has room. Throws
    /// <see cref="RequestRejectedException"/> (and changes nothing) for a request that could never run.
    /// </summary>
    public void AddRequest(Request request)
    {
        if (!TryAddRequest(request, out var error)) throw error!;
    }

    /// <summary>Like <see cref="AddRequest"/> but returns the rejection instead of throwing it.</summary>
    public bool TryAddRequest(Request request, out RequestRejectedException? rejection)
    {
        ArgumentNullException.ThrowIfNull(request);
        rejection = Check(request);
        if (rejection != null)
        {
            _rejected++;
            return false;
        }
        var state = new State(request, _arrivals++);
        _states.Add(request.Id, state);
        _waiting.Add(state);
        return true;
    }

    private RequestRejectedException? Check(Request r)
    {
        if (r.PromptLength == 0) return new(r.Id, RejectionReason.EmptyPrompt, "the prompt is empty");
        if (r.MaxNewTokens < 1) return new(r.Id, RejectionReason.InvalidMaxNewTokens, $"MaxNewTokens is {r.MaxNewTokens}; it must be ≥ 1");
        if (_states.ContainsKey(r.Id)) return new(r.Id, RejectionReason.DuplicateId, "a request with this id is already known (Forget it first)");
        long total = (long)r.PromptLength + r.MaxNewTokens;
        if (total > _options.MaxModelLength)
            return new(r.Id, RejectionReason.ExceedsContextLength,
                $"prompt {r.PromptLength} + max new tokens {r.MaxNewTokens} = {total} exceeds the context length {_options.MaxModelLength}");
        // The last generated token is never fed back, so at most total - 1 positions need KV slots.
        long blocks = (total - 1 + _options.BlockSize - 1) / _options.BlockSize;
        long pool = (long)_options.BlockCount + _options.DiskBlockCount;
        if (blocks > pool)
            return new(r.Id, RejectionReason.ExceedsPool,
                $"it needs up to {blocks} KV blocks of {_options.BlockSize} tokens but the pool holds {pool}" +
                (_options.DiskBlockCount > 0 ? $" ({_options.BlockCount} in RAM + {_options.DiskBlockCount} on disk)" : ""));
        return null;
    }

    /// <summary>
    /// Cancels a waiting or running request; a running one frees its blocks at once (if it is part of the step in
    /// flight, its result is ignored). Returns false when the id is unknown or already finished/cancelled.
    /// </summary>
    public bool Cancel(long requestId)
    {
        if (!_states.TryGetValue(requestId, out var r)) return false;
        switch (r.Status)
        {
            case RequestStatus.Waiting: _waiting.Remove(r); break;
            case RequestStatus.Running: _blocks.Free(r.Id); _running.Remove(r); break;
            default: return false;
        }
        r.Status = RequestStatus.Cancelled;
        _pendingCancelled.Add(r.Id);
        _cancelled++;
        return true;
    }

    /// <summary>
    /// Branches a waiting or running request (n-best, parallel sampling): the child continues from the parent's
    /// current tokens (prompt + generated so far) with the parent's limits. A running parent's KV blocks are shared,
    /// not copied; the first write into the shared partial last block becomes a copy-on-write order in a plan.
    /// When the running cap is reached (or the parent waits) the child waits and recomputes (prefix hits usually
    /// make that cheap). Not allowed while a step is in flight. Throws <see cref="RequestRejectedException"/>
    /// (DuplicateId) when <paramref name="childId"/> is taken.
    /// </summary>
    public void Fork(long parentId, long childId, int? priority = null)
    {
        if (_inFlight != null) throw new InvalidOperationException("Fork is not allowed while a step is in flight");
        if (!_states.TryGetValue(parentId, out var parent) || parent.Status is not (RequestStatus.Waiting or RequestStatus.Running))
            throw new InvalidOperationException($"request {parentId} is not waiting or running; only a live request can be forked");
        if (_states.ContainsKey(childId))
        {
            _rejected++;
            throw new RequestRejectedException(childId, RejectionReason.DuplicateId, "a request with this id is already known (Forget it first)");
        }
        var p = parent.Request;
        var child = new State(new Request(childId, p.PromptArray, p.MaxNewTokens, priority ?? p.Priority, p.StopTokenIds), _arrivals++);
        child.Tokens.Clear();
        child.Tokens.AddRange(parent.Tokens);
        child.OutputCount = parent.OutputCount;
        _states.Add(childId, child);
        if (parent.Status == RequestStatus.Running && _running.Count < _options.MaxRunningRequests)
        {
            _blocks.Fork(parentId, childId);
            child.Computed = parent.Computed;
            child.Status = RequestStatus.Running;
            _running.Add(child);
        }
        else
        {
            _waiting.Add(child);
        }
    }

    /// <summary>Drops a finished or cancelled request's record (its id may then be reused). Returns false otherwise.</summary>
    public bool Forget(long requestId)
    {
        if (!_states.TryGetValue(requestId, out var r) || r.Status is RequestStatus.Waiting or RequestStatus.Running) return false;
        return _states.Remove(requestId);
    }

    public bool TryGetRequest(long requestId, out RequestSnapshot? snapshot)
    {
        snapshot = null;
        if (!_states.TryGetValue(requestId, out var r)) return false;
        snapshot = new RequestSnapshot(r.Id, r.Status, r.FinishReason,
            r.Tokens.GetRange(r.Request.PromptLength, r.OutputCount).ToArray(),
            r.Computed, r.Tokens.Count, r.PrefixHitTokens, r.Preemptions);
        return true;
    }

    public RequestSnapshot GetRequest(long requestId) =>
        TryGetRequest(requestId, out var s) ? s! : throw new KeyNotFoundException($"unknown request {requestId}");

    /// <summary>
    /// Plans the next step. Must be followed by <see cref="OnStepCompleted"/> before the next Step when the plan
    /// schedules any request (an empty plan needs no completion).
    /// </summary>
    public SchedulePlan Step()
    {
        if (_inFlight != null) throw new InvalidOperationException($"Step called before OnStepCompleted for step {_steps - 1}");
        var entries = new List<Entry>();
        var preempted = new List<long>();
        var moves = new List<BlockMove>();
        int budget = _options.MaxTokensPerStep;
        _running.Sort(Importance);

        // Running requests: decodes (one token left) first, then prefill chunks, most important first.
        for (int pass = 0; pass < 2; pass++)
        {
            for (int i = 0; i < _running.Count && budget > 0; i++)
            {
                var r = _running[i];
                int remaining = r.Tokens.Count - r.Computed;
                if (r.Entry != null || remaining <= 0 || (remaining == 1) != (pass == 0)) continue;
                int n = Math.Min(remaining, budget), got;
                var newBlocks = new List<int>();
                var copies = new List<BlockCopy>();
                bool reserved;
                while (!(reserved = (got = Reserve(r, n, newBlocks, copies, moves)) > 0))
                {
                    var victim = _running[^1]; // least important (the list is sorted)
                    if (victim.Entry != null)
                    {
                        budget += victim.Entry.Count;
                        entries.Remove(victim.Entry);
                        victim.Entry = null;
                    }
                    Preempt(victim, preempted);
                    if (victim == r) break;
                }
                if (!reserved) break; // r itself was the least important; nothing after it remains
                r.Entry = new Entry(r, r.Computed, got, newBlocks, copies);
                entries.Add(r.Entry);
                budget -= got;
            }
        }

        // Waiting requests, FIFO by priority; none are admitted in a step that had to preempt.
        while (preempted.Count == 0 && budget > 0 && _running.Count < _options.MaxRunningRequests && _waiting.Count > 0)
        {
            var r = _waiting.Min!;
            _blocks.Create(r.Id);
            var tokens = CollectionsMarshal.AsSpan(r.Tokens);
            int hit = _options.EnablePrefixCaching ? _blocks.MatchPrefix(r.Id, tokens[..^1]) : 0;
            int n = Math.Min(r.Tokens.Count - hit, budget);
            var newBlocks = new List<int>();
            var copies = new List<BlockCopy>();
            if ((n = Reserve(r, n, newBlocks, copies, moves)) == 0)
            {
                _blocks.Free(r.Id); // head of line waits for memory
                break;
            }
            _waiting.Remove(r);
            r.Status = RequestStatus.Running;
            r.Computed = hit;
            r.PrefixHitTokens += hit;
            _prefixHitTokens += hit;
            _running.Add(r);
            r.Entry = new Entry(r, hit, n, newBlocks, copies);
            entries.Add(r.Entry);
            budget -= n;
        }

        var scheduled = new ScheduledRequest[entries.Count];
        var allCopies = new List<BlockCopy>();
        for (int i = 0; i < entries.Count; i++)
        {
            var e = entries[i];
            e.State.Entry = null;
            scheduled[i] = new ScheduledRequest(e.State.Id, e.Start, e.State.Tokens.GetRange(e.Start, e.Count).ToArray(),
                _blocks.Get(e.State.Id).ToArray(), e.NewBlocks.ToArray(), e.Copies.ToArray(), e.Samples);
            allCopies.AddRange(e.Copies);
        }
        var plan = new SchedulePlan(_steps, scheduled, allCopies, preempted,
            _pendingFinished.ToArray(), _pendingCancelled.ToArray()) { Moves = moves.ToArray() };
        _pendingFinished.Clear();
        _pendingCancelled.Clear();
        _steps++;
        _inFlight = entries.Count > 0 ? entries : null;
        return plan;
    }

    /// <summary>
    /// Applies the executor's results for the step in flight: advances computed counts, commits full blocks to the
    /// prefix cache, appends sampled tokens and finishes requests (stop token, length, or <see cref="StepResult.Finished"/>),
    /// freeing their blocks at once. Every scheduled request with SamplesToken needs a result with a token (or
    /// Finished); results for requests cancelled meanwhile are ignored. On a malformed result list nothing changes.
    /// </summary>
    public void OnStepCompleted(IReadOnlyList<StepResult> results)
    {
        ArgumentNullException.ThrowIfNull(results);
        if (_inFlight == null)
        {
            if (results.Count == 0) return;
            throw new InvalidOperationException("OnStepCompleted with results but no step is in flight");
        }
        var byId = new Dictionary<long, StepResult>(results.Count);
        var inPlan = new HashSet<long>(_inFlight.Select(e => e.State.Id));
        foreach (var res in results)
        {
            if (!inPlan.Contains(res.RequestId))
                throw new ArgumentException($"result for request {res.RequestId}, which is not part of step {_steps - 1}", nameof(results));
            if (!byId.TryAdd(res.RequestId, res))
                throw new ArgumentException($"two results for request {res.RequestId}", nameof(results));
        }
        foreach (var e in _inFlight)
        {
            if (e.State.Status != RequestStatus.Running || !e.Samples) continue;
            if (!byId.TryGetValue(e.State.Id, out var res) || (res.SampledToken is null && !res.Finished))
                throw new ArgumentException($"request {e.State.Id} reached its last position in step {_steps - 1} but no sampled token was reported", nameof(results));
        }

        var entries = _inFlight;
        _inFlight = null;
        foreach (var e in entries)
        {
            var r = e.State;
            if (r.Status != RequestStatus.Running) continue; // cancelled while in flight
            r.Computed = e.Start + e.Count;
            _computedTokens += e.Count;
            bool reported = byId.TryGetValue(r.Id, out var res);
            if (reported && res.KeptSlots >= 0)
            {
                // a packing KV policy keeps KeptSlots slots: the table keeps their blocks, the rest goes back to the pool.
                // Its float32 rows always lie within the reservation; a charge for its own (quantized) arenas above the
                // reservation is capped here and catches up as later reservations grow the table.
                _blocks.Shrink(r.Id, Math.Min(res.KeptSlots, _blocks.Get(r.Id).TokenCount));
                r.Packed = true;
            }
            if (_options.EnablePrefixCaching && !r.Packed) _blocks.Commit(r.Id, CollectionsMarshal.AsSpan(r.Tokens), r.Computed);
            var reason = FinishReason.None;
            if (e.Samples && res.SampledToken is int token)
            {
                r.Tokens.Add(token);
                r.OutputCount++;
                if (r.Request.IsStop(token)) reason = FinishReason.Stop;
                else if (r.OutputCount >= r.Request.MaxNewTokens || r.Tokens.Count >= _options.MaxModelLength) reason = FinishReason.Length;
            }
            if (reason == FinishReason.None && res.Finished) reason = FinishReason.External;
            if (reason != FinishReason.None) Finish(r, reason);
        }
    }

    /// <summary>Checks the block manager's invariants, that every running request's table matches its computed count,
    /// and that no block at or after a request's computed count (one a step writes) is on the disk tier.</summary>
    public void Validate()
    {
        _blocks.Validate();
        foreach (var r in _running)
        {
            var table = _blocks.Get(r.Id);
            if (_inFlight == null && (r.Packed ? table.TokenCount > r.Computed : table.TokenCount != r.Computed))
                throw new InvalidOperationException($"request {r.Id}: table has {table.TokenCount} slots, computed {r.Computed}");
            if (r.Packed) continue;   // slots are not positions; its blocks are never offloaded
            for (int k = r.Computed / _options.BlockSize; k < table.Blocks.Count; k++)
                if (_blocks.Pool.IsOnDisk(table.Blocks[k]))
                    throw new InvalidOperationException($"request {r.Id}: block {k} (id {table.Blocks[k]}) is written by a step but lies on the disk tier");
        }
        foreach (var r in _waiting)
            if (_blocks.Contains(r.Id)) throw new InvalidOperationException($"waiting request {r.Id} holds blocks");
        if (_blocks.SequenceCount != _running.Count)
            throw new InvalidOperationException($"{_blocks.SequenceCount} block tables for {_running.Count} running requests");
    }

    /// <summary>
    /// Reserves up to <paramref name="want"/> slots for <paramref name="r"/> and returns how many it got (0 = none,
    /// table unchanged). Without a disk tier: all or nothing (BlockManager.TryReserve). With one: when the free RAM
    /// blocks do not cover the reservation, cold blocks are offloaded first (<see cref="MakeRoom"/>; moves appended to
    /// <paramref name="moves"/> even when the reservation then fails — they are valid on their own), and the count
    /// shrinks to what RAM then holds.
    /// </summary>
    private int Reserve(State r, int want, List<int> newBlocks, List<BlockCopy> copies, List<BlockMove> moves)
    {
        if (_options.DiskBlockCount == 0) return _blocks.TryReserve(r.Id, want, newBlocks, copies) ? want : 0;
        int need = _blocks.BlocksNeeded(r.Id, want);
        if (need > _blocks.Pool.RamFreeCount) MakeRoom(need, moves);
        int n = want;
        if (need > _blocks.Pool.AvailableCount)
        {
            // Largest count whose blocks fit the RAM available now (BlocksNeeded grows with the count).
            int lo = 0, hi = want - 1;
            while (lo < hi)
            {
                int mid = (lo + hi + 1) / 2;
                if (_blocks.BlocksNeeded(r.Id, mid) <= _blocks.Pool.AvailableCount) lo = mid; else hi = mid - 1;
            }
            n = lo;
        }
        if (n == 0) return 0;
        if (!_blocks.TryReserve(r.Id, n, newBlocks, copies)) throw new InvalidOperationException($"request {r.Id}: reservation of {n} slots failed after sizing");
        return n;
    }

    /// <summary>
    /// Frees RAM (disk tier only) until <paramref name="need"/> blocks are available or nothing more can move:
    /// unreferenced cached RAM blocks move to free disk blocks first (kept for prefix hits rather than evicted), then
    /// full computed blocks of running requests, least important request first, lowest position first — first the
    /// cold ones (outside the last RecentWindowBlocks full blocks and the first block), then any. Blocks wholly below a
    /// request's computed count are never written by this step.
    /// </summary>
    private void MakeRoom(int need, List<BlockMove> moves)
    {
        var pool = _blocks.Pool;
        int shortfall = need - pool.RamFreeCount;
        while (shortfall > 0 && pool.LeastRecentCachedRamBlock >= 0 && pool.DiskFreeCount > 0)
        {
            if (!_blocks.TryMoveToDisk(pool.LeastRecentCachedRamBlock, out var m)) break;
            moves.Add(m);
            shortfall--;
        }
        int b = _options.BlockSize, window = _options.RecentWindowBlocks, first = _options.KeepFirstBlockInRam ? 1 : 0;
        for (int pass = 0; pass < 2; pass++)
            for (int i = _running.Count - 1; i >= 0; i--)
            {
                var q = _running[i];
                if (q.Packed) continue;   // its policy rewrites its blocks (compaction): they stay in RAM
                var blocks = _blocks.Get(q.Id).Blocks;
                int full = q.Computed / b;
                int lo = pass == 0 ? first : 0, hi = pass == 0 ? full - window : full;
                for (int k = lo; k < hi; k++)
                {
                    if (need <= pool.AvailableCount) return;
                    if (pool.IsOnDisk(blocks[k])) continue;
                    if (!_blocks.TryMoveToDisk(blocks[k], out var m)) return; // the disk tier is full of referenced blocks
                    moves.Add(m);
                }
            }
    }

    private void Preempt(State r, List<long> preempted)
    {
        _blocks.Free(r.Id);
        _running.Remove(r);
        r.Computed = 0;
        r.Packed = false;
        r.Status = RequestStatus.Waiting;
        r.Preemptions++;
        _waiting.Add(r);
        preempted.Add(r.Id);
        _preemptions++;
    }

    private void Finish(State r, FinishReason reason)
    {
        _blocks.Free(r.Id);
        _running.Remove(r);
        r.Status = RequestStatus.Finished;
        r.FinishReason = reason;
        _pendingFinished.Add(r.Id);
        _finished++;
    }
}
