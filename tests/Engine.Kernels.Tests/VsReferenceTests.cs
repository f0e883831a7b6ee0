// Owns: every optimised backend against ReferenceBackend over many lengths (1..300) and odd shapes, by NMSE
// (llama.cpp test-backend-ops style). Bounds: float paths ≤ 1e-7 (float32 FMA accumulation vs float64); quantized
// weights ≤ 2e-4 vs exact activations (Q8 activation rounding) and ≤ 1e-10 vs the Q8-rounded activations.
// Also: the scalar/128/256-bit fallbacks of the SIMD skeleton, and multi-threaded == single-threaded bitwise.
namespace Engine.Kernels.Tests;

using Engine.Tensors;

[TestFixture]
public sealed unsafe class VsReferenceTests
{
    private const double FloatBound = 1e-7;
    private static readonly DType[] FloatTypes = [DType.F32, DType.F16, DType.BF16];
    public static readonly DType[] QuantTypes =
        [DType.Q8_0, DType.Q4_0, DType.Q4_1, DType.Q5_0, DType.Q5_1, DType.Q2_K, DType.Q3_K, DType.Q4_K, DType.Q5_K, DType.Q6_K];

    private static ReferenceBackend Ref => new();

    private static void CheckMatMul(IBackend b, DType type, int rows, int cols, int n, int seed, double bound)
    {
        using var w = NativeTensor.FromFloats(type, Data.Random(rows * cols, seed), rows, cols);
        var x = Data.Random(n * cols, seed + 1);
        var y = new float[n * rows];
        var e = new float[n * rows];
        b.MatMul(x, n, w.View, y);
        Ref.MatMul(x, n, w.View, e);
        Assert.That(Data.Nmse(y, e), Is.LessThanOrEqualTo(bound), $"{b.Name} {type} rows={rows} cols={cols} n={n}");
    }

    [TestCaseSource(typeof(Backends), nameof(Backends.OptimisedCases))]
    public void MatMul_FloatTypes_AllLengths(BackendFactory f)
    {
        using var b = f.Create();
        foreach (var t in FloatTypes)
            for (int cols = 1; cols <= 300; cols++)
            {
                CheckMatMul(b, t, 3, cols, 1, cols, FloatBound);
                if (cols % 7 == 0) CheckMatMul(b, t, 5, cols, 6, cols, FloatBound);
            }
    }

    [TestCaseSource(typeof(Backends), nameof(Backends.OptimisedCases))]
    public void MatMul_FloatTypes_OddShapes(BackendFactory f)
    {
        using var b = f.Create();
        foreach (var t in FloatTypes)
        {
            CheckMatMul(b, t, 257, 1000, 7, 1, FloatBound);
            CheckMatMul(b, t, 1, 4096, 1, 2, FloatBound);
            CheckMatMul(b, t, 300, 64, 33, 3, FloatBound);
            CheckMatMul(b, t, 129, 33, 4, 4, FloatBound);
        }
    }

    [TestCaseSource(typeof(Backends), nameof(Backends.OptimisedCases))]
    public void MatMul_QuantTypes(BackendFactory f)
    {
        using var b = f.Create();
        foreach (var t in QuantTypes)
        {
            int bs = t.BlockSize();
            foreach (var (rows, cols, n) in new[] { (7, bs, 1), (33, 2 * bs, 5), (65, 4 * bs, 1), (9, 4096, 3) })
            {
                using var w = NativeTensor.FromFloats(t, Data.Random(rows * cols, rows + cols), rows, cols);
                var x = Data.Random(n * cols, rows);
                var y = new float[n * rows];
                var e = new float[n * rows];
                b.MatMul(x, n, w.View, y);
                Ref.MatMul(x, n, w.View, e);
                Assert.That(Data.Nmse(y, e), Is.LessThanOrEqualTo(QuantActivationBound), $"{t} rows={rows} cols={cols} n={n}");

                // Against the reference fed the Q8-rounded activations the CPU path sees: only float rounding remains.
                var at = Engine.Kernels.Quant.QuantDot.ActivationType(t);
                var xq = new float[x.Length];
                for (int k = 0; k < n; k++)
                    Engine.Tensors.Quants.Dequant.Row(at, Engine.Tensors.Quants.Quantize.Row(at, x.AsSpan(k * cols, cols)), xq.AsSpan(k * cols, cols));
                Ref.MatMul(xq, n, w.View, e);
                Assert.That(Data.Nmse(y, e), Is.LessThanOrEqualTo(QuantExactBound), $"{t} vs Q8-rounded x, rows={rows} cols={cols} n={n}");
            }
        }
    }

    /// <summary>NMSE of the CPU quantized matmul vs the reference (exact float activations, float64): the Q8 activation
    /// rounding, ≈ (1/127)²/12 · max²/mean(x²) per element ≈ 1.6e-5 for uniform x; measured max 7.8e-5 over
    /// Q8_0..Q6_K and shapes 7..300 rows × 1..16 blocks (mean 1.8e-5). Bound: 2e-4.</summary>
    public const double QuantActivationBound = 2e-4;

    /// <summary>NMSE vs the reference fed the same Q8-rounded activations: integer block sums are exact, only float32
    /// scaling remains. Measured max 3.2e-13 (Q5_1). Bound: 1e-10.</summary>
    public const double QuantExactBound = 1e-10;

    [TestCaseSource(typeof(Backends), nameof(Backends.OptimisedCases))]
    public void GetRows_AllTypes(BackendFactory f)
    {
        using var b = f.Create();
        foreach (var t in FloatTypes.Concat(QuantTypes))
        {
            int dim = t.BlockSize() == 1 ? 37 : 2 * t.BlockSize();
            using var tab = NativeTensor.FromFloats(t, Data.Random(11 * dim, 9), 11, dim);
            int[] ids = [10, 0, 3, 3, 7];
            var y = new float[ids.Length * dim];
            var e = new float[ids.Length * dim];
            b.GetRows(tab.View, ids, y);
            Ref.GetRows(tab.View, ids, e);
            Assert.That(y, Is.EqualTo(e), t.ToString());          // decoding is exact
        }
    }

    [TestCaseSource(typeof(Backends), nameof(Backends.OptimisedCases))]
    public void ElementWise_AllLengths(BackendFactory f)
    {
        using var b = f.Create();
        foreach (int n in Enumerable.Range(1, 300).Append(100_003))
        {
            var a = Data.Random(n, n, 8f);
            var c = Data.Random(n, n + 1, 3f);
            var y = new float[n]; var e = new float[n];
            b.Add(a, c, y); Ref.Add(a, c, e);
            Assert.That(Data.Nmse(y, e), Is.LessThanOrEqualTo(FloatBound), $"add n={n}");
            b.SiluMul(a, c, y); Ref.SiluMul(a, c, e);
            Assert.That(Data.Nmse(y, e), Is.LessThanOrEqualTo(FloatBound), $"silu·mul n={n}");
            var s = (float[])a.Clone(); var se = (float[])a.Clone();
            b.Softmax(s); Ref.Softmax(se);
            Assert.That(Data.Nmse(s, se), Is.LessThanOrEqualTo(FloatBound), $"softmax n={n}");
        }
    }

    [TestCaseSource(typeof(Backends), nameof(Backends.OptimisedCases))]
    public void ElementWise_Aliasing(BackendFactory f)
    {
        using var b = f.Create();
        var g = Data.Random(1001, 1); var u = Data.Random(1001, 2);
        var e = new float[1001];
        Ref.SiluMul(g, u, e);
        b.SiluMul(g, u, g);                                     // dst aliases gate
        Assert.That(Data.Nmse(g, e), Is.LessThanOrEqualTo(FloatBound));
    }

    [TestCaseSource(typeof(Backends), nameof(Backends.OptimisedCases))]
    public void RmsNorm_AllLengths(BackendFactory f)
    {
        using var b = f.Create();
        foreach (var (dim, rows) in Enumerable.Range(1, 300).Select(d => (d, 3)).Append((1024, 64)).Append((4097, 9)))
        {
            var x = Data.Random(dim * rows, dim, 5f);
            var w = Data.Random(dim, dim + 7);
            var y = new float[x.Length]; var e = new float[x.Length];
            b.RmsNorm(x, w, 1e-5f, y); Ref.RmsNorm(x, w, 1e-5f, e);
            Assert.That(Data.Nmse(y, e), Is.LessThanOrEqualTo(FloatBound), $"dim={dim} rows={rows}");
            b.RmsNorm(x, w, 1e-5f, x);                          // in place
            Assert.That(x, Is.EqualTo(y));
        }
    }

    [TestCaseSource(typeof(Backends), nameof(Backends.OptimisedCases))]
    public void Rope_Shapes(BackendFactory f)
    {
        using var b = f.Create();
        var rng = new Random(3);
        foreach (var style in new[] { RopeStyle.Normal, RopeStyle.Neox })
            foreach (var (heads, headDim, dims) in new[] { (1, 2, 2), (4, 64, 64), (3, 128, 64), (2, 80, 80), (5, 300, 298), (32, 128, 128) })
            {
                int n = 1 + rng.Next(40);
                var pos = Enumerable.Range(0, n).Select(_ => rng.Next(0, 100_000)).ToArray();
                float[]? factors = dims == 128 ? Data.Random(dims / 2, 4).Select(v => 1f + 4 * Math.Abs(v)).ToArray() : null;
                var rp = new RopeParams(style, dims, dims == 80 ? 1e6f : 10000f, dims == 298 ? 0.25f : 1f, factors);
                var x = Data.Random(n * heads * headDim, n);
                var e = (float[])x.Clone();
                b.Rope(x, heads, headDim, pos, rp); Ref.Rope(e, heads, headDim, pos, rp);
                Assert.That(Data.Nmse(x, e), Is.LessThanOrEqualTo(FloatBound), $"{style} {heads}×{headDim} dims={dims}");
            }
    }

    [TestCaseSource(typeof(Backends), nameof(Backends.OptimisedCases))]
    public void Attention_Shapes(BackendFactory f)
    {
        using var b = f.Create();
        foreach (var (heads, kvHeads, hd, cached, n, pageSize, extraStride) in new[]
                 { (4, 2, 64, 1, 1, 16, 0), (8, 2, 64, 37, 5, 16, 8), (6, 1, 72, 300, 3, 300, 0), (2, 2, 3, 5, 5, 2, 1), (14, 2, 64, 129, 9, 32, 0), (8, 2, 64, 1000, 1, 96, 0), (4, 4, 32, 700, 2, 700, 5), (4, 2, 128, 333, 3, 100, 16), (2, 1, 48, 90, 2, 90, 0) })
        {
            int width = kvHeads * hd, stride = width + extraStride;
            var k = Data.Random(cached * stride, hd, 2f);
            var v = Data.Random(cached * stride, hd + 1);
            using var kb = new NativeFloats(k);
            using var vb = new NativeFloats(v);
            var pages = new List<KvPage>();
            for (int s = 0; s < cached; s += pageSize)
                pages.Add(new KvPage(kb.Address + s * stride * 4, vb.Address + s * stride * 4, Math.Min(pageSize, cached - s), s, stride));
            // the last n cached tokens are the queries (a prompt chunk): positions cached-n .. cached-1
            var pos = Enumerable.Range(cached - n, n).ToArray();
            var q = Data.Random(n * heads * hd, cached);
            var p = new AttentionParams(heads, kvHeads, hd, 1f / MathF.Sqrt(hd));
            var y = new float[q.Length]; var e = new float[q.Length];
            b.Attention(q, pos, pages.ToArray(), p, y); Ref.Attention(q, pos, pages.ToArray(), p, e);
            Assert.That(Data.Nmse(y, e), Is.LessThanOrEqualTo(FloatBound), $"heads={heads}/{kvHeads} hd={hd} cached={cached}");
        }
    }

    [Test]
    public void MultiThreaded_EqualsSingleThreaded_Bitwise()
    {
        using var one = new CpuBackend(1);
        using var many = new CpuBackend(4);
        foreach (var t in FloatTypes.Concat([DType.Q4_K, DType.Q4_0, DType.Q8_0]))
        {
            using var w = NativeTensor.FromFloats(t, Data.Random(301 * 512, 5), 301, 512);
            foreach (int n in new[] { 1, 7 })
            {
                var x = Data.Random(n * 512, 6);
                var y1 = new float[n * 301]; var y4 = new float[n * 301];
                one.MatMul(x, n, w.View, y1); many.MatMul(x, n, w.View, y4);
                Assert.That(y4, Is.EqualTo(y1), $"{t} n={n}");
            }
        }
        var big = Data.Random(64 * 1024, 8);
        var nw = Data.Random(1024, 9);
        var r1 = new float[big.Length]; var r4 = new float[big.Length];
        one.RmsNorm(big, nw, 1e-6f, r1); many.RmsNorm(big, nw, 1e-6f, r4);
        Assert.That(r4, Is.EqualTo(r1));
        one.SiluMul(big, r1, r1); many.SiluMul(big, r4, r4);
        Assert.That(r4, Is.EqualTo(r1));

        // attention: one query row over a long cache is split into blocks by thread count (flash-decoding merge), so
        // 1 vs 4 threads agree within float rounding; several rows run one item per row and agree bitwise.
        var k = Data.Random(400 * 2 * 64, 10); var v = Data.Random(400 * 2 * 64, 11);
        using var kb = new NativeFloats(k); using var vb = new NativeFloats(v);
        KvPage[] pages = [new KvPage(kb.Address, vb.Address, 250, 0, 128), new KvPage(kb.Address + 250 * 512, vb.Address + 250 * 512, 150, 250, 128)];
        var p = new AttentionParams(8, 2, 64, 0.125f);
        foreach (int[] pos in new[] { new[] { 399 }, Enumerable.Range(300, 9).ToArray() })
        {
            var q = Data.Random(pos.Length * 8 * 64, 12);
            var a1 = new float[q.Length]; var a4 = new float[q.Length];
            one.Attention(q, pos, pages, p, a1); many.Attention(q, pos, pages, p, a4);
            if (pos.Length == 1) Assert.That(a4, Is.EqualTo(a1).Within(1e-6f), "attention, split cache");
            else Assert.That(a4, Is.EqualTo(a1), $"attention rows={pos.Length}");
        }
    }

    [Test]
    public void SimdFallbackWidths_MatchReference([Values(256, 128, 0)] int bits)
    {
        {
            using var b = new CpuBackend(2, options: new CpuKernelOptions { MaxVectorBits = bits });
            foreach (var t in FloatTypes)
                foreach (int cols in new[] { 1, 3, 4, 7, 8, 15, 16, 17, 33, 63, 64, 65, 255 })
                    CheckMatMul(b, t, 5, cols, cols % 2 == 0 ? 1 : 5, cols, FloatBound);
            foreach (int n in new[] { 1, 5, 16, 17, 31, 100 })
            {
                var a = Data.Random(n, n, 8f); var c = Data.Random(n, n + 1);
                var y = new float[n]; var e = new float[n];
                b.SiluMul(a, c, y); Ref.SiluMul(a, c, e);
                Assert.That(Data.Nmse(y, e), Is.LessThanOrEqualTo(FloatBound), $"silu n={n} bits={bits}");
                b.RmsNorm(a, c, 1e-5f, y); Ref.RmsNorm(a, c, 1e-5f, e);
                Assert.That(Data.Nmse(y, e), Is.LessThanOrEqualTo(FloatBound), $"rms n={n} bits={bits}");
                var s = (float[])a.Clone(); var se = (float[])a.Clone();
                b.Softmax(s); Ref.Softmax(se);
                Assert.That(Data.Nmse(s, se), Is.LessThanOrEqualTo(FloatBound), $"softmax n={n} bits={bits}");
            }
        }
    }

    /// <summary>Kernel variants are per backend: a scalar-only backend and a default one used alternately in one process
    /// each give exactly what a fresh backend of the same options gives alone (no process-wide switch leaks between them),
    /// and both match the reference.</summary>
    [Test]
    public void BackendsWithDifferentKernelOptions_CoexistInOneProcess()
    {
        var scalarOptions = new CpuKernelOptions { MaxVectorBits = 0, Attention512 = false, AttentionQuant = false };
        var w = Data.Random(37 * 133, 5); var x = Data.Random(3 * 133, 6);
        using var wt = NativeTensor.FromFloats(DType.F32, w, 37, 133);
        float[] Run(CpuBackend b) { var y = new float[3 * 37]; b.MatMul(x, 3, wt.View, y); b.Softmax(y); return y; }
        float[] aloneScalar, aloneDefault;
        using (var s0 = new CpuBackend(1, options: scalarOptions)) aloneScalar = Run(s0);
        using (var d0 = new CpuBackend(1)) aloneDefault = Run(d0);
        using var scalar = new CpuBackend(1, options: scalarOptions);
        using var wide = new CpuBackend(1);
        Assert.That(scalar.Options.Width.Use512 || scalar.Options.Width.Use256 || scalar.Options.Width.Use128, Is.False);
        for (int i = 0; i < 3; i++)
        {
            Assert.That(Run(wide), Is.EqualTo(aloneDefault), "default backend, interleaved");
            Assert.That(Run(scalar), Is.EqualTo(aloneScalar), "scalar backend, interleaved");
        }
        var e = new float[3 * 37];
        Ref.MatMul(x, 3, wt.View, e); Ref.Softmax(e);
        Assert.That(Data.Nmse(aloneScalar, e), Is.LessThanOrEqualTo(FloatBound));
        Assert.That(Data.Nmse(aloneDefault, e), Is.LessThanOrEqualTo(FloatBound));
        Assert.Throws<ArgumentOutOfRangeException>(() => _ = new CpuKernelOptions { MaxVectorBits = 384 });
    }
}
