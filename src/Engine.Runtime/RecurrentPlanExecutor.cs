// Owns: executing the scheduler's SchedulePlans with a recurrent model (RWKV): each running request gets a sequence
// slot of a RecurrentStateStore; one step = one ForwardBatch over every scheduled request's token range (each a run
// of its slot), logits of the requests that sample go to the caller's sampler, and the StepResults go back.
// Invariants: a request's slot state always holds exactly the tokens the scheduler counts as computed for it; a chunk
// starting at position 0 (new admission, or resume after preemption by recompute) starts from the longest
// checkpointed prefix of that chunk that the store holds (prefix reuse inside the step: fewer tokens computed, same
// state), otherwise from the initial state; slots of preempted / finished / cancelled requests are released.
// Used by Serving.ServingLoop for RWKV engines (as its IStepExecutor: the loop samples; Execute below samples through a
// caller's TokenSampler for tests and tools), where the scheduler's block is one whole state (BlockSize = context
// + 1, BlockCount = state slots = KV budget / state bytes); the executor ignores block tables. Released slots return
// their state bytes to the store's budget. Run the Scheduler with EnablePrefixCaching = false (its KV-block prefix hits would skip tokens the recurrent
// state never saw — such a plan is rejected with InvalidOperationException).
using Engine.Memory.Recurrent;
using Engine.Model;
using Engine.Runtime.Serving;
using Engine.Scheduling;

namespace Engine.Runtime;

/// <summary>Chooses the next token of <paramref name="requestId"/> from its logits ([vocab]).</summary>
public delegate int TokenSampler(long requestId, ReadOnlySpan<float> logits);

/// <summary>Runs scheduler plans on a recurrent model over a multi-sequence state store.</summary>
public sealed class RecurrentPlanExecutor : IStepExecutor
{
    private readonly ILanguageModel _model;
    private readonly RecurrentStateStore _store;
    private readonly Dictionary<long, int> _slotOf = new();
    private readonly Stack<int> _free = new();
    private readonly Dictionary<long, int> _reusedOf = new();

    private readonly int _contextLength;
    private readonly List<int> _tokens = new(), _positions = new(), _seqs = new();
    private float[] _logits = [];

    /// <param name="contextLength">Positions a sequence may reach (≤ 0 = the model's trained context).</param>
    public RecurrentPlanExecutor(ILanguageModel model, RecurrentStateStore store, int contextLength = 0)
    {
        _model = model; _store = store;
        _contextLength = contextLength > 0 ? contextLength : model.Config.ContextLength;
        for (int s = store.SequenceCapacity - 1; s >= 0; s--) _free.Push(s);
    }

    /// <summary>Prompt tokens restored from checkpoints instead of computed, over all steps.</summary>
    public long TokensReused { get; private set; }

    public int ActiveSlots => _slotOf.Count;

    /// <summary>The state store the slots live in.</summary>
    public RecurrentStateStore Store => _store;

    /// <summary>Prompt tokens restored from a checkpoint when <paramref name="id"/> was (last) admitted; 0 if none.</summary>
    public int ReusedBy(long id) => _reusedOf.GetValueOrDefault(id);

    /// <summary>Checkpoints the live state of <paramref name="id"/> (e.g. at the end of its prompt, so a later
    /// request extending that prompt restores it). No-op when the request holds no slot.</summary>
    public void SaveCheckpoint(long id)
    {
        if (_slotOf.TryGetValue(id, out int slot) && _store.Length(slot) > 0) _store.SaveCheckpoint(slot);
    }

    /// <summary>Runs <paramref name="plan"/> and samples each request that samples through <paramref name="sample"/>.</summary>
    public IReadOnlyList<StepResult> Execute(SchedulePlan plan, TokenSampler sample)
    {
        foreach (var id in plan.PreemptedIds.Concat(plan.FinishedIds).Concat(plan.CancelledIds)) Release(id);
        if (plan.IsEmpty) return [];
        var logits = Forward(plan, new int[plan.Requests.Count]);
        int vocab = _model.Config.VocabSize, row = 0;
        var results = new List<StepResult>(plan.Requests.Count);
        foreach (var r in plan.Requests)
            results.Add(r.SamplesToken
                ? new StepResult(r.RequestId, sample(r.RequestId, logits.Slice(row++ * vocab, vocab)))
                : new StepResult(r.RequestId, null));
        return results;
    }

    /// <summary>One forward over every scheduled request's chunk (after prefix restore); returns the logits of the
    /// sampling requests, [k, vocab] in plan order. skipped[i] = tokens of request i's chunk restored, not computed.</summary>
    private Span<float> Forward(SchedulePlan plan, int[] skipped)
    {
        _tokens.Clear(); _positions.Clear(); _seqs.Clear();
        Span<int> lastRow = plan.Requests.Count <= 256 ? stackalloc int[plan.Requests.Count] : new int[plan.Requests.Count];
        for (int ri = 0; ri < plan.Requests.Count; ri++)
        {
            var r = plan.Requests[ri];
            if (!_slotOf.TryGetValue(r.RequestId, out int slot))
            {
                if (r.StartPosition != 0)
                    throw new InvalidOperationException($"request {r.RequestId} starts at position {r.StartPosition} without a state (run the scheduler with EnablePrefixCaching = false for recurrent models)");
                if (_free.Count == 0) throw new InvalidOperationException($"no free state slot for request {r.RequestId} (store holds {_store.SequenceCapacity})");
                _slotOf[r.RequestId] = slot = _free.Pop();
                _store.Clear(slot);
            }
            int skip = 0;
            if (r.StartPosition == 0)
            {
                // Prefix reuse: keep at least one token to compute so the chunk's logits exist.
                skip = _store.RestoreLongestPrefix(slot, r.TokenIds, r.TokenIds.Length - 1);
                TokensReused += skip;
                _reusedOf[r.RequestId] = skip;
            }
            else if (_store.Length(slot) != r.StartPosition)
                throw new InvalidOperationException($"request {r.RequestId}: state holds {_store.Length(slot)} tokens but the plan continues at {r.StartPosition}");
            for (int i = skip; i < r.TokenIds.Length; i++)
            {
                _tokens.Add(r.TokenIds[i]); _positions.Add(r.StartPosition + i); _seqs.Add(slot);
            }
            skipped[ri] = skip;
            lastRow[ri] = _tokens.Count - 1;
        }

        int vocab = _model.Config.VocabSize;
        if (_logits.Length < _tokens.Count * vocab) _logits = new float[_tokens.Count * vocab];   // [tokens, vocab]
        var all = _logits.AsSpan(0, _tokens.Count * vocab);
        _model.Forward(new ForwardBatch(_tokens.ToArray(), _positions.ToArray(), _seqs.ToArray()), _store, all, allLogits: true);
        int k = 0;   // compact the sampling rows to the front, in plan order (row k's source is at or after k: safe in place)
        for (int ri = 0; ri < plan.Requests.Count; ri++)
            if (plan.Requests[ri].SamplesToken)
                all.Slice(lastRow[ri] * vocab, vocab).CopyTo(all.Slice(k++ * vocab, vocab));
        return all[..(k * vocab)];
    }

    int IStepExecutor.BlockCount => _store.SequenceCapacity;
    int IStepExecutor.DiskBlockCount => 0;
    int IStepExecutor.BlockSize => _contextLength + 1;   // one block holds a whole sequence: the state does not grow
    int IStepExecutor.MaxSequences => _store.SequenceCapacity;
    bool IStepExecutor.SchedulerPrefixCaching => false;   // prefix reuse comes from the store's checkpoints
    int IStepExecutor.BudgetTokens => _contextLength;
    KvPolicyUsage? IStepExecutor.PolicyUsage => null;

    void IStepExecutor.Release(SchedulePlan plan, Func<long, bool> isLive)
    {
        foreach (var id in plan.PreemptedIds) Release(id);
        foreach (var id in plan.FinishedIds) Release(id);
        foreach (var id in plan.CancelledIds) Release(id);
    }

    Span<float> IStepExecutor.Forward(SchedulePlan plan, LiveRequest?[] lives, int[] skipped, int[] keptSlots) => Forward(plan, skipped);

    void IStepExecutor.PromptDone(long id) => SaveCheckpoint(id);   // a later prompt extending this one restores it

    void IStepExecutor.Finished(long id) { }

    /// <summary>Disposes the state store (the serving loop owns it through this executor).</summary>
    void IDisposable.Dispose() => _store.Dispose();

    /// <summary>Frees the slot of <paramref name="id"/> (the scheduler reports finished requests in the next plan;
    /// call this when no further plan will come, e.g. after the last step).</summary>
    public void Release(long id)
    {
        _reusedOf.Remove(id);
        if (!_slotOf.Remove(id, out int slot)) return;
        _store.Release(slot);   // also returns the live state's bytes to the budget (checkpoints may use them)
        _free.Push(slot);
    }
}
