// Owns: a deterministic stand-in for a language model plus an executor that runs SchedulePlans against a fake
// paged KV store, so scheduler/memory bugs show up as wrong outputs.
// The "KV" of position p is kv[p] = Mix(kv[p-1], token[p], p) (kv[-1] = Seed); the next token after position p is
// a hash of kv[0..p] (every cached position is read, as attention would) modulo Vocab. FakeExecutor reads and
// writes those values through each plan's block tables, poisons freshly allocated blocks, applies disk-tier moves
// (copy, then poison the source) and copy-on-write orders, and asserts that every block it writes is held by exactly
// one sequence and is a RAM block. RunAlone computes the same
// function straight from a token list, with no paging: the reference every scheduled output must equal.
// A per-request salt (think: each request's own sampler seed) lets forked branches diverge deterministically.
using Engine.Memory.Paged;
using Engine.Scheduling;

namespace Engine.Scheduling.Tests;

public static class FakeModel
{
    public const int Seed = 0x2545F491;

    public static int Mix(int previousKv, int token, int position)
    {
        uint h = (uint)previousKv * 0x9E3779B1u;
        h ^= (uint)token * 0x85EBCA77u + (uint)position * 0xC2B2AE3Du;
        h ^= h >> 15;
        h *= 0x27D4EB2Fu;
        h ^= h >> 13;
        return (int)h;
    }

    /// <summary>Next token from all cached KV values of a sequence.</summary>
    public static int Next(ReadOnlySpan<int> kvs, int vocab, int salt = 0)
    {
        ulong h = 1469598103934665603UL ^ (uint)salt; // salt: a per-request "sampler" so forks can diverge
        foreach (int v in kvs) h = (h ^ (uint)v) * 1099511628211UL;
        h ^= h >> 29;
        return (int)(h % (ulong)vocab);
    }

    /// <summary>The reference: generate for one request alone, without paging.</summary>
    public static int[] RunAlone(IReadOnlyList<int> prompt, int maxNewTokens, int vocab, IReadOnlyCollection<int>? stops = null, int salt = 0)
    {
        var tokens = new List<int>(prompt);
        var kvs = new List<int>();
        var output = new List<int>();
        int prev = Seed;
        int fed = 0;
        while (output.Count < maxNewTokens)
        {
            for (; fed < tokens.Count; fed++)
            {
                prev = Mix(prev, tokens[fed], fed);
                kvs.Add(prev);
            }
            int next = Next(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(kvs), vocab, salt);
            output.Add(next);
            tokens.Add(next);
            if (stops != null && stops.Contains(next)) break;
        }
        return output.ToArray();
    }
}

/// <summary>Runs plans against a fake paged KV store: int values [block, slot].</summary>
public sealed class FakeExecutor
{
    private readonly int[] _kv; // [block, blockSize]
    private readonly BlockPool _pool;
    private readonly int _blockSize;
    private readonly Random _poison = new(7);
    private readonly Func<long, int> _saltOf;

    public FakeExecutor(BlockPool pool, int vocab, Func<long, int>? saltOf = null)
    {
        _saltOf = saltOf ?? (_ => 0);
        _pool = pool;
        _blockSize = pool.BlockSize;
        _kv = new int[pool.Capacity * pool.BlockSize];
        Vocab = vocab;
    }

    public int Vocab { get; }
    public long TokensComputed { get; private set; }
    public long Moves { get; private set; }

    /// <summary>Runs one plan; returns a result (sampled token) for every request that samples.</summary>
    public List<StepResult> Execute(SchedulePlan plan)
    {
        // A moved block's old id holds garbage afterwards: a table still naming it reads wrong values.
        foreach (var m in plan.Moves)
        {
            if (m.SourceBlock >= _pool.RamCapacity || m.DestinationBlock < _pool.RamCapacity)
                throw new InvalidOperationException($"move {m.SourceBlock} → {m.DestinationBlock} is not RAM → disk");
            Array.Copy(_kv, m.SourceBlock * _blockSize, _kv, m.DestinationBlock * _blockSize, _blockSize);
            for (int i = 0; i < _blockSize; i++) _kv[m.SourceBlock * _blockSize + i] = _poison.Next();
            Moves++;
        }
        // Fresh blocks hold garbage until written or copied into: reading one unwritten slot changes the output.
        foreach (var s in plan.Requests)
            foreach (int b in s.NewBlocks)
                for (int i = 0; i < _blockSize; i++) _kv[b * _blockSize + i] = _poison.Next();
        foreach (var c in plan.Copies)
            Array.Copy(_kv, c.SourceBlock * _blockSize, _kv, c.DestinationBlock * _blockSize, c.TokenCount);

        var results = new List<StepResult>();
        foreach (var s in plan.Requests)
        {
            for (int j = 0; j < s.TokenIds.Length; j++)
            {
                int p = s.StartPosition + j;
                int prev = p == 0 ? FakeModel.Seed : _kv[Slot(s.BlockTable, p - 1)];
                int block = s.BlockTable[p / _blockSize];
                if (_pool.RefCount(block) != 1)
                    throw new InvalidOperationException($"request {s.RequestId} writes position {p} into block {block} shared by {_pool.RefCount(block)} holders");
                if (_pool.IsOnDisk(block))
                    throw new InvalidOperationException($"request {s.RequestId} writes position {p} into disk-tier block {block}");
                _kv[Slot(s.BlockTable, p)] = FakeModel.Mix(prev, s.TokenIds[j], p);
            }
            TokensComputed += s.TokenIds.Length;
            if (s.SamplesToken)
            {
                int end = s.StartPosition + s.TokenIds.Length;
                var kvs = new int[end];
                for (int p = 0; p < end; p++) kvs[p] = _kv[Slot(s.BlockTable, p)];
                results.Add(new StepResult(s.RequestId, FakeModel.Next(kvs, Vocab, _saltOf(s.RequestId))));
            }
        }
        return results;
    }

    private int Slot(int[] table, int position) => table[position / _blockSize] * _blockSize + position % _blockSize;
}

/// <summary>Drives a scheduler with a fake executor until every request is done.</summary>
public static class Driver
{
    /// <summary>
    /// Loops Step → Execute → OnStepCompleted. <paramref name="beforeStep"/> (step index → "more events to come")
    /// may add or cancel requests. Validates the scheduler's invariants after every step when asked. Returns the
    /// plans (for inspection). Fails on an empty plan while requests wait (a hang) or after maxSteps.
    /// </summary>
    public static List<SchedulePlan> Run(Scheduler scheduler, FakeExecutor executor, Func<int, bool>? beforeStep = null,
        bool validate = true, int maxSteps = 200_000, Action<SchedulePlan>? onPlan = null)
    {
        var plans = new List<SchedulePlan>();
        for (int step = 0; ; step++)
        {
            bool more = beforeStep?.Invoke(step) ?? false;
            if (!more && !scheduler.HasUnfinishedRequests) break;
            if (step >= maxSteps) throw new InvalidOperationException($"no completion after {maxSteps} steps");
            var plan = scheduler.Step();
            plans.Add(plan);
            onPlan?.Invoke(plan);
            if (plan.IsEmpty && scheduler.HasUnfinishedRequests)
                throw new InvalidOperationException($"step {plan.StepIndex}: empty plan with {scheduler.WaitingCount} waiting and {scheduler.RunningCount} running");
            if (!plan.IsEmpty)
            {
                if (plan.TotalTokens > scheduler.Options.MaxTokensPerStep)
                    throw new InvalidOperationException($"step {plan.StepIndex} computes {plan.TotalTokens} tokens, budget {scheduler.Options.MaxTokensPerStep}");
                if (plan.Requests.Count > scheduler.Options.MaxRunningRequests)
                    throw new InvalidOperationException($"step {plan.StepIndex} runs {plan.Requests.Count} requests, cap {scheduler.Options.MaxRunningRequests}");
                if (validate) scheduler.Validate();
                scheduler.OnStepCompleted(executor.Execute(plan));
            }
            if (validate) scheduler.Validate();
        }
        return plans;
    }
}
