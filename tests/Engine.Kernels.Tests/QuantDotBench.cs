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
        foreach (var t in QuantDotTests.WeightTypes)
        {
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
                    int reps = path == QuantKernelPath.Scalar ? 2 : 40;
                    fixed (byte* px = qx) fixed (float* py = y)
                        for (int rep = 0; rep < reps; rep++)
                        {
                            var sw = Stopwatch.StartNew();
                            QuantDot.QuantizeActivation(t, x, qx);
                            QuantDot.DotRows(t, w, rowBytes, 0, rows, px, cols, py, path);
                            best = Math.Min(best, sw.Elapsed.TotalSeconds);
                        }
                    line += $"  {path}: {best * 1e3,7:F2} ms {total / best / 1e9,6:F2} GB/s";
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
