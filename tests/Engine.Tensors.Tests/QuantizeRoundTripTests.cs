// Owns: property tests for Quantize.Row: dequant(quant(x)) ≈ x within a per-type relative-RMSE bound over random
// Gaussian rows of many lengths, plus exactness checks where the format guarantees them.
using Engine.Tensors.Quants;

namespace Engine.Tensors.Tests;

public class QuantizeRoundTripTests
{
    // Relative RMSE bounds for N(0,1) data (measured ≈ 60–80 % of these; see the report).
    private static readonly (DType Type, double Bound)[] Bounds =
    {
        (DType.F16, 5e-4), (DType.BF16, 4e-3), (DType.Q8_0, 0.01), (DType.Q8_1, 0.01), (DType.Q8_K, 0.01),
        (DType.Q4_0, 0.12), (DType.Q4_1, 0.10), (DType.Q5_0, 0.06), (DType.Q5_1, 0.06),
        (DType.Q2_K, 0.40), (DType.Q3_K, 0.20), (DType.Q4_K, 0.10), (DType.Q5_K, 0.055), (DType.Q6_K, 0.025),
    };

    internal static float[] Gaussian(Random rnd, int n, float sigma = 1f)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++)
            x[i] = sigma * (float)(Math.Sqrt(-2 * Math.Log(1 - rnd.NextDouble())) * Math.Cos(2 * Math.PI * rnd.NextDouble()));
        return x;
    }

    internal static double RelRmse(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double num = 0, den = 0;
        for (int i = 0; i < a.Length; i++) { double d = (double)a[i] - b[i]; num += d * d; den += (double)b[i] * b[i]; }
        return Math.Sqrt(num / Math.Max(den, 1e-300));
    }

    [TestCaseSource(nameof(Types))]
    public void RoundTrip_WithinBound(DType type)
    {
        double bound = Bounds.First(b => b.Type == type).Bound;
        var rnd = new Random(1234 + (int)type);
        int bs = type.BlockSize();
        double worst = 0;
        foreach (int blocks in new[] { 1, 2, 3, 5, 8, 13 })
            foreach (float sigma in new[] { 1f, 1e-3f, 300f })
            {
                var x = Gaussian(rnd, blocks * Math.Max(bs, 32), sigma);
                var q = Quantize.Row(type, x);
                Assert.That(q.Length, Is.EqualTo(type.ByteCount(x.Length)));
                var y = new float[x.Length];
                Dequant.Row(type, q, y);
                double e = RelRmse(y, x);
                worst = Math.Max(worst, e);
                Assert.That(e, Is.LessThan(bound), $"{type} n={x.Length} sigma={sigma}");
            }
        TestContext.Out.WriteLine($"{type}: worst relative RMSE {worst:G3} (bound {bound})");
    }

    public static IEnumerable<DType> Types() => Bounds.Select(b => b.Type);

    [TestCaseSource(nameof(Types))]
    public void ZeroRow_IsExact(DType type)
    {
        var x = new float[Math.Max(type.BlockSize(), 32) * 2];
        var y = new float[x.Length];
        y.AsSpan().Fill(99f);
        Dequant.Row(type, Quantize.Row(type, x), y);
        Assert.That(y, Is.All.EqualTo(0f));
    }

    [Test]
    public void Q8_0_RepresentableValues_AreExact()
    {
        // x = k · 0.5 for k in −127..127 with amax = 63.5 → d = 0.5 exactly (fp16), every value exact.
        var x = new float[64];
        for (int i = 0; i < 64; i++) x[i] = ((i * 37) % 255 - 127) * 0.5f;
        x[0] = 63.5f; x[32] = -63.5f;
        var y = new float[64];
        Dequant.Row(DType.Q8_0, Quantize.Row(DType.Q8_0, x), y);
        Assert.That(y, Is.EqualTo(x));
    }

    [Test]
    public void Q8_1_And_Q8_K_CachedSums_MatchQuants()
    {
        var rnd = new Random(3);
        var x = Gaussian(rnd, 512);
        var q1 = Quantize.Row(DType.Q8_1, x);
        for (int b = 0; b < 16; b++)
        {
            float d = Dequant.HalfToFloat(BitConverter.ToUInt16(q1, 36 * b));
            float s = Dequant.HalfToFloat(BitConverter.ToUInt16(q1, 36 * b + 2));
            int sum = 0; for (int j = 0; j < 32; j++) sum += (sbyte)q1[36 * b + 4 + j];
            Assert.That(s, Is.EqualTo(sum * d).Within(Math.Abs(sum * d) * 1e-3 + 1e-6));
        }
        var qk = Quantize.Row(DType.Q8_K, x);
        for (int b = 0; b < 2; b++)
            for (int i = 0; i < 16; i++)
            {
                int sum = 0; for (int l = 0; l < 16; l++) sum += (sbyte)qk[292 * b + 4 + 16 * i + l];
                Assert.That(BitConverter.ToInt16(qk, 292 * b + 260 + 2 * i), Is.EqualTo(sum));
            }
    }

    [Test]
    public void BadArguments_AreTypedErrors()
    {
        Assert.Multiple(() =>
        {
            Assert.Throws<ArgumentException>(() => Quantize.Row(DType.Q4_K, new float[255], new byte[144]));
            Assert.Throws<ArgumentException>(() => Quantize.Row(DType.Q4_K, new float[256], new byte[143]));
            Assert.Throws<NotSupportedException>(() => Quantize.Row(DType.I8, new float[1], new byte[1]));
        });
    }
}
