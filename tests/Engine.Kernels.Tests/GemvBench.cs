// Owns: the hand-run GEMV microbenchmark (not part of CI: [Explicit]). Run with
//   dotnet test tests/Engine.Kernels.Tests -c Release --filter "Category=Bench" --logger "console;verbosity=detailed"
// It reports weight bandwidth (GB/s) of a 2048×8192 F32/F16/BF16 (and Q8_0/Q4_0/Q4_K/Q6_K) matmul (n = 1, the decode GEMV, and n = 32 prompt
// batch) with 1 and 2 threads, next to memcpy bandwidth measured in the same run, and the Simd widths 512 vs 256.
namespace Engine.Kernels.Tests;

using System.Diagnostics;
using System.Runtime.InteropServices;
using Engine.Tensors;

[TestFixture, Explicit("hand-run benchmark"), Category("Bench")]
public sealed unsafe class GemvBench
{
    private const int Rows = 8192, Cols = 2048;   // W ne = [2048, 8192]: 8192 output rows of 2048

    private static double Seconds(Action a, int minIters = 5, double minSeconds = 0.5)
    {
        a();                                    // warm up (JIT, page faults)
        var sw = Stopwatch.StartNew();
        int it = 0;
        double best = double.MaxValue;
        while (it < minIters || sw.Elapsed.TotalSeconds < minSeconds)
        {
            long t0 = Stopwatch.GetTimestamp();
            a();
            best = Math.Min(best, Stopwatch.GetElapsedTime(t0).TotalSeconds);
            it++;
        }
        return best;
    }

    [Test]
    public void Gemv_Bandwidth()
    {
        var o = TestContext.Out;
        long bytes = 256L << 20;
        byte* src = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 64), dst = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        new Span<float>(src, (int)(bytes / 4)).Fill(1f); new Span<float>(dst, (int)(bytes / 4)).Fill(2f);   // normal floats (denormals would slow the read loop)
        double s = Seconds(() => Buffer.MemoryCopy(src, dst, bytes, bytes), 3);
        o.WriteLine($"Vector512.IsHardwareAccelerated={System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated} Avx512F.IsSupported={System.Runtime.Intrinsics.X86.Avx512F.IsSupported}");
        o.WriteLine($"memcpy 256 MiB: {bytes / s / 1e9:F1} GB/s read (≈{2 * bytes / s / 1e9:F1} GB/s read+write)");
        float r = 0;
        s = Seconds(() => r += Simd.Dot(SimdWidth.Widest, (float*)src, (float*)src, (int)(bytes / 4)), 3);
        o.WriteLine($"read-only stream (Simd.Dot over 256 MiB, 1 thread): {bytes / s / 1e9:F1} GB/s");
        NativeMemory.AlignedFree(src); NativeMemory.AlignedFree(dst);

        // Several copies of W, used in turn, so consecutive calls cannot hit the 32 MiB L3: the numbers are DRAM reads.
        var w32 = Data.Random(Rows * Cols, 1);
        foreach (var t in new[] { DType.F32, DType.F16, DType.BF16, DType.Q8_0, DType.Q4_0, DType.Q4_K, DType.Q6_K })
        {
            int copyCount = (int)Math.Max(2, (160L << 20) / t.ByteCount((long)Rows * Cols));
            var copies = Enumerable.Range(0, copyCount).Select(_ => NativeTensor.FromFloats(t, w32, Rows, Cols)).ToArray();
            foreach (int threads in new[] { 1, 2 })
                foreach (int n in new[] { 1, 32 })
                {
                    using var b = new CpuBackend(threads);
                    var x = Data.Random(n * Cols, 2);
                    var y = new float[n * Rows];
                    int k = 0;
                    double sec = Seconds(() => b.MatMul(x, n, copies[k++ % copies.Length].View, y), 10);
                    long wb = copies[0].View.ByteLength;
                    o.WriteLine($"{t,-4} {Rows}×{Cols} n={n,-2} threads={threads}: {sec * 1e3,7:F2} ms  {wb / sec / 1e9,6:F1} GB/s weights  {2.0 * n * Rows * Cols / sec / 1e9,6:F1} GFLOP/s");
                }
            foreach (var c in copies) c.Dispose();
        }
        foreach (int bits in new[] { 512, 256 })
        {
            {
                using var w = NativeTensor.FromFloats(DType.F32, Data.Random(64 * 2048, 3), 64, 2048);   // 512 KiB: L2-resident
                using var b = new CpuBackend(1, options: new CpuKernelOptions { MaxVectorBits = bits });
                var x = Data.Random(2048, 4); var y = new float[64];
                double sec = Seconds(() => { for (int i = 0; i < 100; i++) b.MatMul(x, 1, w.View, y); });
                o.WriteLine($"F32 L2-resident GEMV, Simd max {bits} bits: {100 * w.View.ByteLength / sec / 1e9:F1} GB/s");
            }
        }
    }

    [Test]
    public void Attention_Decode()
    {
        // one query row at position 4095 over 4096 cached tokens, 32 heads / 8 KV heads × 128 (Llama-3-8B shape), one page
        const int ctx = 4096, kvHeads = 8, hd = 128;
        var k = Data.Random(ctx * kvHeads * hd, 1); var v = Data.Random(ctx * kvHeads * hd, 2);
        using var kb = new NativeFloats(k); using var vb = new NativeFloats(v);
        KvPage[] pages = [new KvPage(kb.Address, vb.Address, ctx, 0, kvHeads * hd)];
        var q = Data.Random(32 * hd, 3); var o = new float[q.Length];
        foreach (int threads in new[] { 1, 2 })
        {
            using var b = new CpuBackend(threads);
            double sec = Seconds(() => b.Attention(q, [ctx - 1], pages, new AttentionParams(32, kvHeads, hd, 0.088f), o));
            TestContext.Out.WriteLine($"attention decode ctx={ctx} 32/8 heads×128, threads={threads}: {sec * 1e3:F2} ms, {2.0 * k.Length * 4 / sec / 1e9:F1} GB/s of K+V");
        }
    }
}

/// <summary>Hand-run A/B of the repacked Q4_0/Q8_0 kernels against the row-by-row ones, interleaved in one process
/// (same matrices, copies cycled so the weights stream from DRAM): best-of wall time per MatMul.
///   dotnet test tests/Engine.Kernels.Tests -c Release --filter "FullyQualifiedName~RepackedBench" --logger "console;verbosity=detailed"</summary>
[TestFixture, Explicit("hand-run benchmark"), Category("Bench")]
public sealed class RepackedBench
{
    [Test]
    public void RowByRow_vs_Repacked()
    {
        const int rows = 8192, cols = 2048;
        var o = TestContext.Out;
        var w32 = Data.Random(rows * cols, 1, 0.05f);
        foreach (var t in new[] { DType.Q4_0, DType.Q8_0 })
        {
            int copyCount = (int)Math.Max(2, (160L << 20) / t.ByteCount((long)rows * cols));
            var copies = Enumerable.Range(0, copyCount).Select(_ => NativeTensor.FromFloats(t, w32, rows, cols)).ToArray();
            foreach (int threads in new[] { 1, 2 })
            {
                using var plain = new CpuBackend(threads, options: new CpuKernelOptions { RepackWeights = false });
                using var packed = new CpuBackend(threads);
                packed.PrepareWeights(copies.Select(c => c.View).ToArray());
                foreach (int n in new[] { 1, 16, 64 })
                {
                    var x = Data.Random(n * cols, 2);
                    var y = new float[n * rows];
                    int k = 0;
                    var best = new double[2];
                    for (int round = 0; round < 3; round++)
                        for (int which = 0; which < 2; which++)
                        {
                            var b = which == 0 ? plain : packed;
                            b.MatMul(x, n, copies[k++ % copies.Length].View, y);
                            double bs = double.MaxValue;
                            for (int i = 0; i < Math.Max(4, 40 / n); i++)
                            {
                                long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
                                b.MatMul(x, n, copies[k++ % copies.Length].View, y);
                                bs = Math.Min(bs, System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalSeconds);
                            }
                            best[which] = round == 0 ? bs : Math.Min(best[which], bs);
                        }
                    long wb = copies[0].View.ByteLength;
                    o.WriteLine($"{t} {rows}×{cols} n={n,-2} {threads}t: row-by-row {best[0] * 1e3,7:F2} ms ({wb / best[0] / 1e9,5:F1} GB/s)  " +
                        $"repacked {best[1] * 1e3,7:F2} ms ({wb / best[1] / 1e9,5:F1} GB/s)  ×{best[0] / best[1]:F2}");
                }
            }
            foreach (var c in copies) c.Dispose();
        }
    }
}
