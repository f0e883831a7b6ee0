// Tests: the experimental Memory Caching read mode — with closed gates (gated residual with bias -∞, top-k with mix 0)
// every cached contribution is exactly zero, so all-position logits equal the plain recurrence bit for bit on every
// model file; with open gates the logits change once a segment has been cached (and not before).
// The explicit bench reports next-byte loss (nats/byte) plain vs Memory Caching on the tiny models.
using Engine.Model;

namespace Engine.Recurrent.Tests;

public class MemoryCachingTests
{
    private static int[] Text(int n)
    {
        var bytes = File.ReadAllBytes(SharedData.Get("DESIGN.md"));
        return bytes.Take(n).Select(b => (int)b).ToArray();
    }

    private static float[] AllLogits(RwkvModel model, int[] tokens, MemoryCachingOptions? mc)
    {
        model.MemoryCaching = mc;
        using var store = model.CreateStateStore(1, new Engine.Memory.Recurrent.RecurrentStoreOptions { CheckpointInterval = 0 });
        var logits = new float[tokens.Length * 256];
        model.Forward(ForwardBatch.ForSequence(tokens, 0), store, logits, allLogits: true);
        model.MemoryCaching = null;
        return logits;
    }

    private static IEnumerable<TestCaseData> Cases()
    {
        foreach (var f in new[] { "tiny-rwkv-5v2-730K-FP32.bin", "tiny-rwkv-6v0-3m-Q5_0.bin", "tiny-rwkv-7v0-834K-FP32.bin" })
            foreach (var mode in new[] { MemoryCachingMode.GatedResidual, MemoryCachingMode.TopK })
                yield return new TestCaseData(f, mode);
    }

    [TestCaseSource(nameof(Cases))]
    public void ClosedGates_ReduceExactlyToThePlainRecurrence(string file, MemoryCachingMode mode)
    {
        using var backend = RwkvFixtures.Backend("cpu");
        using var model = RwkvFixtures.Load(file, backend);
        model.SequenceChunk = 8; // the plain run uses the same chunk boundaries as the segmented one
        var tokens = Text(96);
        var open = new MemoryCachingOptions { SegmentLength = 8, Mode = mode, GateBias = 0f, Mix = 1f };
        var plain = AllLogits(model, tokens, null);
        var closed = AllLogits(model, tokens, open.Closed());
        Assert.That(closed, Is.EqualTo(plain), "closed gates must reduce exactly to the plain recurrence");

        var opened = AllLogits(model, tokens, open);
        Assert.That(opened.AsSpan(0, 8 * 256).ToArray(), Is.EqualTo(plain.AsSpan(0, 8 * 256).ToArray()), "nothing cached during the first segment");
        Assert.That(opened.AsSpan(8 * 256).ToArray(), Is.Not.EqualTo(plain.AsSpan(8 * 256).ToArray()), "open gates read the cached segments");
    }

    [Explicit("benchmark: next-byte loss with Memory Caching")]
    [TestCaseSource(typeof(RwkvFixtures), nameof(RwkvFixtures.Files))]
    public void NextByteLoss_PlainVsMemoryCaching(string file)
    {
        using var backend = RwkvFixtures.Backend("cpu");
        using var model = RwkvFixtures.Load(file, backend);
        var tokens = Text(2048);
        double Loss(float[] logits)
        {
            double nll = 0;
            for (int t = 0; t + 1 < tokens.Length; t++)
            {
                var row = logits.AsSpan(t * 256, 256);
                float max = float.NegativeInfinity;
                foreach (var v in row) max = Math.Max(max, v);
                double z = 0;
                foreach (var v in row) z += Math.Exp(v - max);
                nll += Math.Log(z) + max - row[tokens[t + 1]];
            }
            return nll / (tokens.Length - 1);
        }
        var line = $"{file}: plain {Loss(AllLogits(model, tokens, null)):F4}";
        foreach (var (name, o) in new (string, MemoryCachingOptions)[]
        {
            ("gated bias -4", new() { SegmentLength = 128, GateBias = -4f }),
            ("gated bias -2", new() { SegmentLength = 128, GateBias = -2f }),
            ("top-2 mix 0.1", new() { SegmentLength = 128, Mode = MemoryCachingMode.TopK, TopK = 2, Mix = 0.1f }),
            ("top-2 mix 0.5", new() { SegmentLength = 128, Mode = MemoryCachingMode.TopK, TopK = 2, Mix = 0.5f }),
        })
            line += $", {name} {Loss(AllLogits(model, tokens, o)):F4}";
        TestContext.Out.WriteLine(line + " (nats/byte over 2048 bytes of DESIGN.md)");
    }
}
