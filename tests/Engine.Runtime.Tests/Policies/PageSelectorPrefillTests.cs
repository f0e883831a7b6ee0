// Owns: tests of PageSelector's prefill-chunk selection (n > 1 query rows) through PolicyKvStore + PolicyBackend over a
// float32 store: chunked prefill with a budget covering the context equals plain causal attention (reference backend);
// with a small budget every query row equals an independent float64 causal attention over its KV head's reported blocks
// (per-head gather/scatter of the chunk's rows); the read set always holds the sinks, the block before the chunk and the
// chunk's own blocks; a planted needle block is read by a chunk whose rows look for it; the per-chunk read set is
// ≤ ⌈budget / G⌉·G + chunk + G whatever the length (property over lengths and chunk sizes, both one- and two-level);
// mass-feedback retentions keep the full prefill path. Expected values come from the reference backend or float64
// recomputation from the raw K/V.
using Engine.Kernels;
using Engine.Memory;
using Engine.Memory.Policies;

namespace Engine.Runtime.Tests.Policies;

public class PageSelectorPrefillTests
{
    private const int Heads = 4, KvHeads = 2, HeadDim = 16, KvDim = KvHeads * HeadDim, Group = Heads / KvHeads, G = 16;
    private const int Row = Heads * HeadDim;
    private static readonly AttentionParams P = new(Heads, KvHeads, HeadDim, 0.25f);

    private static (PolicyKvStore Store, PolicyBackend Backend) Make(KvPolicySpec spec, int capacity, IBackend? backend = null)
    {
        var pb = new PolicyBackend(backend ?? new ReferenceBackend());
        var store = new PolicyKvStore(new ContiguousKvStore(1, KvDim, capacity), spec);
        pb.Store = store;
        return (store, pb);
    }

    /// <summary>Writes rows [start, start + n) then attends the chunk's n query rows (q: [len, Row]) at those positions.</summary>
    private static float[] Chunk(IKvStore store, IBackend backend, float[] k, float[] v, float[] q, int start, int n)
    {
        var pos = Enumerable.Range(start, n).ToArray();
        store.Write(0, 0, pos, k.AsSpan(start * KvDim, n * KvDim), v.AsSpan(start * KvDim, n * KvDim));
        var o = new float[n * Row];
        backend.Attention(q.AsSpan(start * Row, n * Row), pos, store.Pages(0, 0), P, o);
        return o;
    }

    /// <summary>float64 causal attention of row r (position pos) of query head j over the given tokens of its KV head.</summary>
    private static void Expected(float[] k, float[] v, float[] q, int pos, int j, IEnumerable<int> tokens, Span<float> dst)
    {
        int h = j / Group;
        var t = tokens.Where(x => x <= pos).ToArray();
        var s = t.Select(x => P.Scale * Enumerable.Range(0, HeadDim).Sum(c => (double)q[pos * Row + j * HeadDim + c] * k[x * KvDim + h * HeadDim + c])).ToArray();
        double mx = s.Max(), z = s.Sum(x => Math.Exp(x - mx));
        for (int c = 0; c < HeadDim; c++)
            dst[c] = (float)(t.Select((x, i) => Math.Exp(s[i] - mx) * v[x * KvDim + h * HeadDim + c]).Sum() / z);
    }

    [TestCase("quest")] [TestCase("msa")] [TestCase("int8+quest")]
    public void ChunkedPrefill_BudgetCoveringTheContext_EqualsFullAttention(string policy)
    {
        int len = 700, chunk = 96;
        var k = TestData.RandomFloats(len * KvDim, 1); var v = TestData.RandomFloats(len * KvDim, 2); var q = TestData.RandomFloats(len * Row, 3);
        using var plain = new ContiguousKvStore(1, KvDim, len);
        var (store, pb) = Make(KvPolicySpec.Parse(policy, 1.0, 4096), len);
        using (store)
            for (int start = 0; start < len; start += chunk)
            {
                int n = Math.Min(chunk, len - start);
                var expected = Chunk(plain, new ReferenceBackend(), k, v, q, start, n);
                var actual = Chunk(store, pb, k, v, q, start, n);
                if (policy.StartsWith("int8")) continue;   // int8 tier: only the selection path is exercised (quantized rows differ)
                Assert.That(actual, Is.EqualTo(expected).Within(1e-5f), $"chunk at {start}");
                Assert.That(store.LastReadTokens, Is.EqualTo(start + n), "budget covers everything: every token read");
            }
    }

    [TestCase("quest", false)] [TestCase("msa", false)] [TestCase("quest", true)] [TestCase("msa", true)]
    public void ChunkedPrefill_SmallBudget_EachRowEqualsCausalAttentionOverItsHeadsBlocks(string policy, bool twoLevel)
    {
        // two-level needs > 4·8 super-blocks of 16 blocks: > 8192 tokens; chunk of 40 rows not block aligned
        int prefix = twoLevel ? 16 * 16 * 40 + 5 : 611, chunk = 40, len = prefix + chunk, budget = 64;
        var k = TestData.RandomFloats(len * KvDim, 4); var v = TestData.RandomFloats(len * KvDim, 5); var q = TestData.RandomFloats(len * Row, 6, 2f);
        var (store, pb) = Make(KvPolicySpec.Parse(policy, 1.0, budget), len);
        using (store)
        {
            store.Write(0, 0, Enumerable.Range(0, prefix).ToArray(), k.AsSpan(0, prefix * KvDim), v.AsSpan(0, prefix * KvDim));
            var actual = Chunk(store, pb, k, v, q, prefix, chunk);
            var sel = store.Selector!;
            Assert.That(sel.LastWasPerHead, Is.True);
            Assert.That(sel.LastWasTwoLevel, Is.EqualTo(twoLevel));
            int blocks = (len + G - 1) / G, first = prefix / G;
            var expected = new float[chunk * Row];
            for (int h = 0; h < KvHeads; h++)
            {
                var chosen = sel.LastSelection(h).ToArray();
                Assert.That(chosen, Is.Ordered.Ascending.And.Unique);
                Assert.That(chosen, Does.Contain(0), "sink block");
                for (int b = first - 1; b < blocks; b++) Assert.That(chosen, Does.Contain(b), $"local window / chunk block {b}");
                Assert.That(chosen.Count(b => b < first - 1), Is.LessThan(first - 1), "the prefix is not read whole");
                var tokens = chosen.SelectMany(b => Enumerable.Range(b * G, Math.Min(G, len - b * G))).ToArray();
                for (int r = 0; r < chunk; r++)
                    for (int j = h * Group; j < (h + 1) * Group; j++)
                        Expected(k, v, q, prefix + r, j, tokens, expected.AsSpan(r * Row + j * HeadDim, HeadDim));
            }
            Assert.That(actual, Is.EqualTo(expected).Within(1e-5f));
        }
    }

    [TestCase("quest")] [TestCase("msa")]
    public void ChunkWhoseRowsLookForAPlantedNeedle_ReadsItsBlock(string policy)
    {
        // 3000 small random keys; KV head 0's needle at token 700 (block 43), KV head 1's at 2100 (block 131). The chunk
        // (64 rows at 3000..3063) has noisy rows that all lean towards their group's needle direction.
        int prefix = 3000, chunk = 64, len = prefix + chunk, n0 = 700, n1 = 2100;
        var k = TestData.RandomFloats(len * KvDim, 10, 0.1f); var v = TestData.RandomFloats(len * KvDim, 11, 0.1f);
        var q = TestData.RandomFloats(len * Row, 12, 0.5f);
        for (int c = 0; c < HeadDim; c++)
        {
            float d0 = ((c * 7) % 3) - 1, d1 = ((c * 5 + 1) % 3) - 1;
            k[n0 * KvDim + c] = 3 * d0; v[n0 * KvDim + c] = 5;
            k[n1 * KvDim + HeadDim + c] = 3 * d1; v[n1 * KvDim + HeadDim + c] = -5;
            for (int r = prefix; r < len; r++)
                for (int j = 0; j < Group; j++) { q[r * Row + j * HeadDim + c] += 3 * d0; q[r * Row + (Group + j) * HeadDim + c] += 3 * d1; }
        }
        var (store, pb) = Make(KvPolicySpec.Parse(policy, 1.0, 128), len);
        using (store)
        {
            store.Write(0, 0, Enumerable.Range(0, prefix).ToArray(), k.AsSpan(0, prefix * KvDim), v.AsSpan(0, prefix * KvDim));
            var o = Chunk(store, pb, k, v, q, prefix, chunk);
            Assert.That(store.Selector!.LastSelection(0).ToArray(), Does.Contain(n0 / G));
            Assert.That(store.Selector.LastSelection(1).ToArray(), Does.Contain(n1 / G));
            Assert.That(store.LastReadTokens, Is.LessThan(prefix / 4));
            for (int r = 0; r < chunk; r++)
            {
                double g0 = o.AsSpan(r * Row, Group * HeadDim).ToArray().Average();
                double g1 = o.AsSpan(r * Row + Group * HeadDim, Group * HeadDim).ToArray().Average();
                Assert.That(g0, Is.GreaterThan(4), $"row {r}: group 0 retrieves its needle");
                Assert.That(g1, Is.LessThan(-4), $"row {r}: group 1 retrieves its needle");
            }
        }
    }

    [Test]
    public void PerChunkReadSet_IsBoundedByBudgetPlusChunkPlusLocalWindow_WhateverTheLength()
    {
        const int budget = 128;
        var rng = new Random(7);
        foreach (string policy in new[] { "quest", "msa" })
            foreach (int len in new[] { 900, 4000, 12000 })
            {
                var k = TestData.RandomFloats(len * KvDim, len); var v = TestData.RandomFloats(len * KvDim, len + 1); var q = TestData.RandomFloats(len * Row, len + 2);
                var (store, pb) = Make(KvPolicySpec.Parse(policy, 1.0, budget), len, new CpuBackend(1));
                using (store)
                {
                    int start = 0;
                    while (start < len)
                    {
                        int n = Math.Min(len - start, 1 + rng.Next(200));
                        Chunk(store, pb, k, v, q, start, n);
                        // per KV head (LastReadTokens is the mean over heads): budget + the chunk + one block of rounding
                        long bound = (budget + G - 1) / G * G + n + G;
                        Assert.That(store.LastReadTokens, Is.LessThanOrEqualTo(Math.Max(bound, start + n)),
                            $"{policy} len {len}: chunk {start}+{n}");
                        if (start > 4 * budget)
                            for (int h = 0; h < KvHeads; h++)
                            {
                                var sel = store.Selector!.LastSelection(h).ToArray();
                                long tokens = sel.Sum(b => (long)Math.Min(G, start + n - b * G));
                                Assert.That(tokens, Is.LessThanOrEqualTo(bound), $"{policy} len {len}: head {h} chunk {start}+{n}");
                            }
                        start += n;
                    }
                }
            }
    }

    [Test]
    public void MassFeedbackRetention_KeepsTheFullPrefillPath()
    {
        // h2o + quest: a prefill chunk reads every kept token (attention statistics), selection applies at decode only
        int len = 800, chunk = 100;
        var k = TestData.RandomFloats(len * KvDim, 20); var v = TestData.RandomFloats(len * KvDim, 21); var q = TestData.RandomFloats(len * Row, 22);
        var (store, pb) = Make(KvPolicySpec.Parse("h2o+quest", 1.0, 64), len);
        using (store)
            for (int start = 0; start < len; start += chunk)
            {
                Chunk(store, pb, k, v, q, start, chunk);
                Assert.That(store.LastReadTokens, Is.EqualTo(start + chunk));
            }
    }
}
