// Tests: recurrent state storage with a real RWKV model — automatic checkpoints every N tokens, prefix reuse
// (identical logits, fewer tokens computed), rollback and fork (identical logits to a fresh run), offload to disk and
// back (bit-exact), the byte budget, and the store's own invariants. The oracle is always a fresh run of the same
// model from the initial state over the same tokens. On the reference backend (row results independent of the matmul
// batch size) the logits must be bit-identical; the CPU backend's summation order depends on how many rows a matmul
// gets, so a run split into different chunks may differ in the last float bits: there the bound is 1e-5.
using Engine.Memory.Recurrent;
using Engine.Model;

namespace Engine.Recurrent.Tests;

public class RecurrentStateStoreTests
{
    private const string File7 = "tiny-rwkv-7v0-834K-FP32.bin";
    private static int[] Bytes(string s) => System.Text.Encoding.UTF8.GetBytes(s).Select(b => (int)b).ToArray();

    private static void AssertSame(string backend, float[] actual, float[] expected, string what = "")
    {
        if (backend == "reference") Assert.That(actual, Is.EqualTo(expected), "bit-identical to a fresh run " + what);
        else Assert.That(actual, Is.EqualTo(expected).Within(1e-5f), "equal to a fresh run " + what);
    }

    /// <summary>Logits after a fresh run over <paramref name="tokens"/> (new store, initial state).</summary>
    private static float[] Fresh(RwkvModel model, int[] tokens)
    {
        using var store = model.CreateStateStore(1, new RecurrentStoreOptions { CheckpointInterval = 0 });
        var logits = new float[256];
        model.Forward(ForwardBatch.ForSequence(tokens, 0), store, logits, false);
        return logits;
    }

    [Test]
    public void AllLogits_SequenceMode_EqualsOneTokenMode()
    {
        using var backend = RwkvFixtures.Backend("reference");
        using var model = RwkvFixtures.Load("tiny-rwkv-5v2-730K-FP32.bin", backend);
        var tokens = Bytes("Hello, recurrent world");
        model.SequenceChunk = 5;
        using var a = model.CreateStateStore();
        var all = new float[tokens.Length * 256];
        model.Forward(ForwardBatch.ForSequence(tokens, 0), a, all, allLogits: true);
        model.SequenceChunk = 1;
        using var b = model.CreateStateStore();
        var one = new float[256];
        for (int i = 0; i < tokens.Length; i++)
        {
            model.Forward(ForwardBatch.ForSequence(tokens.AsSpan(i, 1), i), b, one, false);
            for (int v = 0; v < 256; v++) Assert.That(all[i * 256 + v], Is.EqualTo(one[v]).Within(1e-5f), $"token {i} logit {v}");
        }
    }

    [TestCase("reference")]
    [TestCase("cpu")]
    public void Checkpoints_AreTakenEveryIntervalTokens_AndHoldExactStates(string backendName)
    {
        using var backend = RwkvFixtures.Backend(backendName);
        using var model = RwkvFixtures.Load(File7, backend);
        model.SequenceChunk = 7; // deliberately not a divisor of the interval
        using var store = model.CreateStateStore(1, new RecurrentStoreOptions { CheckpointInterval = 8 });
        var tokens = Bytes("The quick brown fox jumps over the lazy dog.");
        var logits = new float[256];
        model.Forward(ForwardBatch.ForSequence(tokens, 0), store, logits, false);
        Assert.That(store.Checkpoints.Select(c => c.Length), Is.EqualTo(new[] { 8, 16, 24, 32, 40 }));
        // Each checkpoint's state equals the live state of a fresh run over its prefix.
        foreach (var cp in store.Checkpoints)
        {
            using var fresh = model.CreateStateStore(1, new RecurrentStoreOptions { CheckpointInterval = 0 });
            model.Forward(ForwardBatch.ForSequence(cp.Tokens, 0), fresh, logits, false);
            using var probe = model.CreateStateStore(1, new RecurrentStoreOptions { CheckpointInterval = 0 });
            probe.Restore(0, cp);
            AssertSame(backendName, probe.State(0).ToArray(), fresh.State(0).ToArray(), $"(state at checkpoint {cp.Length})");
        }
    }

    [TestCase("reference")]
    [TestCase("cpu")]
    public void PrefixReuse_IdenticalLogits_FewerTokensComputed(string backendName)
    {
        using var backend = RwkvFixtures.Backend(backendName);
        using var model = RwkvFixtures.Load(File7, backend);
        var system = Bytes("System: you are a tiny model. User: ");
        var p1 = system.Concat(Bytes("hello")).ToArray();
        var p2 = system.Concat(Bytes("what is two plus two?")).ToArray();
        var expected = Fresh(model, p2);

        using var store = model.CreateStateStore(1, new RecurrentStoreOptions { CheckpointInterval = 16 });
        var logits = new float[256];
        model.Forward(ForwardBatch.ForSequence(p1, 0), store, logits, false);

        long before = model.TokensComputed;
        int restored = store.RestoreLongestPrefix(0, p2, p2.Length - 1);
        model.Forward(ForwardBatch.ForSequence(p2.AsSpan(restored), restored), store, logits, false);
        long computed = model.TokensComputed - before;

        Assert.Multiple(() =>
        {
            Assert.That(restored, Is.EqualTo(system.Length / 16 * 16), "nearest checkpoint inside the shared prefix");
            Assert.That(computed, Is.EqualTo(p2.Length - restored));
            Assert.That(computed, Is.LessThan(p2.Length));
            Assert.That(store.Stats.PrefixHits, Is.EqualTo(1));
            Assert.That(store.Stats.TokensRestored, Is.EqualTo(restored));
            AssertSame(backendName, logits, expected);
        });
    }

    [Test]
    public void PrefixReuse_DifferentPrefix_IsNotRestored()
    {
        using var backend = RwkvFixtures.Backend("cpu");
        using var model = RwkvFixtures.Load(File7, backend);
        using var store = model.CreateStateStore(1, new RecurrentStoreOptions { CheckpointInterval = 4 });
        var logits = new float[256];
        model.Forward(ForwardBatch.ForSequence(Bytes("abcdefgh"), 0), store, logits, false);
        Assert.That(store.RestoreLongestPrefix(0, Bytes("abcXefgh"), 7), Is.EqualTo(0));
        Assert.That(store.RestoreLongestPrefix(0, Bytes("abcdXfgh"), 7), Is.EqualTo(4));
        Assert.That(store.History(0).ToArray(), Is.EqualTo(Bytes("abcd")));
    }

    [TestCase("reference")]
    [TestCase("cpu")]
    public void Rollback_ToEarlierTurn_EqualsFreshRun(string backendName)
    {
        using var backend = RwkvFixtures.Backend(backendName);
        using var model = RwkvFixtures.Load("tiny-rwkv-6v0-3m-Q5_1.bin", backend);
        using var store = model.CreateStateStore(1, new RecurrentStoreOptions { CheckpointInterval = 10 });
        var turn1 = Bytes("User: hi there. Bot: hello! ");
        var turn2 = Bytes("User: tell me a story. Bot: once upon a time");
        var all = turn1.Concat(turn2).ToArray();
        var logits = new float[256];
        model.Forward(ForwardBatch.ForSequence(all, 0), store, logits, false);

        // Rewind to the end of turn 1, then continue with a different turn 2.
        var history = store.History(0).ToArray();
        long before = model.TokensComputed;
        int restored = store.Rollback(0, turn1.Length);
        Assert.That(restored, Is.LessThanOrEqualTo(turn1.Length).And.GreaterThan(0));
        if (restored < turn1.Length)
            model.Forward(ForwardBatch.ForSequence(history.AsSpan(restored, turn1.Length - restored), restored), store, logits, false);
        var alt = Bytes("User: bye. Bot:");
        model.Forward(ForwardBatch.ForSequence(alt, turn1.Length), store, logits, false);
        Assert.That(model.TokensComputed - before, Is.EqualTo(turn1.Length - restored + alt.Length));
        AssertSame(backendName, logits, Fresh(model, turn1.Concat(alt).ToArray()));
        Assert.That(store.Stats.Rollbacks, Is.EqualTo(1));
    }

    [Test]
    public void Rewind_RecomputesOnlyFromTheNearestCheckpoint()
    {
        using var backend = RwkvFixtures.Backend("reference");
        using var model = RwkvFixtures.Load(File7, backend);
        using var store = model.CreateStateStore(1, new RecurrentStoreOptions { CheckpointInterval = 8 });
        var t = Bytes("a conversation with several turns in it");
        var logits = new float[256];
        model.Forward(ForwardBatch.ForSequence(t, 0), store, logits, false);
        long before = model.TokensComputed;
        Assert.That(model.Rewind(store, 0, 19), Is.EqualTo(3), "checkpoint at 16, recompute 16..18");
        Assert.That(model.TokensComputed - before, Is.EqualTo(3));
        Assert.That(store.History(0).ToArray(), Is.EqualTo(t.Take(19).ToArray()));
        var next = Bytes("!");
        model.Forward(ForwardBatch.ForSequence(next, 19), store, logits, false);
        AssertSame("reference", logits, Fresh(model, t.Take(19).Concat(next).ToArray()));
    }

    [TestCase("reference")]
    [TestCase("cpu")]
    public void Truncate_AtCheckpoint_IsExact_ElsewhereThrows(string backendName)
    {
        using var backend = RwkvFixtures.Backend(backendName);
        using var model = RwkvFixtures.Load(File7, backend);
        using var store = model.CreateStateStore(1, new RecurrentStoreOptions { CheckpointInterval = 5 });
        var t = Bytes("0123456789abc");
        var logits = new float[256];
        model.Forward(ForwardBatch.ForSequence(t, 0), store, logits, false);
        Assert.Throws<InvalidOperationException>(() => store.Truncate(0, 7));
        store.Truncate(0, 10);
        Assert.That(store.Length(0), Is.EqualTo(10));
        model.Forward(ForwardBatch.ForSequence(t.AsSpan(10), 10), store, logits, false);
        AssertSame(backendName, logits, Fresh(model, t));
    }

    [TestCase("reference")]
    [TestCase("cpu")]
    public void Fork_BranchesEvolveIndependently_AndMatchFreshRuns(string backendName)
    {
        using var backend = RwkvFixtures.Backend(backendName);
        using var model = RwkvFixtures.Load(File7, backend);
        using var store = model.CreateStateStore(2, new RecurrentStoreOptions { CheckpointInterval = 0 });
        var stem = Bytes("Once upon a time, ");
        var logits = new float[256];
        model.Forward(ForwardBatch.ForSequence(stem, 0, seqId: 0), store, logits, false);
        store.Fork(0, 1);
        var a = Bytes("a cat");
        var b = Bytes("the dog barked");
        var la = new float[256];
        var lb = new float[256];
        model.Forward(ForwardBatch.ForSequence(a, stem.Length, seqId: 0), store, la, false);
        model.Forward(ForwardBatch.ForSequence(b, stem.Length, seqId: 1), store, lb, false);
        AssertSame(backendName, la, Fresh(model, stem.Concat(a).ToArray()), "(branch a)");
        AssertSame(backendName, lb, Fresh(model, stem.Concat(b).ToArray()), "(branch b)");
    }

    [Test]
    public void Offload_ToDiskAndBack_IsBitExact_AndFreesBudget()
    {
        using var backend = RwkvFixtures.Backend("cpu");
        using var model = RwkvFixtures.Load(File7, backend);
        string disk = Path.Combine(Path.GetTempPath(), $"engine-rwkv-{Guid.NewGuid():N}.bin");
        try
        {
            using var store = model.CreateStateStore(1, new RecurrentStoreOptions { CheckpointInterval = 8, DiskPath = disk });
            var p = Bytes("offloaded prefix state test, long enough");
            var logits = new float[256];
            model.Forward(ForwardBatch.ForSequence(p, 0), store, logits, false);
            var snapshots = new List<(RecurrentCheckpoint Cp, float[] Data)>();
            foreach (var c in store.Checkpoints.ToList()) { store.Restore(0, c); snapshots.Add((c, store.State(0).ToArray())); }
            long usedBefore = store.Budget.Used;
            store.OffloadAll();
            Assert.That(store.Checkpoints.All(c => !c.InMemory && c.OnDisk), Is.True);
            Assert.That(store.Budget.Used, Is.EqualTo(usedBefore - snapshots.Count * store.StateBytes));
            Assert.That(store.CheckpointBytesOnDisk, Is.EqualTo(snapshots.Count * store.StateBytes));
            Assert.That(new FileInfo(disk).Length, Is.EqualTo(snapshots.Count * store.StateBytes));
            foreach (var (cp, data) in snapshots)
            {
                store.Restore(0, cp);
                Assert.That(store.State(0).ToArray(), Is.EqualTo(data), $"checkpoint {cp.Length}");
                Assert.That(cp.InMemory, Is.True, "reloaded into the memory tier");
            }
            Assert.That(store.Stats.Reloaded, Is.EqualTo(snapshots.Count));
            // Prefix reuse through a reloaded checkpoint still gives fresh-run logits.
            store.OffloadAll();
            var q = p.Take(20).Concat(Bytes(" and more")).ToArray();
            int r = store.RestoreLongestPrefix(0, q, q.Length - 1);
            Assert.That(r, Is.EqualTo(16));
            model.Forward(ForwardBatch.ForSequence(q.AsSpan(r), r), store, logits, false);
            AssertSame("cpu", logits, Fresh(model, q));
        }
        finally { File.Delete(disk); }
    }

    [Test]
    public void Budget_BoundsMemoryTier_LruGoesToDiskOrIsDropped()
    {
        using var backend = RwkvFixtures.Backend("cpu");
        using var model = RwkvFixtures.Load(File7, backend);
        long stateBytes = model.StateBytesPerSequence;
        // Room for the live state + 2 checkpoints.
        var shared = new MemoryBudget(3 * stateBytes);
        using (var store = model.CreateStateStore(1, new RecurrentStoreOptions { CheckpointInterval = 4, Budget = shared }))
        {
            var logits = new float[256];
            model.Forward(ForwardBatch.ForSequence(Bytes("0123456789abcdefghij"), 0), store, logits, false);
            Assert.That(store.Checkpoints.Select(c => c.Length), Is.EqualTo(new[] { 12, 16, 20 }).Or.EqualTo(new[] { 16, 20 }));
            Assert.That(store.Checkpoints.Count(c => c.InMemory), Is.EqualTo(2));
            Assert.That(shared.Used, Is.EqualTo(3 * stateBytes));
            Assert.That(store.Stats.Dropped, Is.GreaterThan(0));
        }
        Assert.That(shared.Used, Is.EqualTo(0), "disposing the store returns every byte");

        string disk = Path.Combine(Path.GetTempPath(), $"engine-rwkv-{Guid.NewGuid():N}.bin");
        try
        {
            using var store = model.CreateStateStore(1, new RecurrentStoreOptions { CheckpointInterval = 4, Budget = shared, DiskPath = disk });
            var logits = new float[256];
            model.Forward(ForwardBatch.ForSequence(Bytes("0123456789abcdefghij"), 0), store, logits, false);
            Assert.That(store.Checkpoints.Select(c => c.Length), Is.EqualTo(new[] { 4, 8, 12, 16, 20 }));
            Assert.That(store.Checkpoints.Count(c => c.InMemory), Is.EqualTo(2));
            Assert.That(store.Checkpoints.Where(c => !c.InMemory).Select(c => c.Length), Is.EqualTo(new[] { 4, 8, 12 }), "least recently used offloaded");
            Assert.That(store.Stats.Offloaded, Is.EqualTo(3));
        }
        finally { File.Delete(disk); }
    }

    [Test]
    public void MixedBatch_OfTwoSequences_EqualsSeparateRuns()
    {
        using var backend = RwkvFixtures.Backend("reference");
        using var model = RwkvFixtures.Load("tiny-rwkv-6v0-3m-Q5_0.bin", backend);
        using var store = model.CreateStateStore(2, new RecurrentStoreOptions { CheckpointInterval = 0 });
        var a = Bytes("alpha beta");
        var b = Bytes("gamma");
        var logits = new float[256];
        model.Forward(ForwardBatch.ForSequence(a.AsSpan(0, 4), 0, seqId: 0), store, logits, false);
        // One batch: the rest of sequence 0 followed by all of sequence 1; all-position logits.
        var tokens = a.Skip(4).Concat(b).ToArray();
        var positions = Enumerable.Range(4, a.Length - 4).Concat(Enumerable.Range(0, b.Length)).ToArray();
        var seqs = Enumerable.Repeat(0, a.Length - 4).Concat(Enumerable.Repeat(1, b.Length)).ToArray();
        var all = new float[tokens.Length * 256];
        model.Forward(new ForwardBatch(tokens, positions, seqs), store, all, allLogits: true);
        AssertSame("reference", all.AsSpan((a.Length - 4 - 1) * 256, 256).ToArray(), Fresh(model, a), "(sequence 0)");
        AssertSame("reference", all.AsSpan((tokens.Length - 1) * 256, 256).ToArray(), Fresh(model, b), "(sequence 1)");
    }

    [Test]
    public void Forward_AtWrongPosition_Throws()
    {
        using var backend = RwkvFixtures.Backend("cpu");
        using var model = RwkvFixtures.Load(File7, backend);
        using var store = model.CreateStateStore();
        var logits = new float[256];
        model.Forward(ForwardBatch.ForSequence(Bytes("ab"), 0), store, logits, false);
        Assert.Throws<ArgumentException>(() => model.Forward(ForwardBatch.ForSequence(Bytes("c"), 5), store, logits, false));
    }
}
