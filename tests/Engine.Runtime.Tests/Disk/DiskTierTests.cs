// Owns: tests of the disk tier (DiskKvFile slots, KvPage payload round trip for every element type) and of
// TieredKvStore (stories260K logits with cold blocks on disk equal the all-RAM ContiguousKvStore run bit for bit; RAM
// held stays under the budget). Expected values: the plain ContiguousKvStore forward (independent code path) and the
// source bytes themselves.
using Engine.Formats;
using Engine.Kernels;
using Engine.Memory;
using Engine.Memory.Disk;
using Engine.Model;

namespace Engine.Runtime.Tests.Disk;

public unsafe class DiskTierTests
{
    private static string TempPrefix() => Path.Combine(Path.GetTempPath(), "engine-disktest-" + Guid.NewGuid().ToString("N"), "kv");

    [TestCase(KvElementType.F32, 0)]
    [TestCase(KvElementType.F16, 0)]
    [TestCase(KvElementType.Int8, 8)]
    [TestCase(KvElementType.Int4, 8)]
    public void PagePayload_RoundTripsBitExact(KvElementType type, int group)
    {
        const int tokens = 19, stride = 32;
        var layout = KvPageLayout.Of(type, tokens, stride, group);
        var rnd = new Random((int)type + 7);
        byte[] Part(long n) { var b = new byte[n]; rnd.NextBytes(b); return b; }
        byte[] k = Part(layout.KBytes), v = Part(layout.VBytes), ks = Part(layout.KScaleBytes), vs = Part(layout.VScaleBytes);
        var prefix = TempPrefix();
        using var tier = new DiskKvTier(prefix, layout.TotalBytes, slotsPerSegment: 2);
        fixed (byte* kp = k, vp = v, ksp = ks, vsp = vs)
        {
            var page = new KvPage((nint)kp, (nint)vp, tokens, 5, stride)
            { Type = type, GroupSize = group, KScale = ks.Length > 0 ? (nint)ksp : 0, VScale = vs.Length > 0 ? (nint)vsp : 0 };
            // Fill a few slots so the page under test lands in a second segment file.
            var filler = new[] { tier.Offload(page), tier.Offload(page) };
            var disk = tier.Offload(page);
            Assert.That(disk.Slot, Is.EqualTo(2));
            Assert.That(File.Exists(prefix + ".1.bin"), "a second segment file was created");
            AssertSame(disk.Page, k, v, ks, vs);
            var ram = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)layout.TotalBytes, 64);
            try
            {
                var back = tier.Promote(disk, ram);
                AssertSame(back, k, v, ks, vs);
                Assert.That(back with { K = 0, V = 0, KScale = 0, VScale = 0 }, Is.EqualTo(page with { K = 0, V = 0, KScale = 0, VScale = 0 }));
                Assert.That(tier.File.UsedSlots, Is.EqualTo(2));
                Assert.That(tier.File.Allocate(), Is.EqualTo(2), "the promoted page's slot is reused first");
            }
            finally { System.Runtime.InteropServices.NativeMemory.AlignedFree(ram); }
            foreach (var f in filler) tier.Release(f);
        }
        Directory.Delete(Path.GetDirectoryName(prefix)!, true);
    }

    private static void AssertSame(KvPage p, byte[] k, byte[] v, byte[] ks, byte[] vs)
    {
        Assert.That(new ReadOnlySpan<byte>((void*)p.K, k.Length).SequenceEqual(k), "K bytes");
        Assert.That(new ReadOnlySpan<byte>((void*)p.V, v.Length).SequenceEqual(v), "V bytes");
        if (ks.Length > 0) Assert.That(new ReadOnlySpan<byte>((void*)p.KScale, ks.Length).SequenceEqual(ks), "K scale bytes");
        if (vs.Length > 0) Assert.That(new ReadOnlySpan<byte>((void*)p.VScale, vs.Length).SequenceEqual(vs), "V scale bytes");
    }

    [Test]
    public void DiskFile_ReopensWithItsUsedSlots_AndRejectsATruncatedSegment()
    {
        var prefix = TempPrefix();
        using (var f = new DiskKvFile(prefix, 100, slotsPerSegment: 4))
        {
            for (int i = 0; i < 6; i++) { int s = f.Allocate(); f.Pointer(s)[0] = (byte)(10 + i); }
            f.Free(1);
            f.Flush();
        }
        using (var f = new DiskKvFile(prefix, 100, slotsPerSegment: 4, usedSlots: [0, 2, 3, 4, 5]))
        {
            Assert.That(f.Pointer(5)[0], Is.EqualTo(15));
            Assert.That(f.Allocate(), Is.EqualTo(1));
            Assert.That(f.Allocate(), Is.EqualTo(6));
        }
        using (var fs = new FileStream(prefix + ".1.bin", FileMode.Open)) fs.SetLength(10);
        Assert.That(() => new DiskKvFile(prefix, 100, slotsPerSegment: 4, usedSlots: [4]),
            Throws.TypeOf<InvalidDataException>().With.Message.Contains("truncated"));
        Directory.Delete(Path.GetDirectoryName(prefix)!, true);
    }

    [Test]
    public void TieredStore_Stories260K_SameLogitsAsAllRam_UnderBudget()
    {
        using var file = ModelFile.Open(SharedData.Get("reference/stories260K/stories260K.gguf"));
        using var backend = new CpuBackend(2);
        using var model = ModelLoader.Load(file, backend);
        var c = model.Config;
        var tokens = Fixtures.Seq128();
        int n = tokens.Length, vocab = c.VocabSize;

        float[] Run(IKvStore kv)
        {
            // Prefill 40 tokens, then decode one by one; keep every step's logits.
            var all = new float[n * vocab];
            model.Forward(ForwardBatch.ForSequence(tokens.AsSpan(0, 40), 0), kv, all.AsSpan(0, 40 * vocab), allLogits: true);
            for (int t = 40; t < n; t++)
                model.Forward(ForwardBatch.ForSequence(tokens.AsSpan(t, 1), t), kv, all.AsSpan(t * vocab, vocab), allLogits: false);
            return all;
        }

        float[] expected;
        using (var plain = new ContiguousKvStore(c.LayerCount, c.KvDim, n)) expected = Run(plain);
        long blockBytes = 2L * 16 * c.KvDim * 4;
        long budget = 6 * blockBytes;   // 6 blocks of 16 tokens across 5 layers: most of the 128-token KV goes to disk
        using var tiered = new TieredKvStore(c.LayerCount, c.KvDim, n, blockSize: 16, ramBudgetBytes: budget);
        var actual = Run(tiered);
        int totalBlocks = c.LayerCount * n / 16;
        Assert.Multiple(() =>
        {
            Assert.That(actual.AsSpan().SequenceEqual(expected), "logits bit-identical to the all-RAM store");
            Assert.That(tiered.PeakRamBytes, Is.LessThanOrEqualTo(budget + c.LayerCount * blockBytes),
                "RAM ≤ budget + one tail block per layer");
            Assert.That(tiered.RamBytes, Is.LessThanOrEqualTo(budget));
            Assert.That(tiered.DiskBlocks + tiered.RamBlocks, Is.EqualTo(totalBlocks));
            Assert.That(tiered.DiskBlocks, Is.GreaterThanOrEqualTo(totalBlocks - 6));
            Assert.That(tiered.OnDisk(0, 0)[0], "the oldest block of layer 0 was moved to disk");
        });
    }

    [Test]
    public void TieredStore_WriteIntoADiskBlockPromotesIt_TruncateFrees()
    {
        const int kvDim = 8;
        using var s = new TieredKvStore(1, kvDim, 64, blockSize: 4, ramBudgetBytes: 0);
        var rows = Enumerable.Range(0, 12 * kvDim).Select(i => (float)i).ToArray();
        s.Write(0, 0, Enumerable.Range(0, 12).ToArray(), rows, rows);
        Assert.That(s.OnDisk(0, 0), Is.EqualTo(new[] { true, true, true }), "budget 0: every full block offloaded");
        s.Truncate(0, 6);
        Assert.That(s.DiskBlocks + s.RamBlocks, Is.EqualTo(2));
        s.Write(0, 0, [6], rows.AsSpan(40, kvDim), rows.AsSpan(40, kvDim));   // into block 1 (on disk) → promoted
        Assert.That(s.Promotions, Is.EqualTo(1));
        var pages = s.Pages(0, 0);
        Assert.That(pages.Length, Is.EqualTo(2));
        float* k1 = (float*)pages[1].K;
        Assert.That(new[] { k1[0], k1[kvDim], k1[2 * kvDim] }, Is.EqualTo(new[] { rows[4 * kvDim], rows[5 * kvDim], rows[40] }));
        Assert.That(pages[1].TokenCount, Is.EqualTo(3));
    }
}

/// <summary>Composition: a policy store (quest selection, h2o retention) over the tiered store with every full block on
/// disk reads the same data as over a plain contiguous store. Expected: the same policy over ContiguousKvStore.</summary>
public class DiskTierCompositionTests
{
    private const int Heads = 4, KvHeads = 2, HeadDim = 16, KvDim = KvHeads * HeadDim;
    private static readonly AttentionParams P = new(Heads, KvHeads, HeadDim, 0.25f);

    private static float[] Run(IKvStore inner, string policy, float[] k, float[] v, float[] q, int len)
    {
        var pb = new Engine.Memory.Policies.PolicyBackend(new ReferenceBackend());
        using var store = new Engine.Memory.Policies.PolicyKvStore(inner, Engine.Memory.Policies.KvPolicySpec.Parse(policy, 0.25));
        pb.Store = store;
        var outAll = new float[len * Heads * HeadDim];
        var pos = Enumerable.Range(0, 48).ToArray();
        store.Write(0, 0, pos, k.AsSpan(0, 48 * KvDim), v.AsSpan(0, 48 * KvDim));
        pb.Attention(q.AsSpan(0, 48 * Heads * HeadDim), pos, store.Pages(0, 0), P, outAll.AsSpan(0, 48 * Heads * HeadDim));
        for (int t = 48; t < len; t++)
        {
            store.Write(0, 0, [t], k.AsSpan(t * KvDim, KvDim), v.AsSpan(t * KvDim, KvDim));
            pb.Attention(q.AsSpan(t * Heads * HeadDim, Heads * HeadDim), [t], store.Pages(0, 0), P, outAll.AsSpan(t * Heads * HeadDim, Heads * HeadDim));
        }
        if (inner is TieredKvStore ts) Assert.That(ts.DiskBlocks, Is.EqualTo(len / 16), "every full block was read from disk");
        return outAll;
    }

    [TestCase("quest")] [TestCase("h2o")] [TestCase("msa")]
    public void PolicyOverDiskBlocks_SameAsOverRam(string policy)
    {
        int len = 160;
        var k = TestData.RandomFloats(len * KvDim, 11); var v = TestData.RandomFloats(len * KvDim, 12); var q = TestData.RandomFloats(len * Heads * HeadDim, 13);
        var expected = Run(new ContiguousKvStore(1, KvDim, 256), policy, k, v, q, len);
        var tiered = new TieredKvStore(1, KvDim, 256, blockSize: 16, ramBudgetBytes: 0);
        var actual = Run(tiered, policy, k, v, q, len);
        Assert.That(actual, Is.EqualTo(expected).Within(1e-5f));
    }
}
