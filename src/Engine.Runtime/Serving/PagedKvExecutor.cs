// Owns: running scheduler plans of a transformer over a PagedKvStore — applies the plan's disk-tier moves and
// copy-on-write orders, binds every scheduled request to a slot of the store (its block table + computed length), and
// runs ALL scheduled tokens of all requests as ONE ForwardBatch (weights read once per step), asking logits only for the
// rows that sample.
// Disk tier (kvDiskBytes > 0): the store gets that many bytes of blocks in a memory-mapped file (ids after the RAM
// blocks) and the scheduler the same disk block count; a plan's BlockMove orders copy cold blocks there before the
// forward, which then reads them in place. The file is deleted on Dispose.
// KV policies (a PolicyBackend given): the model runs over a PolicyKvRouter on the paged store — each step routes every
// slot either straight to the paged store or through the PolicyKvStore of the request's spec, so policy requests batch
// with plain ones. A request's policy sequence id (stable across steps, unlike its slot) is taken when it is first
// scheduled and its state cleared (Release, under the loop lock before the next step) once it finishes, is cancelled,
// fails or is preempted (recompute restarts it from position 0). Scheduler prefix caching is off then: a policy
// request's K/V rows depend on what its policy kept.
// One pool: an evicting / quantizing policy (PolicyKvRouter.Packs) keeps its float32 rows in the request's own blocks of
// the shared pool, packed to the front of its table (PolicyRowStorage.Slots: the slot is bound over the whole table), and
// after the forward this executor reports the slots it still uses — the most over layers, plus the bytes of its int8 /
// Int4 / selection arenas in slot units (those arenas are the policy store's own; the pool's budget is charged for
// them) — as KeptSlots; the scheduler keeps ceil(KeptSlots / BlockSize) blocks and frees the rest, which other requests
// are admitted into. Full-retention policies (full, quest, msa) keep every row at its position.
using Engine.Memory;
using Engine.Memory.Paged;
using Engine.Memory.Policies;
using Engine.Model;
using Engine.Scheduling;

namespace Engine.Runtime.Serving;

internal sealed class PagedKvExecutor : IStepExecutor
{
    private readonly ILanguageModel _model;
    private readonly PagedKvStore _kv;
    private readonly bool _prefixCaching;
    private readonly PolicyKvRouter? _router;   // KV policies: the store the model sees (over _kv); null = plain _kv
    private readonly Dictionary<long, (KvPolicySpec Spec, int Seq)> _policySeqs = new();   // requests holding policy state
    private readonly Stack<int> _freePolicySeqs = new();
    private readonly List<long> _done = new();
    private KvPolicyUsage? _lastPolicyUsage;
    private float[] _logits = [];
    private int[] _tokens = [], _positions = [], _seqs = [];
    private readonly List<int> _logitRows = new();

    public PagedKvExecutor(ILanguageModel model, int contextLength, long kvBudgetBytes, int blockSize, int maxSequences, bool prefixCaching,
        long kvDiskBytes, string? kvDiskDirectory, PolicyBackend? policyBackend)
    {
        _model = model;
        _kv = NewPaged(model, contextLength, kvBudgetBytes, blockSize, maxSequences, kvDiskBytes, kvDiskDirectory);
        MaxSequences = maxSequences;
        _prefixCaching = prefixCaching && policyBackend == null;
        if (policyBackend != null)
        {
            // the model was built over policyBackend; the router points it at the policy store of each Pages call
            _router = new PolicyKvRouter(_kv, policyBackend, maxSequences, blockSize);
            for (int i = maxSequences - 1; i >= 0; i--) _freePolicySeqs.Push(i);
        }
    }

    private static PagedKvStore NewPaged(ILanguageModel model, int contextLength, long kvBudgetBytes, int blockSize, int maxSequences,
        long kvDiskBytes, string? kvDiskDirectory)
    {
        var c = model.Config;
        int blocks = PagedKvStore.BlockCountForBudget(kvBudgetBytes, c.LayerCount, c.KvDim, blockSize);
        long blockBytes = 2L * c.LayerCount * blockSize * c.KvDim * sizeof(float);
        if (blocks < 1)
            throw new ArgumentException($"the KV budget of {kvBudgetBytes} bytes holds no block of {blockSize} tokens ({blockBytes} bytes)");
        if (kvDiskBytes < 0) throw new ArgumentException($"the KV disk tier size must be ≥ 0 bytes, got {kvDiskBytes}");
        int diskBlocks = kvDiskBytes > 0 ? PagedKvStore.BlockCountForBudget(kvDiskBytes, c.LayerCount, c.KvDim, blockSize) : 0;
        if (kvDiskBytes > 0 && diskBlocks < 1)
            throw new ArgumentException($"the KV disk tier of {kvDiskBytes} bytes holds no block of {blockSize} tokens ({blockBytes} bytes)");
        string? diskPath = diskBlocks > 0 && kvDiskDirectory != null
            ? Path.Combine(kvDiskDirectory, $"engine-kv-{Environment.ProcessId}-{Guid.NewGuid():N}.bin")
            : null;
        return new PagedKvStore(c.LayerCount, c.KvDim, blockSize, blocks, contextLength, maxSequences,
            diskBlockCount: diskBlocks, diskPath: diskPath);
    }

    public int BlockCount => _kv.RamBlockCount;
    public int DiskBlockCount => _kv.DiskBlockCount;
    public int BlockSize => _kv.BlockSize;
    public int MaxSequences { get; }
    public bool SchedulerPrefixCaching => _prefixCaching;
    public int BudgetTokens => _kv.BlockCount * _kv.BlockSize;
    public bool HasPolicies => _router != null;
    public KvPolicyUsage? PolicyUsage => _lastPolicyUsage;

    /// <summary>The KV disk tier's file (null without one); deleted on Dispose.</summary>
    public string? DiskFilePath => _kv.DiskFilePath;

    public void Release(SchedulePlan plan, Func<long, bool> isLive)
    {
        if (_router == null || _policySeqs.Count == 0) return;
        _done.Clear();
        foreach (var id in _policySeqs.Keys)
            if (!isLive(id) || plan.PreemptedIds.Contains(id)) _done.Add(id);
        foreach (var id in _done)
        {
            var (spec, seq) = _policySeqs[id];
            _router.Release(spec, seq);
            _policySeqs.Remove(id);
            _freePolicySeqs.Push(seq);
        }
    }

    public void Finished(long id)
    {
        if (_router != null && _policySeqs.TryGetValue(id, out var ps))
        {
            var store = _router.StoreFor(ps.Spec);
            var u = KvPolicyWiring.Usage(store, ps.Seq);
            if (PolicyKvRouter.Packs(ps.Spec))   // what the pool held for it after its last step: its blocks + own arenas
                u = u with { HeldBytes = PoolBytes(store, ps.Seq) + store.OwnBytes(ps.Seq) };
            _lastPolicyUsage = u;
        }
    }

    /// <summary>Bytes of one slot (one position's K and V, every layer) in the pool.</summary>
    private long SlotBytes => 2L * _kv.LayerCount * _kv.KvDim * sizeof(float);

    /// <summary>Pool bytes the float32 rows of a packing policy request take: the blocks of its most-used layer.</summary>
    private long PoolBytes(PolicyKvStore store, int seq) =>
        (long)((store.SlotsUsed(seq) + _kv.BlockSize - 1) / _kv.BlockSize) * _kv.BytesPerBlock;

    /// <summary>The slots a packing policy request keeps after a step: its float32 rows (the most over layers) plus its own
    /// arenas' bytes (int8 rows, Int4 chunks, selection summaries) in slot units, so the pool's budget counts them too.</summary>
    private int KeptSlots(PolicyKvStore store, int seq) =>
        store.SlotsUsed(seq) + (int)((store.OwnBytes(seq) + SlotBytes - 1) / SlotBytes);

    public void PromptDone(long id) { }

    public Span<float> Forward(SchedulePlan plan, LiveRequest?[] lives, int[] skipped, int[] keptSlots)
    {
        foreach (var move in plan.Moves) _kv.MoveBlock(move.SourceBlock, move.DestinationBlock); // before copies: a source may be reused
        foreach (var copy in plan.Copies)
        {
            _kv.CopyBlock(copy.SourceBlock, copy.DestinationBlock, copy.TokenCount);
            (_model as TransformerModel)?.Executor?.CopyBlock(copy.SourceBlock, copy.DestinationBlock, copy.TokenCount);   // device KV (GPU)
        }
        int n = 0, vocab = _model.Config.VocabSize;
        var requests = plan.Requests;
        for (int i = 0; i < requests.Count; i++) n += requests[i].TokenCount;
        // ForwardBatch takes exact-length arrays: fresh per step (the model may keep no reference past Forward)
        _tokens = new int[n]; _positions = new int[n]; _seqs = new int[n];
        _logitRows.Clear();
        int at = 0;
        for (int i = 0; i < requests.Count; i++)
        {
            var r = requests[i];
            // a packing policy request's slot is bound over its whole table (rows packed in slots, not positions)
            bool packs = _router != null && Route(_router, i, r.RequestId, lives[i]) is { } spec && PolicyKvRouter.Packs(spec);
            _kv.Bind(i, r.BlockTable, packs ? r.BlockTable.Length * _kv.BlockSize : r.StartPosition);
            var ids = r.TokenIds;
            for (int t = 0; t < ids.Length; t++, at++)
            {
                _tokens[at] = ids[t];
                _positions[at] = r.StartPosition + t;
                _seqs[at] = i;
            }
            if (r.SamplesToken) _logitRows.Add(at - 1);
            skipped[i] = 0;
        }
        if (_logits.Length < _logitRows.Count * vocab) _logits = new float[Math.Max(_logitRows.Count * vocab, 2 * _logits.Length)];
        var batch = new ForwardBatch(_tokens, _positions, _seqs);
        _model.Forward(batch, (IKvStore?)_router ?? _kv, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_logitRows), _logits);
        if (_router != null)
            for (int i = 0; i < requests.Count; i++)
                if (_policySeqs.TryGetValue(requests[i].RequestId, out var ps) && PolicyKvRouter.Packs(ps.Spec))
                    keptSlots[i] = KeptSlots(_router.StoreFor(ps.Spec), ps.Seq);
        return _logits.AsSpan(0, _logitRows.Count * vocab);
    }

    /// <summary>Routes slot <paramref name="slot"/> of this step: through the policy store of its request's spec under the
    /// request's policy sequence id (taken on its first step), or straight to the paged store. Returns the request's policy.</summary>
    private KvPolicySpec? Route(PolicyKvRouter router, int slot, long requestId, LiveRequest? live)
    {
        if (!_policySeqs.TryGetValue(requestId, out var ps))
        {
            if (live?.Policy is not { } spec) { router.Route(slot, null); return null; }
            if (!_freePolicySeqs.TryPop(out int seq))
                throw new InvalidOperationException("no free KV policy sequence id (more policy requests than MaxConcurrentSequences hold state)");
            _policySeqs[requestId] = ps = (spec, seq);
        }
        router.Route(slot, ps.Spec, ps.Seq);
        return ps.Spec;
    }

    public void Dispose()
    {
        _router?.Dispose();
        _kv.Dispose();
    }
}
