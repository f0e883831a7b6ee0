// Owns: agreement of Dequant.Row with llama.cpp-quantized reference fixtures: every quantized tensor of
// rand-llama-<T>.gguf, dequantized, must be close to the same tensor of the F32 master (rand-llama-F32.gguf);
// and for F16 / BF16 / Q8_0 / Q4_0 (whose llama-quantize path is ggml's plain reference quantizer) Quantize.Row of the master
// must reproduce the file's bytes.
using Engine.Formats;
using Engine.Tensors.Quants;

namespace Engine.Tensors.Tests;

public class DequantFixtureTests
{
    private const string Dir = "reference/llama-256x2/";

    // Per-type bound on the relative RMSE (‖deq − master‖ / ‖master‖) of a whole tensor.
    private static double Bound(DType t) => t switch
    {
        DType.F16 => 1e-3,
        DType.BF16 => 5e-3,
        DType.Q8_0 => 0.01,
        DType.Q6_K => 0.03,
        DType.Q4_K => 0.1,
        DType.Q4_0 => 0.15,
        _ => throw new ArgumentException(t.ToString()),
    };

    [TestCase("F16")]
    [TestCase("BF16")]
    [TestCase("Q8_0")]
    [TestCase("Q4_0")]
    [TestCase("Q4_K")]
    [TestCase("Q6_K")]
    [TestCase("Q4_K_M")]
    public void QuantizedTensors_AreCloseToF32Master(string fixture)
    {
        using var master = ModelFiles.Open(SharedData.Get(Dir + "rand-llama-F32.gguf"));
        using var file = ModelFiles.Open(SharedData.Get(Dir + $"rand-llama-{fixture}.gguf"));
        int checkedTensors = 0;
        var seen = new SortedDictionary<string, double>();
        foreach (var t in file.Tensors)
        {
            if (t.Type == DType.F32) continue;
            var m = master.GetTensor(t.Name);
            Assert.That(m.Type, Is.EqualTo(DType.F32));
            Assert.That(t.Shape, Is.EqualTo(m.Shape), t.Name);
            var deq = new float[t.ElementCount];
            Dequant.Row(t.Type, t.Bytes, deq);
            var reference = new float[m.ElementCount];
            Dequant.Row(DType.F32, m.Bytes, reference);
            double num = 0, den = 0;
            for (int i = 0; i < deq.Length; i++) { double d = (double)deq[i] - reference[i]; num += d * d; den += (double)reference[i] * reference[i]; }
            double rel = Math.Sqrt(num / den);
            Assert.That(rel, Is.LessThan(Bound(t.Type)), $"{fixture} {t.Name} ({t.Type})");
            string key = t.Type.ToString();
            seen[key] = Math.Max(seen.GetValueOrDefault(key), rel);
            checkedTensors++;
        }
        Assert.That(checkedTensors, Is.GreaterThanOrEqualTo(7), "expected the 2-D weights to be quantized");
        foreach (var (type, worst) in seen) TestContext.Out.WriteLine($"{fixture}: {type} worst relative RMSE vs F32 master {worst:G3}");
    }

    [TestCase("F16")]
    [TestCase("BF16")]
    [TestCase("Q8_0")]
    [TestCase("Q4_0")]
    public void ReferenceQuantizer_ReproducesLlamaQuantizeBytes(string fixture)
    {
        using var master = ModelFiles.Open(SharedData.Get(Dir + "rand-llama-F32.gguf"));
        using var file = ModelFiles.Open(SharedData.Get(Dir + $"rand-llama-{fixture}.gguf"));
        long total = 0, differing = 0;
        foreach (var t in file.Tensors)
        {
            if (t.Type == DType.F32) continue;
            var x = new float[t.ElementCount];
            Dequant.Row(DType.F32, master.GetTensor(t.Name).Bytes, x);
            byte[] mine = Quantize.Row(t.Type, x);
            ReadOnlySpan<byte> theirs = t.Bytes;
            Assert.That(mine.Length, Is.EqualTo(theirs.Length), t.Name);
            for (int i = 0; i < mine.Length; i++) if (mine[i] != theirs[i]) differing++;
            total += mine.Length;
        }
        TestContext.Out.WriteLine($"{fixture}: {differing} of {total} bytes differ from llama-quantize");
        Assert.That(differing, Is.EqualTo(0));
    }
}
