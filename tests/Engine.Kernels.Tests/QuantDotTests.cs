// Owns: tests of QuantDot (quantized weight · quantized activation dots) against QuantDotReference over every
// weight type, many column counts and random data, on every kernel path (scalar-integer and SIMD), plus the
// end-to-end accuracy bound against the float64 dot with unquantized activations.
using System.Buffers.Binary;
using System.Runtime.Intrinsics;
using Engine.Kernels.Quant;
using Engine.Tensors;
using Engine.Tensors.Quants;

namespace Engine.Kernels.Tests;

public unsafe class QuantDotTests
{
    public static readonly DType[] WeightTypes =
        { DType.Q4_0, DType.Q4_1, DType.Q5_0, DType.Q5_1, DType.Q8_0, DType.Q2_K, DType.Q3_K, DType.Q4_K, DType.Q5_K, DType.Q6_K };

    internal static IEnumerable<QuantKernelPath> Paths()
    {
        yield return QuantKernelPath.Scalar;
        if (System.Runtime.Intrinsics.Vector128.IsHardwareAccelerated) yield return QuantKernelPath.Vector128;
        if (QuantDot.BestPath is QuantKernelPath.Avx2 or QuantKernelPath.Avx2Vnni) yield return QuantKernelPath.Avx2;
        if (QuantDot.BestPath == QuantKernelPath.Avx2Vnni) yield return QuantKernelPath.Avx2Vnni;
    }

    public static IEnumerable<TestCaseData> TypeAndPath() =>
        from t in WeightTypes from p in Paths() select new TestCaseData(t, p.ToString()).SetArgDisplayNames(t.ToString(), p.ToString());

    internal static float[] Gaussian(Random rnd, int n, float sigma = 1f)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++)
            x[i] = sigma * (float)(Math.Sqrt(-2 * Math.Log(1 - rnd.NextDouble())) * Math.Cos(2 * Math.PI * rnd.NextDouble()));
        return x;
    }

    // Offsets of the float16 scale fields inside one block of each type.
    private static int[] HalfFields(DType t) => t switch
    {
        DType.Q4_0 or DType.Q5_0 or DType.Q8_0 => new[] { 0 },
        DType.Q4_1 or DType.Q5_1 or DType.Q4_K or DType.Q5_K => new[] { 0, 2 },
        DType.Q2_K => new[] { 80, 82 },
        DType.Q3_K => new[] { 108 },
        DType.Q6_K => new[] { 208 },
        _ => throw new ArgumentException(t.ToString()),
    };

    /// <summary>A weight row of random bytes (every bit pattern of the quants and packed scales) with sane float16 scales.</summary>
    internal static byte[] RandomBlocks(Random rnd, DType t, int cols)
    {
        var b = new byte[t.ByteCount(cols)];
        rnd.NextBytes(b);
        int bb = t.BytesPerBlock();
        for (int o = 0; o < b.Length; o += bb)
            foreach (int f in HalfFields(t))
                BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(o + f), Dequant.FloatToHalf((float)(rnd.NextDouble() * 0.02 - 0.005)));
        return b;
    }

    private static IEnumerable<int> ColumnCounts(DType t)
    {
        int bs = t.BlockSize();
        for (int blocks = 1; blocks <= 12; blocks++) yield return blocks * bs;
        yield return bs == 32 ? 4096 : 4096; // a realistic row (128 / 16 blocks)
    }

    [TestCaseSource(nameof(TypeAndPath))]
    public void Dot_EqualsReference_WithinFloatRounding(DType t, string pathName)
    {
        var path = Enum.Parse<QuantKernelPath>(pathName);
        var rnd = new Random(17 + (int)t);
        double worst = 0;
        foreach (int cols in ColumnCounts(t))
            for (int rep = 0; rep < 3; rep++)
            {
                byte[] w = rep == 0 ? Quantize.Row(t, Gaussian(rnd, cols)) : RandomBlocks(rnd, t, cols);
                float[] x = Gaussian(rnd, cols, rep == 2 ? 100f : 1f);
                var qx = new byte[QuantDot.ActivationBytes(t, cols)];
                QuantDot.QuantizeActivation(t, x, qx);
                double expected = QuantDotReference.Dot(t, w, qx, cols);
                double scale = QuantDotReference.AbsDot(t, w, qx, cols);
                float got = QuantDot.Dot(t, w, qx, cols, path);
                double err = Math.Abs(got - expected) / Math.Max(scale, 1e-30);
                worst = Math.Max(worst, err);
                Assert.That(err, Is.LessThanOrEqualTo(1e-5), $"{t} {path} cols={cols} rep={rep}: got {got}, expected {expected}");
            }
        TestContext.Out.WriteLine($"{t} {path}: worst |dot − ref| / Σ|w·x| = {worst:G3}");
    }

    [TestCaseSource(nameof(TypeAndPath))]
    public void DotRows_MatchesRowDots(DType t, string pathName)
    {
        var path = Enum.Parse<QuantKernelPath>(pathName);
        var rnd = new Random(99 + (int)t);
        foreach (int cols in new[] { t.BlockSize(), 3 * t.BlockSize(), 8 * Math.Max(t.BlockSize(), 32) })
            foreach (int rows in new[] { 1, 2, 3, 4, 5, 7, 8, 9, 13 })
            {
                long rowBytes = t.ByteCount(cols);
                var w = new byte[rowBytes * rows];
                for (int r = 0; r < rows; r++)
                {
                    byte[] row = r % 2 == 0 ? Quantize.Row(t, Gaussian(rnd, cols)) : RandomBlocks(rnd, t, cols);
                    row.CopyTo(w.AsSpan((int)(r * rowBytes), (int)rowBytes));
                }
                var qx = new byte[QuantDot.ActivationBytes(t, cols)];
                QuantDot.QuantizeActivation(t, Gaussian(rnd, cols), qx);
                var y = new float[rows + 1];
                y[0] = 12345f; y[rows] = 777f;
                int start = rows > 1 ? 1 : 0;
                fixed (byte* pw = w) fixed (byte* px = qx) fixed (float* py = y)
                    QuantDot.DotRows(t, pw, rowBytes, start, rows, px, cols, py, path);
                for (int r = start; r < rows; r++)
                {
                    var row = w.AsSpan((int)(r * rowBytes), (int)rowBytes);
                    double expected = QuantDotReference.Dot(t, row, qx, cols);
                    double scale = QuantDotReference.AbsDot(t, row, qx, cols);
                    Assert.That(Math.Abs(y[r] - expected), Is.LessThanOrEqualTo(1e-5 * scale + 1e-30), $"{t} {path} cols={cols} rows={rows} r={r}");
                }
                if (start == 1) Assert.That(y[0], Is.EqualTo(12345f), "row before rowStart was written");
                Assert.That(y[rows], Is.EqualTo(777f), "row at rowEnd was written");
            }
    }

    [TestCaseSource(nameof(TypeAndPath))]
    public void DotRowsBatch_MatchesRowDots(DType t, string pathName)
    {
        var path = Enum.Parse<QuantKernelPath>(pathName);
        var rnd = new Random(5 + (int)t);
        foreach (int cols in new[] { 2 * t.BlockSize(), 5 * t.BlockSize() })
        foreach (int n in new[] { 1, 2, 5, 33, 40 })
        {
            long rowBytes = t.ByteCount(cols);
            int ab = QuantDot.ActivationBytes(t, cols), qxStride = ab + 8;
            const int rows = 6;
            var w = new byte[rowBytes * rows];
            for (int r = 0; r < rows; r++)
            {
                // even rows: quantized Gaussian data; odd rows: random bytes (every quant and packed-scale bit pattern)
                byte[] row = r % 2 == 0 ? Quantize.Row(t, Gaussian(rnd, cols)) : RandomBlocks(rnd, t, cols);
                row.CopyTo(w.AsSpan((int)(r * rowBytes), (int)rowBytes));
            }
            var qx = new byte[qxStride * n];
            for (int i = 0; i < n; i++) QuantDot.QuantizeActivation(t, Gaussian(rnd, cols), qx.AsSpan(i * qxStride, ab));
            const int yStride = rows + 3;
            var y = new float[yStride * n];
            y.AsSpan().Fill(-1f);
            fixed (byte* pw = w) fixed (byte* px = qx) fixed (float* py = y)
                QuantDot.DotRowsBatch(t, pw, rowBytes, 1, rows, px, qxStride, n, cols, py, yStride, path);
            for (int i = 0; i < n; i++)
                for (int r = 0; r < yStride; r++)
                {
                    if (r < 1 || r >= rows) { Assert.That(y[i * yStride + r], Is.EqualTo(-1f), $"n={n} t={i} r={r} written"); continue; }
                    var row = w.AsSpan((int)(r * rowBytes), (int)rowBytes);
                    var xrow = qx.AsSpan(i * qxStride, ab);
                    double expected = QuantDotReference.Dot(t, row, xrow, cols);
                    double scale = QuantDotReference.AbsDot(t, row, xrow, cols);
                    Assert.That(Math.Abs(y[i * yStride + r] - expected), Is.LessThanOrEqualTo(1e-5 * scale + 1e-30), $"{t} n={n} t={i} r={r}");
                }
        }
    }

    /// <summary>
    /// End-to-end accuracy: |QuantDot.Dot − dequant(w)·x| (x unquantized, float64) stays within the activation
    /// quantization bound Σ_blocks e_b·Σ_{j∈b}|w_j|, where e_b bounds the per-element error of the activation block:
    /// Q8_0/Q8_1: amax_b·(1/254 + 2⁻¹¹) (rounding to d/2 plus float16 rounding of d); Q8_K: amax_b/254 (float32 d);
    /// plus 1e-5·Σ|w·x| for float rounding.
    /// </summary>
    [TestCaseSource(nameof(WeightTypes))]
    public void Dot_WithinActivationQuantizationBound(DType t)
    {
        var rnd = new Random(7 + (int)t);
        DType at = QuantDot.ActivationType(t);
        int ab = at.BlockSize();
        double worstRatio = 0, worstRel = 0;
        foreach (int cols in ColumnCounts(t))
            for (int rep = 0; rep < 4; rep++)
            {
                byte[] wq = Quantize.Row(t, Gaussian(rnd, cols));
                var w = new float[cols];
                Dequant.Row(t, wq, w);
                float[] x = Gaussian(rnd, cols, rep == 3 ? 1e-3f : 1f);
                var qx = new byte[QuantDot.ActivationBytes(t, cols)];
                QuantDot.QuantizeActivation(t, x, qx);
                double exact = 0, absSum = 0, bound = 0, nw = 0, nx = 0;
                for (int b0 = 0; b0 < cols; b0 += ab)
                {
                    double amax = 0, wabs = 0;
                    for (int j = b0; j < b0 + ab; j++) { amax = Math.Max(amax, Math.Abs(x[j])); wabs += Math.Abs(w[j]); }
                    double e = at == DType.Q8_K ? amax / 254 : amax * (1.0 / 254 + 1.0 / 2048);
                    bound += e * wabs;
                }
                for (int j = 0; j < cols; j++) { exact += (double)w[j] * x[j]; absSum += Math.Abs((double)w[j] * x[j]); nw += (double)w[j] * w[j]; nx += (double)x[j] * x[j]; }
                bound += 1e-5 * absSum;
                double err = Math.Abs(QuantDot.Dot(t, wq, qx, cols) - exact);
                Assert.That(err, Is.LessThanOrEqualTo(bound), $"{t} cols={cols} rep={rep}");
                worstRatio = Math.Max(worstRatio, err / bound);
                worstRel = Math.Max(worstRel, err / Math.Sqrt(nw * nx));
            }
        TestContext.Out.WriteLine($"{t}: worst err/bound = {worstRatio:G3}, worst err/(‖w‖·‖x‖) = {worstRel:G3}");
    }

    [TestCaseSource(nameof(WeightTypes))]
    public void QuantizeActivation_MatchesReferenceQuantizer(DType t)
    {
        var rnd = new Random(11);
        DType at = QuantDot.ActivationType(t);
        int cols = 4 * t.BlockSize();
        float[] x = Gaussian(rnd, cols);
        var qx = new byte[QuantDot.ActivationBytes(t, cols)];
        QuantDot.QuantizeActivation(t, x, qx);
        Assert.Multiple(() =>
        {
            Assert.That(qx.Length, Is.EqualTo(at.ByteCount(cols)));
            Assert.That(qx, Is.EqualTo(Quantize.Row(at, x)));
        });
    }

    [TestCase(DType.Q8_0)]
    [TestCase(DType.Q8_1)]
    [TestCase(DType.Q8_K)]
    public void ActivationQuantizer_AllPaths_BitIdenticalToReference(DType at)
    {
        var rnd = new Random(21);
        int bs = at.BlockSize();
        var cases = new List<float[]>();
        foreach (int blocks in new[] { 1, 2, 3, 7, 16 }) cases.Add(Gaussian(rnd, blocks * bs, blocks == 3 ? 1e-4f : 1f));
        // Rounding ties: amax 127 makes d = 1 (Q8_0) and iscale = −1 (Q8_K), so x·id lands exactly on .5 values.
        var ties = new float[2 * bs];
        for (int i = 0; i < ties.Length; i++) ties[i] = (i % 2 == 0 ? 1 : -1) * ((i % 20) + 0.5f);
        ties[3] = 127f; ties[bs + 5] = -127f;
        cases.Add(ties);
        var zeros = new float[2 * bs]; zeros[bs + 1] = 3f; zeros[bs + 2] = -3f; // one all-zero block, one with a sign tie
        cases.Add(zeros);
        foreach (var x in cases)
        {
            byte[] expected = Quantize.Row(at, x);
            foreach (var path in Paths())
            {
                var got = new byte[expected.Length];
                ActivationQuantizer.Row(at, x, got, path);
                Assert.That(got, Is.EqualTo(expected), $"{at} {path} n={x.Length}");
            }
        }
    }

    [Test]
    public void ScaleUnpacking_MatchesReferenceLayout()
    {
        var rnd = new Random(8);
        var s = new byte[12];
        for (int rep = 0; rep < 500; rep++)
        {
            rnd.NextBytes(s);
            fixed (byte* p = s)
            {
                KScaleWords.UnpackK4(p, out uint sc03, out uint sc47, out uint mn03, out uint mn47);
                for (int j = 0; j < 8; j++)
                {
                    KScales.ScaleMinK4(s, j, out int sc, out int mn);
                    Assert.That((int)(((j < 4 ? sc03 : sc47) >> (8 * (j & 3))) & 0xFF), Is.EqualTo(sc));
                    Assert.That((int)(((j < 4 ? mn03 : mn47) >> (8 * (j & 3))) & 0xFF), Is.EqualTo(mn));
                }
                if (QuantDot.BestPath is QuantKernelPath.Avx2 or QuantKernelPath.Avx2Vnni)
                {
                    var q3 = Avx2KQuants.UnpackQ3Scales(p);
                    for (int i = 0; i < 16; i++) Assert.That((int)q3.GetElement(i), Is.EqualTo(KScales.ScaleQ3K(s, i)));
                }
            }
        }
    }

    [Test]
    public void ActivationTypes_AreTheVecDotTypes()
    {
        Assert.Multiple(() =>
        {
            foreach (var t in new[] { DType.Q4_0, DType.Q5_0, DType.Q8_0 }) Assert.That(QuantDot.ActivationType(t), Is.EqualTo(DType.Q8_0));
            foreach (var t in new[] { DType.Q4_1, DType.Q5_1 }) Assert.That(QuantDot.ActivationType(t), Is.EqualTo(DType.Q8_1));
            foreach (var t in new[] { DType.Q2_K, DType.Q3_K, DType.Q4_K, DType.Q5_K, DType.Q6_K }) Assert.That(QuantDot.ActivationType(t), Is.EqualTo(DType.Q8_K));
            Assert.That(QuantDot.ActivationBytes(DType.Q4_0, 64), Is.EqualTo(68));
            Assert.That(QuantDot.ActivationBytes(DType.Q4_1, 64), Is.EqualTo(72));
            Assert.That(QuantDot.ActivationBytes(DType.Q4_K, 512), Is.EqualTo(584));
        });
    }

    [Test]
    public void BadArguments_AreTypedErrors()
    {
        Assert.Multiple(() =>
        {
            Assert.Throws<NotSupportedException>(() => QuantDot.ActivationType(DType.F32));
            Assert.Throws<ArgumentException>(() => QuantDot.ActivationBytes(DType.Q4_K, 100));
            Assert.Throws<ArgumentException>(() => QuantDot.Dot(DType.Q4_0, new byte[17], new byte[34], 32));
            Assert.Throws<ArgumentException>(() => QuantDot.Dot(DType.Q4_0, new byte[18], new byte[33], 32));
            Assert.Throws<ArgumentException>(() => QuantDot.QuantizeActivation(DType.Q4_0, new float[32], new byte[33]));
        });
    }
}
