// Owns: the property "a token-batched MatMul equals the same MatMul run one token at a time" for the CPU backend's
// quantized and float weight paths, on the tiny synthetic model's matrix shapes (SyntheticModel "tiny": d 256,
// KV 128, FFN 512, vocab 512) and odd shapes (rows not a multiple of 4, n not a multiple of 4 or of the token tile).
// Invariant checked: each token row is quantized identically in both modes and the block dots are integer-exact, so
// the only allowed difference is float32 summation order: |y_batch − y_single| ≤ 1e-5 · max|y_single| (+ tiny abs).
namespace Engine.Kernels.Tests;

using Engine.Tensors;

public sealed class MatMulBatchConsistencyTests
{
    private static readonly DType[] Types = [DType.Q4_0, DType.Q8_0, DType.Q4_K, DType.Q6_K, DType.F16, DType.F32];

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
                        if (!(Math.Abs(got - single[r]) <= 1e-5f * max + 1e-6f))
                            Assert.Fail($"{t} {threads}t rows={rows} cols={cols} n={n} token={i} row={r}: batch {got} vs single {single[r]} (max {max})");
                    }
                }
            }
        }
    }
}
