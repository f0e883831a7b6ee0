// Owns: the ADAPTER that runs a caller-built single-sequence KV store inside the serving loop — a contiguous store
// (EngineOptions.Paged = false), a store wrapped by a KV store decorator (a persistent memory, a KV policy on the
// single-sequence path, a test's decorator) — so every configuration samples, stops and reports usage in the one loop.
// It is the configuration that has not moved onto a pool yet: one sequence (slot 0) at a time, and the scheduler sees
// one block holding the whole context (BlockSize = context + 1, BlockCount = 1, MaxSequences = 1), so requests queue.
// Prefix reuse: the store keeps the K/V of the previous sequence (prompt + generated tokens fed back); a new request
// keeps the longest common prefix with its prompt (at least its last prompt token is recomputed, so its logits exist)
// and every chunk skips what is kept — the chat-turn reuse the single-sequence path always had.
// KV policy switching (an engine loaded with EngineOptions.KvPolicy whose store is exactly that PolicyKvStore): a
// request whose policy differs from the store's replaces the PolicyKvStore over the same float32 inner store and drops
// the cached prefix (the old policy's kept/quantized layout does not carry over); the old wrapper is dropped undisposed
// (disposing it would dispose the shared inner store).
// Invariants: _cached holds exactly the tokens whose K/V are in the store (positions 0 .. Count-1); a failed forward
// may have written some layers only, so it clears the whole sequence.
using Engine.Memory;
using Engine.Memory.Policies;
using Engine.Model;
using Engine.Scheduling;

namespace Engine.Runtime.Serving;

internal sealed class ContiguousKvExecutor : IStepExecutor
{
    private const int Seq = 0;
    private readonly ILanguageModel _model;
    private readonly int _contextLength;
    private readonly PolicyBackend? _policyBackend;   // set when the store may switch policies
    private readonly PolicyBackend? _usageBackend;    // the policy backend, if any (its Store is the policy store)
    private readonly KvPolicySpec? _enginePolicy;
    private readonly List<int> _cached = new();
    private IKvStore _kv;
    private long _current = -1;   // the request whose tokens are in the store (−1: none yet)
    private int _kept;            // tokens of _current's prompt kept from the previous sequence
    private float[] _logits;

    /// <param name="kv">The store (owned); slot 0 is used.</param>
    /// <param name="policyBackend">With <paramref name="enginePolicy"/>: the backend whose Store is <paramref name="kv"/>
    /// (a PolicyKvStore) — requests may then switch policies.</param>
    public ContiguousKvExecutor(ILanguageModel model, IKvStore kv, int contextLength, PolicyBackend? policyBackend, KvPolicySpec? enginePolicy)
    {
        _model = model; _kv = kv; _contextLength = contextLength; _usageBackend = policyBackend;
        bool switchable = enginePolicy != null && policyBackend?.Store is { } s && ReferenceEquals(kv, s);
        _policyBackend = switchable ? policyBackend : null;
        _enginePolicy = switchable ? enginePolicy : null;
        _logits = new float[model.Config.VocabSize];
    }

    /// <summary>True when a request may carry its own KV policy (the store is the engine's PolicyKvStore, nothing around it).</summary>
    public bool CanSwitchPolicy => _policyBackend != null;

    /// <summary>The store the model runs over now.</summary>
    public IKvStore Store => _kv;

    /// <summary>What the policy store holds now for the cached sequence; null without a policy store.</summary>
    public KvPolicyUsage? PolicyUsage => _usageBackend?.Store is { } p ? KvPolicyWiring.Usage(p, Seq) : null;

    public int BlockCount => 1;
    public int DiskBlockCount => 0;
    public int BlockSize => _contextLength + 1;
    public int MaxSequences => 1;
    public bool SchedulerPrefixCaching => false;
    public int BudgetTokens => _contextLength;

    public void Release(SchedulePlan plan, Func<long, bool> isLive) { }   // the store keeps the last sequence for reuse
    public void PromptDone(long id) { }
    public void Finished(long id) { }

    public Span<float> Forward(SchedulePlan plan, LiveRequest?[] lives, int[] skipped, int[] keptSlots)
    {
        if (plan.Requests.Count != 1) throw new InvalidOperationException($"the single-sequence store runs one request per step, got {plan.Requests.Count}");
        var r = plan.Requests[0];
        if (r.RequestId != _current)
        {
            if (r.StartPosition != 0) throw new InvalidOperationException($"request {r.RequestId} continues at {r.StartPosition} in a store holding another sequence");
            Admit(lives[0]?.Prompt, lives[0]?.Policy);
            _current = r.RequestId;
        }
        else if (r.StartPosition == 0) Admit(lives[0]?.Prompt, lives[0]?.Policy);   // restarted (recompute)
        // tokens of this chunk already in the store (the kept prefix), never all of a sampling chunk
        int skip = Math.Clamp(_kept - r.StartPosition, 0, r.TokenCount - (r.SamplesToken ? 1 : 0));
        skipped[0] = skip;
        if (_cached.Count != r.StartPosition + skip)
            throw new InvalidOperationException($"request {r.RequestId}: the store holds {_cached.Count} tokens but the step continues at {r.StartPosition + skip}");
        if (skip == r.TokenCount) return Span<float>.Empty;   // a prefill chunk wholly kept: nothing to run
        var batch = ForwardBatch.ForSequence(r.TokenIds.AsSpan(skip), r.StartPosition + skip, Seq);
        try
        {
            _model.Forward(batch, _kv, _logits, allLogits: false);
        }
        catch
        {
            _kv.Clear(Seq);
            _cached.Clear();
            _current = -1;
            throw;
        }
        _cached.AddRange(batch.Tokens);
        return r.SamplesToken ? _logits.AsSpan() : Span<float>.Empty;
    }

    /// <summary>A new sequence enters the store: apply its policy, keep the longest common prefix with what is cached.</summary>
    private void Admit(int[]? prompt, KvPolicySpec? policy)
    {
        SwitchPolicy(policy ?? _enginePolicy);
        int keep = 0;
        if (prompt != null)
            while (keep < _cached.Count && keep < prompt.Length - 1 && _cached[keep] == prompt[keep]) keep++;
        _kv.Truncate(Seq, keep);
        _cached.RemoveRange(keep, _cached.Count - keep);
        _kept = keep;
    }

    private void SwitchPolicy(KvPolicySpec? wanted)
    {
        if (_policyBackend?.Store is not { } current || wanted == null || wanted == current.Spec) return;
        current.Clear(Seq);   // frees the old policy's per-sequence state and empties the shared inner store
        _cached.Clear();
        var next = new PolicyKvStore(current.Inner, wanted);
        _policyBackend.Store = next;
        _kv = next;
    }

    public void Dispose() => _kv.Dispose();
}
