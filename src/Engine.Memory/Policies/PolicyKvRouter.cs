// Owns: the KV store a batched forward sees when requests with KV policies share a paged pool with plain requests. Each
// slot of the inner (paged) store is routed per step (Route): a plain sequence goes straight to the inner store; a sequence
// with a policy goes through the PolicyKvStore of its spec (one per distinct spec, created on first use) under a stable
// policy sequence id, with its rows in the inner store's blocks: an evicting / quantizing policy packs the kept float32
// rows into the request's row slots (PolicyRowStorage.Slots — the caller binds the slot over its whole block table and
// returns the blocks past SlotsUsed to the pool after the step); a full-retention one (full, quest, msa) keeps every row
// at its position (PolicyRowStorage.Inner). Pages() also points the PolicyBackend at the policy store that returned
// the pages (null for a plain sequence), so the next Attention call — the model calls Pages then Attention per run of one
// sequence — is routed to that store's Attend (its pages-identity check still guards it).
// Invariants: policy stores see the inner store through a non-owning slot view (policy sequence → inner slot bound this
// step) whose Truncate / Clear / Dispose do nothing — the inner store's blocks belong to its owner (the scheduler); the
// router never disposes the inner store. A policy sequence id's state lives until Release (the caller clears it when the
// request finishes, is cancelled or preempted: ids are reused). Not thread-safe (the serving loop thread only).
// Memory accounting: float32 rows live in the inner store's blocks (the scheduler counts them); the policy stores add their
// own Int8/Int4 payload and selection summaries on top (OwnBytes; the executor charges them to the same pool).
using Engine.Kernels;

namespace Engine.Memory.Policies;

public sealed class PolicyKvRouter : IKvStore
{
    private readonly IKvStore _inner;
    private readonly PolicyBackend _backend;
    private readonly SlotView _view;
    private readonly Dictionary<KvPolicySpec, PolicyKvStore> _stores = new();
    private readonly PolicyKvStore?[] _route;   // [inner seq] policy store of the sequence bound there this step (null = plain)
    private readonly int[] _policySeq;          // [inner seq] its policy sequence id
    private readonly int _blockTokens;
    private bool _disposed;

    /// <param name="inner">The shared store (not owned).</param>
    /// <param name="backend">The backend the model runs over; its Store is pointed at the policy store of each Pages call.</param>
    /// <param name="policySequences">Policy sequence ids available (at most this many policy requests hold state at once).</param>
    /// <param name="blockTokens">Token slots per block of the inner store (the unit the policy stores pack rows in).</param>
    public PolicyKvRouter(IKvStore inner, PolicyBackend backend, int policySequences, int blockTokens = PolicyKvStore.DefaultBlockTokens)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blockTokens, 1);
        _blockTokens = blockTokens;
        ArgumentNullException.ThrowIfNull(inner); ArgumentNullException.ThrowIfNull(backend);
        ArgumentOutOfRangeException.ThrowIfLessThan(policySequences, 1);
        _inner = inner; _backend = backend;
        _view = new SlotView(inner, policySequences);
        _route = new PolicyKvStore?[inner.SequenceCapacity];
        _policySeq = new int[inner.SequenceCapacity];
    }

    public IKvStore Inner => _inner;
    public int PolicySequences => _view.SequenceCapacity;
    public int LayerCount => _inner.LayerCount;
    public int KvDim => _inner.KvDim;
    public int Capacity => _inner.Capacity;
    public int SequenceCapacity => _inner.SequenceCapacity;

    /// <summary>The policy store of <paramref name="spec"/> (created on first use; validates the spec).</summary>
    public PolicyKvStore StoreFor(KvPolicySpec spec)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_stores.TryGetValue(spec, out var s))
            _stores.Add(spec, s = new PolicyKvStore(_view, spec, Packs(spec) ? PolicyRowStorage.Slots : PolicyRowStorage.Inner, _blockTokens));
        return s;
    }

    /// <summary>True when a request of <paramref name="spec"/> packs its kept rows into its slots (bind its whole table;
    /// return the blocks past SlotsUsed after the step); false: rows at their positions (bind its computed length).</summary>
    public static bool Packs(KvPolicySpec spec) => spec.Retention != RetentionKind.Full;

    /// <summary>Routes inner sequence <paramref name="seqId"/> for the coming forward: through the policy store of
    /// <paramref name="spec"/> as policy sequence <paramref name="policySeq"/>, or straight to the inner store (spec null).</summary>
    public void Route(int seqId, KvPolicySpec? spec, int policySeq = 0)
    {
        if ((uint)seqId >= (uint)_route.Length) throw new ArgumentOutOfRangeException(nameof(seqId), $"sequence {seqId} outside [0, {_route.Length})");
        if (spec == null) { _route[seqId] = null; return; }
        if ((uint)policySeq >= (uint)PolicySequences)
            throw new ArgumentOutOfRangeException(nameof(policySeq), $"policy sequence {policySeq} outside [0, {PolicySequences})");
        _route[seqId] = StoreFor(spec);
        _policySeq[seqId] = policySeq;
        _view.Map(policySeq, seqId);
    }

    /// <summary>Drops the policy state of <paramref name="policySeq"/> in the store of <paramref name="spec"/> (the inner
    /// store's rows are untouched: its owner frees the blocks).</summary>
    public void Release(KvPolicySpec spec, int policySeq)
    {
        if (_stores.TryGetValue(spec, out var s)) s.Clear(policySeq);
    }

    public void Write(int layer, int seqId, ReadOnlySpan<int> positions, ReadOnlySpan<float> k, ReadOnlySpan<float> v)
    {
        if (Routed(seqId) is { } s) s.Write(layer, _policySeq[seqId], positions, k, v);
        else _inner.Write(layer, seqId, positions, k, v);
    }

    public ReadOnlySpan<KvPage> Pages(int layer, int seqId)
    {
        var s = Routed(seqId);
        _backend.Store = s;
        return s != null ? s.Pages(layer, _policySeq[seqId]) : _inner.Pages(layer, seqId);
    }

    public int Length(int layer, int seqId) => Routed(seqId) is { } s ? s.Length(layer, _policySeq[seqId]) : _inner.Length(layer, seqId);

    public void Truncate(int seqId, int length)
    {
        if (Routed(seqId) is { } s) s.Truncate(_policySeq[seqId], length);
        _inner.Truncate(seqId, length);
    }

    public void Clear(int seqId)
    {
        if (Routed(seqId) is { } s) s.Clear(_policySeq[seqId]);
        _inner.Clear(seqId);
    }

    private PolicyKvStore? Routed(int seqId)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return (uint)seqId < (uint)_route.Length ? _route[seqId] : null;   // out of range: the inner store reports it
    }

    /// <summary>Disposes the policy stores (their state), not the inner store.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_backend.Store != null && _stores.ContainsValue(_backend.Store)) _backend.Store = null;
        foreach (var s in _stores.Values) s.Dispose();   // disposes only the non-owning view
        _stores.Clear();
    }

    /// <summary>The inner store seen under policy sequence ids: id → the inner slot it is bound to this step. Non-owning:
    /// Truncate / Clear / Dispose do nothing (blocks belong to the inner store's owner).</summary>
    private sealed class SlotView(IKvStore inner, int sequences) : IKvStore
    {
        private readonly int[] _slot = new int[sequences];   // [policy seq] inner seq
        public void Map(int policySeq, int seqId) => _slot[policySeq] = seqId;
        public int LayerCount => inner.LayerCount;
        public int KvDim => inner.KvDim;
        public int Capacity => inner.Capacity;
        public int SequenceCapacity => sequences;
        public void Write(int layer, int seqId, ReadOnlySpan<int> positions, ReadOnlySpan<float> k, ReadOnlySpan<float> v) =>
            inner.Write(layer, _slot[seqId], positions, k, v);
        public ReadOnlySpan<KvPage> Pages(int layer, int seqId) => inner.Pages(layer, _slot[seqId]);
        public int Length(int layer, int seqId) => inner.Length(layer, _slot[seqId]);
        public void Truncate(int seqId, int length) { }
        public void Clear(int seqId) { }
        public void Dispose() { }
    }
}
