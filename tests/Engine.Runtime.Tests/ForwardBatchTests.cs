// The forward pass with several sequences in one batch (ForwardBatch sequence ids → separate KV sequences) must give,
// per sequence, the logits of running that sequence alone; chunked prefill must equal one batch.
using Engine.Formats;
using Engine.Kernels;
using Engine.Model;

namespace Engine.Runtime.Tests;

public class ForwardBatchTests
{
    [Test]
    public void TwoSequencesInOneBatchEqualSeparateRuns()
    {
        using var f = ModelFiles.Open(SharedData.Get("reference/stories260K/stories260K.gguf"));
        using var backend = new CpuBackend(2);
        using var model = ModelLoader.Load(f, backend);
        int v = model.Config.VocabSize;
        int[] a = [1, 403, 407, 261, 378, 432], b = [1, 317, 269, 368];
        var aloneA = Fixtures.RunLogits(f, backend, a, oneByOne: false);
        var aloneB = Fixtures.RunLogits(f, backend, b, oneByOne: false);

        // Step 1: first 4 tokens of A (seq 0) and all of B (seq 1) in one batch; step 2: the rest of A.
        using var kv = model.CreateKvStore(16, sequenceCapacity: 2);
        var step1 = new ForwardBatch([.. a[..4], .. b], [0, 1, 2, 3, 0, 1, 2, 3], [0, 0, 0, 0, 1, 1, 1, 1]);
        var l1 = new float[8 * v];
        model.Forward(step1, kv, l1, allLogits: true);
        var l2 = new float[2 * v];
        model.Forward(new ForwardBatch(a[4..], [4, 5], [0, 0]), kv, l2, allLogits: true);

        double max = 0;
        for (int i = 0; i < 4 * v; i++) max = Math.Max(max, Math.Abs(l1[i] - aloneA[i]));
        for (int i = 0; i < 4 * v; i++) max = Math.Max(max, Math.Abs(l1[4 * v + i] - aloneB[i]));
        for (int i = 0; i < 2 * v; i++) max = Math.Max(max, Math.Abs(l2[i] - aloneA[4 * v + i]));
        Assert.That(max, Is.LessThan(1e-4));
        Assert.That(kv.Length(0, 0), Is.EqualTo(6));
        Assert.That(kv.Length(0, 1), Is.EqualTo(4));
    }

    [Test]
    public void BatchBeyondKvCapacityFailsClearly()
    {
        using var f = ModelFiles.Open(SharedData.Get("reference/stories260K/stories260K.gguf"));
        using var backend = new ReferenceBackend();
        using var model = ModelLoader.Load(f, backend);
        using var kv = model.CreateKvStore(4);
        var ex = Assert.Throws<Engine.Memory.KvCapacityException>(() =>
            model.Forward(ForwardBatch.ForSequence([1, 2, 3, 4, 5], 0), kv, new float[512], allLogits: false));
        Assert.That(ex!.Message, Does.Contain("capacity of 4"));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Forward(ForwardBatch.ForSequence([512], 0), kv, new float[512], false));
    }
}
