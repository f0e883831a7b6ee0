// Owns: a by-hand microbenchmark (Explicit: never runs in CI) of QuantDot.DotRows on one thread:
// weight GB/s per type for a 4096×4096 matrix, SIMD path and scalar path.
// Run: dotnet test tests/Engine.Kernels.Tests -c Release --filter "FullyQualifiedName~QuantDotBench" --logger "console;verbosity=detailed"
using System.Diagnostics;
using System.Runtime.InteropServices;
using Engine.Kernels.Quant;
using Engine.Tensors;

namespace Engine.Kernels.Tests;

[Explicit("microbenchmark, run by hand")]
public unsafe class QuantDotBench
{
    [Test]
    public void DotRows_4096x4096_OneThread()
    {
        const int rows = 4096, cols = 4096;
        var rnd = new Random(1);
        TestContext.Out.WriteLine($"ISA: AVX2 {System.Runtime.Intrinsics.X86.Avx2.IsSupported}, AVX-VNNI {System.Runtime.Intrinsics.X86.AvxVnni.IsSupported}, " +
            $"AVX-512BW {System.Runtime.Intrinsics.X86.Avx512BW.IsSupported}; best path {QuantDot.BestPath}");
        string? only = Environment.GetEnvironmentVariable("ENGINE_BENCH_TYPES"); // e.g. "Q4_0,Q8_0"
        foreach (var t in QuantDotTests.WeightTypes)
        {
            if (only != null && !only.Split(',').Contains(t.ToString())) continue;
            long rowBytes = t.ByteCount(cols);
            long total = rowBytes * rows;
            byte* w = (byte*)NativeMemory.AlignedAlloc((nuint)total, 64);
            try
            {
                byte[] oneRowSet = QuantDotTests.RandomBlocks(rnd, t, cols * 16);
                for (long o = 0; o < total; o += oneRowSet.Length)
                    new ReadOnlySpan<byte>(oneRowSet, 0, (int)Math.Min(oneRowSet.Length, total - o)).CopyTo(new Span<byte>(w + o, (int)Math.Min(oneRowSet.Length, total - o)));
                var qx = new byte[QuantDot.ActivationBytes(t, cols)];
                float[] x = QuantDotTests.Gaussian(rnd, cols);
                var y = new float[rows];
                var line = $"{t,-5} {total / 1e6,6:F1} MB";
                foreach (var path in QuantDotTests.Paths().Reverse())
                {
                    double best = double.MaxValue;
                    int reps = path == QuantKernelPath.Scalar ? 3 : 40;
                    fixed (byte* px = qx) fixed (float* py = y)
                    {
                        // warm up past tiered JIT (tier-0 → tier-1 needs ~30 calls plus a background compile)
                        for (var warm = Stopwatch.StartNew(); warm.ElapsedMilliseconds < (path == QuantKernelPath.Scalar ? 300 : 400);)
                            QuantDot.DotRows(t, w, rowBytes, 0, 64, px, cols, py, path);
                        for (int rep = 0; rep < reps; rep++)
                        {
                            var sw = Stopwatch.StartNew();
                            QuantDot.QuantizeActivation(t, x, qx);
                            QuantDot.DotRows(t, w, rowBytes, 0, rows, px, cols, py, path);
                            best = Math.Min(best, sw.Elapsed.TotalSeconds);
                        }
                    }
                    line += $"  {path}: {best * 1e3,7:F2} ms {total / best / 1e9,6:F2} GB/s";
                }
                {
                    // Batched (prefill) form: 32 activation rows; report weight-bytes × tokens per second.
                    const int n = 32;
                    int ab = QuantDot.ActivationBytes(t, cols);
                    var qn = new byte[ab * n];
                    for (int i = 0; i < n; i++) QuantDot.QuantizeActivation(t, QuantDotTests.Gaussian(rnd, cols), qn.AsSpan(i * ab, ab));
                    var yn = new float[rows * n];
                    int batchRows = rows / 32; // short reps (~0.5 ms) so that fewer are preempted on a busy machine
                    double best = double.MaxValue;
                    fixed (byte* px = qn) fixed (float* py = yn)
                    {
                        for (var warm = Stopwatch.StartNew(); warm.ElapsedMilliseconds < 400;)
                            QuantDot.DotRowsBatch(t, w, rowBytes, 0, 16, px, ab, n, cols, py, rows);
                        for (int rep = 0; rep < 40; rep++)
                        {
                            var sw = Stopwatch.StartNew();
                            QuantDot.DotRowsBatch(t, w, rowBytes, 0, batchRows, px, ab, n, cols, py, rows);
                            best = Math.Min(best, sw.Elapsed.TotalSeconds);
                        }
                    }
                    line += $"  batch32: {rowBytes * batchRows * (double)n / best / 1e9,6:F2} GB/s·tok";
                }
                var sq = Stopwatch.StartNew();
                for (int i = 0; i < 100; i++) QuantDot.QuantizeActivation(t, x, qx);
                line += $"  (quantize activation {sq.Elapsed.TotalMilliseconds * 10:F1} µs)";
                TestContext.Out.WriteLine(line);
            }
            finally { NativeMemory.AlignedFree(w); }
        }
    }
}
