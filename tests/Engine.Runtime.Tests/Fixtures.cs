// Test helpers: reading the shared reference fixtures (raw float32 logits, token lists) and comparing logit matrices
// the way /work/shared/reference/README.md measures them (max |Δ|, KL(P_expected ‖ P_actual) mean, top-1 agreement
// at positions whose expected top-1 − top-2 margin exceeds a threshold).
using System.Text.Json;
using Engine.Formats;
using Engine.Kernels;
using Engine.Memory;
using Engine.Model;

namespace Engine.Runtime.Tests;

public sealed record LogitComparison(double MaxAbs, double MeanAbs, double KlMean, double KlMax, int Top1Agree,
    int MarginPositions, int MarginAgree, int Positions)
{
    public double MarginAgreeFraction => MarginPositions == 0 ? 1 : MarginAgree / (double)MarginPositions;
    public override string ToString() =>
        $"max|Δ| {MaxAbs:E3}, mean|Δ| {MeanAbs:E3}, KL mean {KlMean:E3} (max {KlMax:E3}), top-1 {Top1Agree}/{Positions}, " +
        $"top-1 where margin > thr {MarginAgree}/{MarginPositions}";
}

public static class Fixtures
{
    public const int Vocab = 512;

    public static float[] ReadLogits(string relative) =>
        System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(SharedData.Get(relative))).ToArray();

    /// <summary>The "ids" array of a token file under reference/tokens.</summary>
    public static int[] TokenFile(string name)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(SharedData.Get("reference/tokens/" + name)));
        return doc.RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
    }

    public static int[] Seq128() => TokenFile("seq128.json");

    /// <summary>Compares [n, vocab] matrices; margins come from <paramref name="expected"/>.</summary>
    public static LogitComparison Compare(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, int vocab, double marginThreshold)
    {
        int n = expected.Length / vocab;
        if (actual.Length != expected.Length) throw new ArgumentException($"lengths differ: {expected.Length} vs {actual.Length}");
        double maxAbs = 0, sumAbs = 0, klSum = 0, klMax = 0;
        int top1 = 0, marginPos = 0, marginAgree = 0;
        for (int t = 0; t < n; t++)
        {
            var e = expected.Slice(t * vocab, vocab);
            var a = actual.Slice(t * vocab, vocab);
            for (int i = 0; i < vocab; i++) { double d = Math.Abs(e[i] - (double)a[i]); maxAbs = Math.Max(maxAbs, double.IsNaN(d) ? double.PositiveInfinity : d); sumAbs += d; }
            double kl = LogitStats.Kl(e, a);
            klSum += kl; klMax = Math.Max(klMax, kl);
            int ea = LogitStats.ArgMax(e, out double margin), aa = LogitStats.ArgMax(a, out _);
            if (ea == aa) top1++;
            if (margin > marginThreshold) { marginPos++; if (ea == aa) marginAgree++; }
        }
        return new LogitComparison(maxAbs, sumAbs / expected.Length, klSum / n, klMax, top1, marginPos, marginAgree, n);
    }



    /// <summary>Runs <paramref name="tokens"/> through the model (one batch, or one token per forward) and returns all logits [n, vocab].</summary>
    public static float[] RunLogits(string modelRelative, IBackend backend, int[] tokens, bool oneByOne)
    {
        using var file = ModelFiles.Open(SharedData.Get(modelRelative));
        return RunLogits(file, backend, tokens, oneByOne);
    }

    public static float[] RunLogits(ModelFile file, IBackend backend, int[] tokens, bool oneByOne)
    {
        using var model = ModelLoader.Load(file, backend);
        int vocab = model.Config.VocabSize;
        using var kv = model.CreateKvStore(tokens.Length);
        var logits = new float[tokens.Length * vocab];
        if (!oneByOne)
            model.Forward(ForwardBatch.ForSequence(tokens, 0), kv, logits, allLogits: true);
        else
            for (int t = 0; t < tokens.Length; t++)
                model.Forward(ForwardBatch.ForSequence(tokens.AsSpan(t, 1), t), kv, logits.AsSpan(t * vocab, vocab), allLogits: false);
        return logits;
    }
}
