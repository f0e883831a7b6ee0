// Owns: the property "prefilling a prompt in one batch gives the same logits as decoding it token by token" on the
// tiny synthetic model (SyntheticModel "tiny", 2 threads) for quantized weights whose activations are Q8-quantized.
// Why it is a separate test: Q8 activation rounding is discontinuous, so a 1-ulp difference between the batched and
// the single-token kernels can flip one rounding and grow to ~0.5 % of the largest logit (it did: Avx2Batch4 summed
// Q4_0/Q8_0 blocks in another order than the single-row kernels). Limited to < 256 positions: from 256 cached keys a
// decode step splits attention over key blocks (CpuBackend.AttentionCore) and merges partial softmaxes, a different
// float order than the batched path, so single tokens there may still differ by a rounding flip (~3e-3 of max logit).
using Engine.Formats;
using Engine.Model;
using Engine.Runtime.Benchmarking;
using Engine.Tensors;

namespace Engine.Runtime.Tests;

[NonParallelizable]
public class BatchDecodeConsistencyTests
{
    private string _dir = "";

    [SetUp] public void SetUp() { _dir = Path.Combine(Path.GetTempPath(), "engine-batchdecode-test-" + Guid.NewGuid().ToString("N")); Directory.CreateDirectory(_dir); }
    [TearDown] public void TearDown() { if (Directory.Exists(_dir)) Directory.Delete(_dir, true); }

    [TestCase(DType.Q4_0)]
    [TestCase(DType.Q8_0)]
    public void BatchedPrefillEqualsTokenByTokenDecode(DType type)
    {
        const int n = 120;
        string path = SyntheticModel.Ensure(SyntheticModel.Tiny, type, _dir);
        using var file = ModelFiles.Open(path);
        using var backend = Backends.Create("cpu", 2);
        using var model = ModelLoader.Load(file, backend);
        int vocab = model.Config.VocabSize;
        var ids = Enumerable.Range(0, n).Select(i => (i * 37 + 11) % vocab).ToArray();
        var batched = new float[n * vocab];
        using (var kv = model.CreateKvStore(n)) model.Forward(ForwardBatch.ForSequence(ids, 0), kv, batched, allLogits: true);
        var decoded = new float[n * vocab];
        using (var kv = model.CreateKvStore(n))
            for (int i = 0; i < n; i++) model.Forward(ForwardBatch.ForSequence([ids[i]], i), kv, decoded.AsSpan(i * vocab, vocab), allLogits: true);
        double scale = decoded.Max(Math.Abs), maxDiff = 0;
        int worst = 0;
        for (int i = 0; i < decoded.Length; i++)
        {
            double d = Math.Abs(batched[i] - decoded[i]);
            if (d > maxDiff) { maxDiff = d; worst = i / vocab; }
        }
        Assert.That(maxDiff, Is.LessThanOrEqualTo(1e-5 * scale), $"max |Δ| {maxDiff:E3} at token {worst}, max |logit| {scale:E3}");
    }
}
