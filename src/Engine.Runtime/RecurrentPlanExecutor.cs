// Owns: executing the scheduler's SchedulePlans with a recurrent model (RWKV): each running request gets a sequence
// slot of a RecurrentStateStore; one step = one ForwardBatch over every scheduled request's token range (each a run
// of its slot), logits of the requests that sample go to the caller's sampler, and the StepResults go back.
// Invariants: a request's slot state always holds exactly the tokens the scheduler counts as computed for it; a chunk
// starting at position 0 (new admission, or resume after preemption by recompute) starts from the longest
// checkpointed prefix of that chunk that the store holds (prefix reuse inside the step: fewer tokens computed, same
// state), otherwise from the initial state; slots of preempted / finished / cancelled requests are released.
// Used by Serving.ServingLoop for RWKV engines, where the scheduler's block is one whole state (BlockSize = context
// + 1, BlockCount = state slots = KV budget / state bytes); the executor ignores block tables. Released slots return
// their state bytes to the store's budget. Run the Scheduler with EnablePrefixCaching = false (its KV-block prefix hits would skip tokens the recurrent
// state never saw — such a plan is rejected with InvalidOperationException).
using Engine.Memory.Recurrent;
using Engine.Model;
using Engine.Scheduling;

namespace Engine.Runtime;

/// <summary>Chooses the next token of <paramref name="requestId"/> from its logits ([vocab]).</summary>
public delegate int TokenSampler(long requestId, ReadOnlySpan<float> logits);

/// <summary>Runs scheduler plans on a recurrent model over a multi-sequence state store.</summary>
public sealed class RecurrentPlanExecutor
{
    private readonly ILanguageModel _model;
    private readonly RecurrentStateStore _store;
    private readonly Dictionary<long, int> _slotOf = new();
    private readonly Stack<int> _free = new();
    private readonly Dictionary<long, int> _reusedOf = new();

    public RecurrentPlanExecutor(ILanguageModel model, RecurrentStateStore store)
    {
        _model = model; _store = store;
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

    public IReadOnlyList<StepResult> Execute(SchedulePlan plan, TokenSampler sample)
    {
        foreach (var id in plan.PreemptedIds.Concat(plan.FinishedIds).Concat(plan.CancelledIds)) Release(id);
        if (plan.IsEmpty) return [];

        var tokens = new List<int>(); var positions = new List<int>(); var seqs = new List<int>();
        var rows = new List<(ScheduledRequest Request, int LastRow)>();
        foreach (var r in plan.Requests)
        {
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
                tokens.Add(r.TokenIds[i]); positions.Add(r.StartPosition + i); seqs.Add(slot);
            }
            rows.Add((r, tokens.Count - 1));
        }

        int vocab = _model.Config.VocabSize;
        var logits = new float[tokens.Count * vocab];   // [tokens, vocab]
        _model.Forward(new ForwardBatch(tokens.ToArray(), positions.ToArray(), seqs.ToArray()), _store, logits, allLogits: true);

        var results = new List<StepResult>(rows.Count);
        foreach (var (r, last) in rows)
            results.Add(r.SamplesToken
                ? new StepResult(r.RequestId, sample(r.RequestId, logits.AsSpan(last * vocab, vocab)))
                : new StepResult(r.RequestId, null));
        return results;
    }

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
