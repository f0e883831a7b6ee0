// Tests of Engine.Memory.ContiguousKvStore: round trip through pages, per-layer lengths, truncate/clear,
// capacity and gap errors.
using Engine.Kernels;
using Engine.Memory;

namespace Engine.Runtime.Tests;

public unsafe class KvStoreTests
{
    [Test]
    public void WrittenRowsAreReadBackThroughThePage()
    {
        using var kv = new ContiguousKvStore(layerCount: 2, kvDim: 3, capacity: 8, sequenceCapacity: 2);
        float[] k = [1, 2, 3, 4, 5, 6], v = [-1, -2, -3, -4, -5, -6];
        kv.Write(1, 1, [0, 1], k, v);
        kv.Write(1, 1, [2], [7, 8, 9], [-7, -8, -9]);
        var pages = kv.Pages(1, 1);
        Assert.That(pages.Length, Is.EqualTo(1));
        var p = pages[0];
        Assert.Multiple(() =>
        {
            Assert.That(p.TokenCount, Is.EqualTo(3));
            Assert.That(p.StartPosition, Is.EqualTo(0));
            Assert.That(p.RowStride, Is.EqualTo(3));
            Assert.That(new ReadOnlySpan<float>((void*)p.K, 9).ToArray(), Is.EqualTo(new float[] { 1, 2, 3, 4, 5, 6, 7, 8, 9 }));
            Assert.That(new ReadOnlySpan<float>((void*)p.V, 9).ToArray(), Is.EqualTo(new float[] { -1, -2, -3, -4, -5, -6, -7, -8, -9 }));
            Assert.That(kv.Length(0, 1), Is.EqualTo(0), "other layer untouched");
            Assert.That(kv.Pages(0, 1).Length, Is.EqualTo(0));
            Assert.That(kv.Length(1, 0), Is.EqualTo(0), "other sequence untouched");
        });
    }

    [Test]
    public void TruncateAndClear()
    {
        using var kv = new ContiguousKvStore(1, 2, 4);
        kv.Write(0, 0, [0, 1, 2], new float[6], new float[6]);
        kv.Truncate(0, 1);
        Assert.That(kv.Pages(0, 0)[0].TokenCount, Is.EqualTo(1));
        kv.Write(0, 0, [1], [5, 6], [7, 8]);   // overwrite after truncation
        Assert.That(kv.Length(0, 0), Is.EqualTo(2));
        kv.Clear(0);
        Assert.That(kv.Length(0, 0), Is.EqualTo(0));
    }

    [Test]
    public void PositionPastCapacityIsAClearError()
    {
        using var kv = new ContiguousKvStore(1, 2, 4);
        kv.Write(0, 0, [0, 1, 2, 3], new float[8], new float[8]);
        var ex = Assert.Throws<KvCapacityException>(() => kv.Write(0, 0, [4], new float[2], new float[2]));
        Assert.That(ex!.Message, Does.Contain("capacity of 4"));
        Assert.That(kv.Length(0, 0), Is.EqualTo(4), "a failed write changes nothing");
    }

    [Test]
    public void GapsAndBadIdsAreRejected()
    {
        using var kv = new ContiguousKvStore(1, 2, 8);
        Assert.Throws<ArgumentException>(() => kv.Write(0, 0, [2], new float[2], new float[2]));
        Assert.Throws<ArgumentOutOfRangeException>(() => kv.Write(1, 0, [0], new float[2], new float[2]));
        Assert.Throws<ArgumentOutOfRangeException>(() => kv.Write(0, 1, [0], new float[2], new float[2]));
    }

    [Test]
    public void PageIsWhatTheAttentionKernelConsumes()
    {
        // One query attending over two cached tokens with the reference kernel: the output is the softmax-weighted V.
        using var kv = new ContiguousKvStore(1, 2, 4);
        kv.Write(0, 0, [0, 1], [1, 0, 0, 1], [10, 20, 30, 40]);
        using var b = new Engine.Kernels.ReferenceBackend();
        var o = new float[2];
        b.Attention([1f, 0f], [1], kv.Pages(0, 0), new AttentionParams(1, 1, 2, 1f), o);
        double w0 = Math.Exp(1) / (Math.Exp(1) + 1), w1 = 1 - w0;
        Assert.That(o[0], Is.EqualTo(w0 * 10 + w1 * 30).Within(1e-5));
        Assert.That(o[1], Is.EqualTo(w0 * 20 + w1 * 40).Within(1e-5));
    }
}
