// Tests of Engine.Memory.Paged.PagedKvStore: rows land at block table[p / B] slot p % B, Pages merges physically
// consecutive blocks, copy-on-write copies, budget sizing, bound-table errors; and paged attention through the model:
// stories260K logits through a PagedKvStore (scrambled block tables, odd block sizes) are bitwise identical to the
// contiguous store for a prompt batch and for one-token decode (F32 KV, same kernels, same summation order).
using Engine.Formats;
using Engine.Kernels;
using Engine.Memory;
using Engine.Memory.Paged;
using Engine.Model;

namespace Engine.Runtime.Tests;

public unsafe class PagedKvStoreTests
{
    private static float[] Rows(int n, int dim, float offset)
    {
        var x = new float[n * dim];
        for (int i = 0; i < x.Length; i++) x[i] = offset + i;
        return x;
    }

    [Test]
    public void RowsLiveInTheirBlockSlotAndPagesFollowTheTable()
    {
        using var kv = new PagedKvStore(layerCount: 2, kvDim: 3, blockSize: 4, blockCount: 8, capacity: 32, sequenceCapacity: 2);
        kv.Bind(1, [5, 6, 2], length: 0);   // blocks 5, 6 are consecutive → one page; 2 → another
        var k = Rows(10, 3, 0); var v = Rows(10, 3, 1000);
        kv.Write(1, 1, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], k, v);
        var pages = kv.Pages(1, 1).ToArray();
        Assert.Multiple(() =>
        {
            Assert.That(pages.Length, Is.EqualTo(2));
            Assert.That(pages[0].TokenCount, Is.EqualTo(8));
            Assert.That(pages[0].StartPosition, Is.EqualTo(0));
            Assert.That(pages[1].TokenCount, Is.EqualTo(2));
            Assert.That(pages[1].StartPosition, Is.EqualTo(8));
            Assert.That(new ReadOnlySpan<float>((void*)pages[0].K, 24).ToArray(), Is.EqualTo(k[..24]));
            Assert.That(new ReadOnlySpan<float>((void*)pages[1].V, 6).ToArray(), Is.EqualTo(v[24..30]));
            // Block 2 starts 2 blocks × 4 slots × 3 floats after block 0; block 5 = page 0.
            Assert.That((long)(pages[0].K - pages[1].K), Is.EqualTo((5 - 2) * 4 * 3 * sizeof(float)));
            Assert.That(kv.Length(0, 1), Is.EqualTo(0), "other layer untouched");
        });
        Assert.Throws<InvalidOperationException>(() => kv.Write(0, 1, Enumerable.Range(0, 13).ToArray(), new float[39], new float[39]),
            "a write past the bound table fails");
    }

    [Test]
    public void CopyBlockCopiesThePrefixOfEveryLayer()
    {
        using var kv = new PagedKvStore(2, 2, 4, 4, 16, 2);
        kv.Bind(0, [1], 0);
        for (int l = 0; l < 2; l++) kv.Write(l, 0, [0, 1, 2], Rows(3, 2, 10 * l), Rows(3, 2, 100 + 10 * l));
        kv.CopyBlock(1, 3, 2);
        kv.Bind(1, [3], 2);
        for (int l = 0; l < 2; l++)
        {
            var p = kv.Pages(l, 1)[0];
            Assert.That(p.TokenCount, Is.EqualTo(2));
            Assert.That(new ReadOnlySpan<float>((void*)p.K, 4).ToArray(), Is.EqualTo(Rows(2, 2, 10 * l)));
            Assert.That(new ReadOnlySpan<float>((void*)p.V, 4).ToArray(), Is.EqualTo(Rows(2, 2, 100 + 10 * l)));
        }
    }

    [Test]
    public void WritesStayInsideTheBoundTableAndBudgetsBuyWholeBlocks()
    {
        using var kv = new PagedKvStore(1, 2, 4, 3, 16);
        kv.Bind(0, [2, 0], 0);
        kv.Write(0, 0, [0, 1, 2, 3, 4], new float[10], new float[10]);
        Assert.Throws<InvalidOperationException>(() => kv.Write(0, 0, [5, 6, 7, 8], new float[8], new float[8]),
            "position 8 needs a third block; the table has 2 (the store owns no block ids: the pool does)");
        kv.Clear(0);
        Assert.That(kv.Length(0, 0), Is.Zero);
        Assert.That(kv.BlockTable(0), Is.Empty);
        Assert.That(PagedKvStore.BlockCountForBudget(10 * 2 * 4 * 16 * 32 * 4 + 5, layerCount: 4, kvDim: 32, blockSize: 16), Is.EqualTo(10));
    }

    /// <summary>A store whose sequence 0 uses a scrambled block table: a first third of consecutive ids (merged into one
    /// page) high in the pool, then descending ids (one page each).</summary>
    private static PagedKvStore Scrambled(ModelConfig c, int blockSize, int tokens)
    {
        int blocks = (tokens + blockSize - 1) / blockSize;
        var kv = new PagedKvStore(c.LayerCount, c.KvDim, blockSize, 2 * blocks + 3, tokens, 1);
        int third = blocks / 3;
        var table = Enumerable.Range(0, blocks).Select(i => i < third ? blocks + 1 + i : blocks - 1 - (i - third)).ToArray();
        Assert.That(table.Distinct().Count(), Is.EqualTo(blocks));
        kv.Bind(0, table, 0);
        return kv;
    }

    [TestCase(16)]
    [TestCase(7)]
    public void PagedLogitsEqualContiguousForPromptBatchAndDecode(int blockSize)
    {
        var tokens = Fixtures.Seq128();
        using var file = ModelFiles.Open(SharedData.Get("reference/stories260K/stories260K.gguf"));
        using var backend = new CpuBackend(2);
        using var model = ModelLoader.Load(file, backend);
        int vocab = model.Config.VocabSize, n = tokens.Length, half = n / 2;

        // Prompt batch of the first half, then one token per forward.
        float[] Run(IKvStore kv)
        {
            var logits = new float[n * vocab];
            model.Forward(ForwardBatch.ForSequence(tokens.AsSpan(0, half), 0), kv, logits, allLogits: true);
            for (int t = half; t < n; t++)
                model.Forward(ForwardBatch.ForSequence(tokens.AsSpan(t, 1), t), kv, logits.AsSpan(t * vocab, vocab), allLogits: false);
            return logits;
        }
        using var contiguous = model.CreateKvStore(n);
        using var paged = Scrambled(model.Config, blockSize, n);
        var expected = Run(contiguous);
        var actual = Run(paged);
        Assert.That(paged.Pages(0, 0).Length, Is.GreaterThan(1), "the table really is split into several pages");
        Assert.That(actual, Is.EqualTo(expected), "F32 paged KV must give bitwise the contiguous logits");
    }

    [Test]
    public void MixedSequenceBatchWithLogitRowsMatchesSeparateForwards()
    {
        var tokens = Fixtures.Seq128();
        using var file = ModelFiles.Open(SharedData.Get("reference/stories260K/stories260K.gguf"));
        using var backend = new CpuBackend(2);
        using var model = ModelLoader.Load(file, backend);
        int vocab = model.Config.VocabSize;
        int[] a = tokens[..40], b = tokens[40..75];

        var expected = new float[2 * vocab];
        using (var kv = model.CreateKvStore(64, 2))
        {
            model.Forward(ForwardBatch.ForSequence(a, 0, 0), kv, expected.AsSpan(0, vocab), allLogits: false);
            model.Forward(ForwardBatch.ForSequence(b, 0, 1), kv, expected.AsSpan(vocab, vocab), allLogits: false);
        }
        using var paged = new PagedKvStore(model.Config.LayerCount, model.Config.KvDim, 16, 8, 64, 2);
        paged.Bind(0, [0, 1, 2], 0);   // 40 tokens
        paged.Bind(1, [5, 3, 4], 0);   // 35 tokens
        var mixed = new ForwardBatch([.. a, .. b], [.. Enumerable.Range(0, a.Length), .. Enumerable.Range(0, b.Length)],
            [.. Enumerable.Repeat(0, a.Length), .. Enumerable.Repeat(1, b.Length)]);
        var actual = new float[2 * vocab];
        model.Forward(mixed, paged, [a.Length - 1, a.Length + b.Length - 1], actual);
        // One matmul over both sequences groups rows differently (float32 FMA order): equal to ~1e-5, same argmax.
        var cmp = Fixtures.Compare(expected, actual, vocab, 0.01);
        Assert.That(cmp.MaxAbs, Is.LessThan(1e-4), cmp.ToString());
        Assert.That(cmp.Top1Agree, Is.EqualTo(2));
    }
}
