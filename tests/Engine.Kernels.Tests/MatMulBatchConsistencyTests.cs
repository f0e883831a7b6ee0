// Owns: the property "a token-batched MatMul equals the same MatMul run one token at a time" for the CPU backend's
// quantized and float weight paths, on the tiny synthetic model's matrix shapes (SyntheticModel "tiny": d 256,
// KV 128, FFN 512, vocab 512) and odd shapes (rows not a multiple of 4, n not a multiple of 4 or of the token tile).
// Invariant checked: each token row is quantized identically in both modes and the block dots are integer-exact, so
// the only allowed difference is float32 summation order: |y_batch − y_single| ≤ 1e-5 · max|y_single| (+ tiny abs).
// Q4_0 and Q8_0 must match bitwise: their 4-token kernels (Avx2Batch4) sum in the single-row kernels' order, because a
// 1-ulp prefill/decode difference can flip a Q8 activation rounding downstream and grow to ~0.5 % of the logits
// (seen on the tiny synthetic Q4_0 model; see BatchDecodeConsistencyTests in Engine.Runtime.Tests).
namespace Engine.Kernels.Tests;

using Engine.Kernels.Quant;
using Engine.Tensors;

public sealed class MatMulBatchConsistencyTests
{
    private static readonly DType[] Types = [DType.Q4_0, DType.Q8_0, DType.Q4_K, DType.Q6_K, DType.F16, DType.F32];

    private static readonly DType[] BitwiseTypes = [DType.Q4_0, DType.Q8_0];

    // (rows, cols): tiny model shapes (wq/wo, wk/wv, w1/w3, w2, output) plus odd row counts.
    private static readonly (int Rows, int Cols)[] Shapes = [(256, 256), (128, 256), (512, 256), (256, 512), (512, 256), (7, 256), (258, 512), (33, 256)];

    public static IEnumerable<TestCaseData> Cases()
    {
        foreach (var t in Types)
            foreach (int threads in new[] { 1, 3 })
                yield return new TestCaseData(t, threads).SetArgDisplayNames($"{t}", $"{threads}t");
    }

    [TestCaseSource(nameof(Cases))]
    public void BatchedMatMul_EqualsTokenByToken(DType t, int threads)
    {
        using var backend = new CpuBackend(threads);
        int shapeIndex = 0;
        foreach (var (rows, cols) in Shapes)
        {
            if (cols % t.BlockSize() != 0) continue;
            float[] wf = Data.Random(rows * cols, 11 + shapeIndex++, 0.05f);
            using var w = NativeTensor.FromFloats(t, wf, rows, cols);
            foreach (int n in new[] { 2, 3, 4, 5, 7, 8, 13, 31, 32, 33, 40, 67 })
            {
                float[] x = Data.Random(n * cols, 1000 + n, 1f);
                var batch = new float[n * rows];
                backend.MatMul(x, n, w.View, batch);
                var single = new float[rows];
                for (int i = 0; i < n; i++)
                {
                    backend.MatMul(x.AsSpan(i * cols, cols), 1, w.View, single);
                    float max = 0;
                    foreach (float v in single) max = Math.Max(max, Math.Abs(v));
                    for (int r = 0; r < rows; r++)
                    {
                        float got = batch[i * rows + r];
                        bool ok = BitwiseTypes.Contains(t) ? got == single[r] : Math.Abs(got - single[r]) <= 1e-5f * max + 1e-6f;
                        if (!ok)
                            Assert.Fail($"{t} {threads}t rows={rows} cols={cols} n={n} token={i} row={r}: batch {got} vs single {single[r]} (max {max})");
                    }
                }
            }
        }
    }

    /// <summary>Every kernel path: DotRowsBatch (4-token kernels + single-token tail) is bitwise DotRows per token.</summary>
    [TestCase(DType.Q4_0)]
    [TestCase(DType.Q8_0)]
    public unsafe void DotRowsBatch_IsBitwiseDotRows_OnEveryPath(DType t)
    {
        foreach (var path in QuantDotTests.Paths())
            foreach (int nb in new[] { 1, 2, 3, 8, 9 })
            {
                int cols = nb * 32, rows = 5, n = 11;
                var rnd = new Random(3 + nb);
                long rowBytes = t.ByteCount(cols);
                int ab = QuantDot.ActivationBytes(t, cols);
                var w = new byte[rowBytes * rows];
                for (int r = 0; r < rows; r++)
                    Engine.Tensors.Quants.Quantize.Row(t, QuantDotTests.Gaussian(rnd, cols)).CopyTo(w.AsSpan((int)(r * rowBytes)));
                var qx = new byte[ab * n];
                for (int i = 0; i < n; i++) QuantDot.QuantizeActivation(t, QuantDotTests.Gaussian(rnd, cols), qx.AsSpan(i * ab, ab));
                var batch = new float[n * rows];
                var single = new float[rows];
                fixed (byte* pw = w) fixed (byte* px = qx) fixed (float* pb = batch) fixed (float* ps = single)
                {
                    QuantDot.DotRowsBatch(t, pw, rowBytes, 0, rows, px, ab, n, cols, pb, rows, path);
                    for (int i = 0; i < n; i++)
                    {
                        QuantDot.DotRows(t, pw, rowBytes, 0, rows, px + i * ab, cols, ps, path);
                        for (int r = 0; r < rows; r++)
                            if (batch[i * rows + r] != single[r])
                                Assert.Fail($"{t} {path} nb={nb} token={i} row={r}: batch {batch[i * rows + r]:R} vs single {single[r]:R}");
                    }
                }
            }
    }
}
