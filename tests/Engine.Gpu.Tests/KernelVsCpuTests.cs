// Owns: every GPU kernel against the CPU backend (and the scalar reference where the CPU rounds activations) by
// NMSE over odd shapes and lengths, on gpu-sim in both lane modes. Bounds: float ops ≤ 1e-10 (both accumulate in
// float32; shapes are small); quantized matmul vs CPU ≤ 2e-4 (the CPU quantizes activations to Q8 as llama.cpp
// does; the GPU multiplies float activations) and vs the reference (exact dequantization, float64) ≤ 1e-9.
namespace Engine.Gpu.Tests;

using Engine.Kernels;
using Engine.Kernels.Tests;
using Engine.Tensors;

[TestFixture]
public sealed class KernelVsCpuTests
{
    private static readonly DType[] Types = [DType.F32, DType.F16, DType.BF16, DType.Q8_0, DType.Q4_0, DType.Q4_K, DType.Q6_K];
    private static readonly CpuBackend Cpu = new(1);
    private static readonly ReferenceBackend Ref = new();

    [TestCaseSource(typeof(GpuCases), nameof(GpuCases.Modes))]
    public void MatMul_EveryWeightType(LaneMode m)
    {
        using var g = GpuCases.Backend(m);
        foreach (var t in Types)
        {
            int bs = t.BlockSize();
            var shapes = m == LaneMode.Warp
                ? new[] { (5, Math.Max(bs, 37), 1), (3, 2 * Math.Max(bs, 33), 6) }
                : new[] { (7, Math.Max(bs, 37), 1), (33, 2 * Math.Max(bs, 64), 5), (9, 4 * Math.Max(bs, 32), 3), (1, 3 * bs == 3 ? 300 : 3 * bs, 9) };
            foreach (var (rows, cols0, n) in shapes)
            {
                int cols = bs == 1 ? cols0 : (cols0 + bs - 1) / bs * bs;
                using var w = NativeTensor.FromFloats(t, Data.Random(rows * cols, rows * 31 + cols), rows, cols);
                var x = Data.Random(n * cols, rows + 7);
                var y = new float[n * rows];
                var c = new float[n * rows];
                var e = new float[n * rows];
                g.MatMul(x, n, w.View, y);
                Cpu.MatMul(x, n, w.View, c);
                Ref.MatMul(x, n, w.View, e);
                g.EvictWeights();   // the next tensor may reuse this address
                string what = $"{t} rows={rows} cols={cols} n={n}";
                Assert.That(Data.Nmse(y, c), Is.LessThanOrEqualTo(bs == 1 && t != DType.BF16 ? 1e-10 : 2e-4), "vs cpu " + what);
                Assert.That(Data.Nmse(y, e), Is.LessThanOrEqualTo(1e-9), "vs reference " + what);
            }
        }
    }

    [TestCaseSource(typeof(GpuCases), nameof(GpuCases.Modes))]
    public void GetRows_EveryWeightType(LaneMode m)
    {
        using var g = GpuCases.Backend(m);
        foreach (var t in Types)
        {
            int cols = t.BlockSize() == 1 ? 45 : 2 * t.BlockSize(), rows = 11;
            using var w = NativeTensor.FromFloats(t, Data.Random(rows * cols, cols), rows, cols);
            int[] ids = [10, 0, 3, 3, 7];
            var y = new float[ids.Length * cols];
            var c = new float[ids.Length * cols];
            g.GetRows(w.View, ids, y);
            g.EvictWeights();
            Cpu.GetRows(w.View, ids, c);
            Assert.That(y, Is.EqualTo(c), $"{t}: dequantization is exact on both");
        }
    }

    [TestCaseSource(typeof(GpuCases), nameof(GpuCases.Modes))]
    public void RmsNorm_Softmax_SiluMul_Add_OddLengths(LaneMode m)
    {
        using var g = GpuCases.Backend(m);
        int step = m == LaneMode.Warp ? 23 : 7;
        for (int len = 1; len <= 140; len += step)
        {
            var w = Data.Random(len, len + 1);
            foreach (int rows in new[] { 1, 3 })
            {
                var x = Data.Random(rows * len, len);
                var y = new float[x.Length];
                var c = new float[x.Length];
                g.RmsNorm(x, w, 1e-5f, y);
                Cpu.RmsNorm(x, w, 1e-5f, c);
                Assert.That(Data.Nmse(y, c), Is.LessThanOrEqualTo(1e-10), $"rmsnorm len={len} rows={rows}");
            }
            var s = Data.Random(len, len + 2, 8f);
            var sc = (float[])s.Clone();
            g.Softmax(s);
            Cpu.Softmax(sc);
            Assert.That(Data.Nmse(s, sc), Is.LessThanOrEqualTo(1e-10), $"softmax len={len}");

            var a = Data.Random(len, len + 3, 4f);
            var b = Data.Random(len, len + 4, 4f);
            var o = new float[len];
            var oc = new float[len];
            g.SiluMul(a, b, o);
            Cpu.SiluMul(a, b, oc);
            Assert.That(Data.Nmse(o, oc), Is.LessThanOrEqualTo(1e-10), $"silumul len={len}");
            g.Add(a, b, o);
            Cpu.Add(a, b, oc);
            Assert.That(o, Is.EqualTo(oc), $"add len={len}");
        }
    }

    [TestCaseSource(typeof(GpuCases), nameof(GpuCases.Modes))]
    public void Rope_NormalAndNeox_WithFreqFactors(LaneMode m)
    {
        using var g = GpuCases.Backend(m);
        foreach (var style in new[] { RopeStyle.Normal, RopeStyle.Neox })
            foreach (var (heads, headDim, dims, factors) in new[] { (3, 8, 8, false), (2, 64, 32, true), (1, 18, 18, true) })
            {
                float[]? ff = factors ? Data.Random(dims / 2, dims).Select(v => 1.5f + v).ToArray() : null;
                var rope = new RopeParams(style, dims, 10000f, 0.75f, ff);
                int[] pos = [0, 5, 511, 4097];
                var x = Data.Random(pos.Length * heads * headDim, heads + headDim);
                var c = (float[])x.Clone();
                g.Rope(x, heads, headDim, pos, rope);
                Ref.Rope(c, heads, headDim, pos, rope);
                Assert.That(Data.Nmse(x, c), Is.LessThanOrEqualTo(1e-10), $"{style} {heads}x{headDim} dims={dims} factors={factors}");
                var xc = Data.Random(pos.Length * heads * headDim, heads + headDim);
                Cpu.Rope(xc, heads, headDim, pos, rope);
                Assert.That(Data.Nmse(x, xc), Is.LessThanOrEqualTo(1e-10), $"vs cpu {style} {heads}x{headDim} dims={dims}");
            }
    }

    [TestCaseSource(typeof(GpuCases), nameof(GpuCases.Modes))]
    public unsafe void Attention_DecodeAndPrefill_Gqa_Paged_Split(LaneMode m)
    {
        using var g = GpuCases.Backend(m);
        int saved = g.Device.AttentionSplitTokens;
        g.Device.AttentionSplitTokens = 5;   // several context splits per row: exercises the flash-decoding merge
        try
        {
            foreach (var (heads, kvHeads, headDim, total, n) in m == LaneMode.Warp
                         ? new[] { (4, 2, 32, 13, 1), (2, 1, 40, 9, 3) }
                         : new[] { (4, 2, 16, 37, 1), (6, 3, 8, 29, 29), (4, 4, 64, 21, 4), (8, 2, 24, 50, 1) })
            {
                int kvDim = kvHeads * headDim;
                var p = new AttentionParams(heads, kvHeads, headDim, 1f / MathF.Sqrt(headDim));
                var k = Data.Random(total * kvDim, total);
                var v = Data.Random(total * kvDim, total + 1);
                // Two pages in separate buffers (a paged store's block table with a break in it).
                int split = total / 3;
                using var k0 = new NativeFloats(k[..(split * kvDim)]);
                using var v0 = new NativeFloats(v[..(split * kvDim)]);
                using var k1 = new NativeFloats(k[(split * kvDim)..]);
                using var v1 = new NativeFloats(v[(split * kvDim)..]);
                KvPage[] pages = [new(k0.Address, v0.Address, split, 0, kvDim), new(k1.Address, v1.Address, total - split, split, kvDim)];
                var q = Data.Random(n * heads * headDim, n + heads);
                var qpos = Enumerable.Range(total - n, n).ToArray();
                var y = new float[q.Length];
                var c = new float[q.Length];
                g.Attention(q, qpos, pages, p, y);
                Cpu.Attention(q, qpos, pages, p, c);
                Assert.That(Data.Nmse(y, c), Is.LessThanOrEqualTo(1e-10), $"h={heads} kv={kvHeads} d={headDim} T={total} n={n}");
            }
        }
        finally { g.Device.AttentionSplitTokens = saved; }
    }
}
