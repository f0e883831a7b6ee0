// Owns: tests of the repacked Q4_0/Q8_0 layout (RepackedMatrix) and of CpuBackend.PrepareWeights: the copy holds
// exactly the original rows (CopyRow round trip), its GEMV/GEMM equal the scalar reference dot QuantDotReference within
// float rounding for many shapes (rows not a multiple of 8, one block, long rows), a token-batched call is bitwise the
// token-by-token one on every thread count, and matrices the kernels cannot take (inf scale, < 8 rows) are left alone.
namespace Engine.Kernels.Tests;

using System.Buffers.Binary;
using Engine.Kernels.Quant;
using Engine.Tensors;
using Engine.Tensors.Quants;

public sealed unsafe class RepackedMatrixTests
{
    public static IEnumerable<TestCaseData> TypeAndPath()
    {
        foreach (var t in new[] { DType.Q4_0, DType.Q8_0 })
            foreach (var p in new[] { QuantKernelPath.Avx2, QuantKernelPath.Avx2Vnni })
                yield return new TestCaseData(t, p.ToString()).SetArgDisplayNames(t.ToString(), p.ToString());
    }

    private static void RequirePath(DType t, QuantKernelPath path)
    {
        if (!QuantDotTests.Paths().Contains(path)) Assert.Ignore($"{path} kernels are not available on this machine");
        if (!RepackedMatrix.Supported(t, path)) Assert.Ignore($"no repacked {t} kernel on {path}");
    }

    /// <summary>rows × cols weights: even rows quantized Gaussians, odd rows random bytes (every quant bit pattern).</summary>
    private static byte[] Weights(DType t, int rows, int cols, Random rnd)
    {
        long rb = t.ByteCount(cols);
        var w = new byte[rb * rows];
        for (int r = 0; r < rows; r++)
        {
            byte[] row = r % 2 == 0 ? Quantize.Row(t, QuantDotTests.Gaussian(rnd, cols)) : QuantDotTests.RandomBlocks(rnd, t, cols);
            row.CopyTo(w.AsSpan((int)(r * rb)));
        }
        return w;
    }

    [TestCaseSource(nameof(TypeAndPath))]
    public void CopyRow_ReturnsTheOriginalRows(DType t, string pathName)
    {
        var path = Enum.Parse<QuantKernelPath>(pathName);
        RequirePath(t, path);
        var rnd = new Random(7);
        foreach (int cols in new[] { 32, 96, 2048 })
            foreach (int rows in new[] { 8, 9, 15, 16, 23 })
            {
                var w = Weights(t, rows, cols, rnd);
                using var nt = NativeTensor.FromBytes(t, w, rows, cols);
                using var m = RepackedMatrix.TryCreate(nt.View, path);
                Assert.That(m, Is.Not.Null);
                long rb = t.ByteCount(cols);
                var row = new byte[rb];
                for (int r = 0; r < rows; r++)
                {
                    m!.CopyRow(r, row);
                    Assert.That(row, Is.EqualTo(w.AsSpan((int)(r * rb), (int)rb).ToArray()), $"{t} rows={rows} cols={cols} row {r}");
                }
            }
    }

    [TestCaseSource(nameof(TypeAndPath))]
    public void MatMul_EqualsReferenceDots_AndBatchIsBitwiseSingle(DType t, string pathName)
    {
        var path = Enum.Parse<QuantKernelPath>(pathName);
        RequirePath(t, path);
        var rnd = new Random(11);
        foreach (int cols in new[] { 32, 64, 160, 2048 })
            foreach (int rows in new[] { 8, 13, 24, 40 })
                foreach (int n in new[] { 1, 3, 4, 9 })
                {
                    var w = Weights(t, rows, cols, rnd);
                    using var nt = NativeTensor.FromBytes(t, w, rows, cols);
                    using var m = RepackedMatrix.TryCreate(nt.View, path)!;
                    int ab = QuantDot.ActivationBytes(t, cols), nb = cols / 32;
                    var qx = new byte[ab * n];
                    var corr = new ActBlock[nb * n];
                    for (int i = 0; i < n; i++)
                        QuantDot.QuantizeActivation(t, QuantDotTests.Gaussian(rnd, cols, i == 2 ? 100f : 1f), qx.AsSpan(i * ab, ab));
                    var y = new float[n * rows];
                    var single = new float[rows];
                    int items = m.Groups + 1;
                    fixed (byte* px = qx) fixed (ActBlock* pc = corr) fixed (float* py = y, ps = single)
                    {
                        for (int i = 0; i < n; i++) RepackedMatrix.BlockOffsets(t, px + i * ab, nb, pc + i * nb);
                        // two pieces, as two threads would run them
                        m.MatMul(0, items / 2, px, ab, pc, n, py, rows, tokenTile: 4);
                        m.MatMul(items / 2, items, px, ab, pc, n, py, rows, tokenTile: 4);
                        long rb = t.ByteCount(cols);
                        for (int i = 0; i < n; i++)
                        {
                            m.MatMul(0, items, px + i * ab, ab, pc + i * nb, 1, ps, rows, tokenTile: 4);
                            var xrow = qx.AsSpan(i * ab, ab);
                            for (int r = 0; r < rows; r++)
                            {
                                var row = w.AsSpan((int)(r * rb), (int)rb);
                                double expected = QuantDotReference.Dot(t, row, xrow, cols);
                                double scale = QuantDotReference.AbsDot(t, row, xrow, cols);
                                float got = y[i * rows + r];
                                Assert.That(Math.Abs(got - expected), Is.LessThanOrEqualTo(1e-5 * scale + 1e-30),
                                    $"{t} {path} cols={cols} rows={rows} n={n} token={i} row={r}");
                                Assert.That(got, Is.EqualTo(single[r]), $"batch ≠ single: {t} {path} cols={cols} rows={rows} n={n} token={i} row={r}");
                            }
                        }
                    }
                }
    }

    [Test]
    public void InfScaleOrFewRows_AreNotRepacked()
    {
        var path = QuantDot.BestPath;
        if (!RepackedMatrix.Supported(DType.Q4_0, path)) Assert.Ignore($"no repacked Q4_0 kernel on {path}");
        var rnd = new Random(3);
        var w = Weights(DType.Q4_0, 16, 64, rnd);
        using (var ok = NativeTensor.FromBytes(DType.Q4_0, w, 16, 64))
        using (var m = RepackedMatrix.TryCreate(ok.View, path))
            Assert.That(m, Is.Not.Null, "a plain matrix is repacked");
        foreach (int at in new[] { 18 * 2 * 5 + 18, 18 * 2 * 15 })   // a block scale in a group, and in the last row
        {
            var bad = (byte[])w.Clone();
            BinaryPrimitives.WriteUInt16LittleEndian(bad.AsSpan(at), 0x7C00);   // +inf
            using var nt = NativeTensor.FromBytes(DType.Q4_0, bad, 16, 64);
            Assert.That(RepackedMatrix.TryCreate(nt.View, path), Is.Null, $"inf scale at byte {at}");
        }
        using var few = NativeTensor.FromBytes(DType.Q4_0, w.AsSpan(0, 18 * 2 * 7).ToArray(), 7, 64);
        Assert.That(RepackedMatrix.TryCreate(few.View, path), Is.Null, "7 rows");
    }

    /// <summary>The backend with prepared (repacked) weights: batch = token by token bitwise on 1 and 3 threads, and the
    /// same products as the unprepared backend within the quantized dot's float rounding.</summary>
    [TestCase(DType.Q4_0)]
    [TestCase(DType.Q8_0)]
    public void PreparedBackend_MatchesUnprepared_AndBatchEqualsSingle(DType t)
    {
        if (!RepackedMatrix.Supported(t, QuantDot.BestPath)) Assert.Ignore($"no repacked {t} kernel on {QuantDot.BestPath}");
        foreach (int threads in new[] { 1, 3 })
        {
            using var plain = new CpuBackend(threads, options: new CpuKernelOptions { RepackWeights = false });
            using var packed = new CpuBackend(threads);
            foreach (var (rows, cols) in new[] { (256, 256), (33, 512), (1000, 64), (8, 32) })
            {
                using var w = NativeTensor.FromFloats(t, Data.Random(rows * cols, rows + cols, 0.05f), rows, cols);
                packed.PrepareWeights([w.View]);
                Assert.That(packed.Repacked(w.View), Is.Not.Null, $"{rows}x{cols} was not repacked");
                foreach (int n in new[] { 1, 5, 40 })
                {
                    float[] x = Data.Random(n * cols, 1000 + n, 1f);
                    var a = new float[n * rows];
                    var b = new float[n * rows];
                    plain.MatMul(x, n, w.View, a);
                    packed.MatMul(x, n, w.View, b);
                    float max = a.Max(Math.Abs);
                    for (int i = 0; i < a.Length; i++)
                        Assert.That(Math.Abs(b[i] - a[i]), Is.LessThanOrEqualTo(1e-5f * max + 1e-6f), $"{t} {threads}t {rows}x{cols} n={n} at {i}");
                    var single = new float[rows];
                    for (int i = 0; i < n; i++)
                    {
                        packed.MatMul(x.AsSpan(i * cols, cols), 1, w.View, single);
                        for (int r = 0; r < rows; r++)
                            if (single[r] != b[i * rows + r]) Assert.Fail($"{t} {threads}t {rows}x{cols} n={n} token {i} row {r}: batch {b[i * rows + r]} vs single {single[r]}");
                    }
                }
                int[] ids = [0, rows - 1, rows / 2, 0];
                var ga = new float[ids.Length * cols];
                var gb = new float[ids.Length * cols];
                plain.GetRows(w.View, ids, ga);
                packed.GetRows(w.View, ids, gb);
                Assert.That(gb, Is.EqualTo(ga), $"GetRows of a repacked table {rows}x{cols}");
                packed.ReleaseWeights([w.View]);
                Assert.That(packed.Repacked(w.View), Is.Null, "released");
            }
        }
    }
}
