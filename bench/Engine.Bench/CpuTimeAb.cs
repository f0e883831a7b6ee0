// Owns: `--cpu-ab`: an A/B of the attention fast path measured in CPU time of the (single-threaded) backend, which is
// far less sensitive than wall time to other processes sharing the cores (a loaded machine deschedules us; CPU time
// only counts while we run). Prints µs of CPU per call, for each context, fast path on and off, interleaved.
using System.Diagnostics;
using Engine.Kernels;

namespace Engine.Bench;

public static class CpuTimeAb
{
    public static void Run()
    {
        foreach (int ctx in new[] { 1024, 4096, 16384 })
        {
            var b = new AttentionBenchmarks { Context = ctx };
            b.Setup(threads: 1);
            var times = new Dictionary<bool, List<double>> { [true] = [], [false] = [] };
            for (int round = 0; round < 6; round++)
                foreach (bool fast in new[] { true, false })
                {
                    b.FastPath = fast;
                    int iters = Math.Max(3, 200_000 / ctx);
                    b.DecodeAttention();
                    var t0 = Process.GetCurrentProcess().TotalProcessorTime;
                    for (int i = 0; i < iters; i++) b.DecodeAttention();
                    times[fast].Add((Process.GetCurrentProcess().TotalProcessorTime - t0).TotalMicroseconds / iters);
                }
            b.Cleanup();
            double f = times[true].Min(), g = times[false].Min();
            Console.WriteLine($"attention decode ctx {ctx,6}: fast {f,9:F1} µs CPU, generic {g,9:F1} µs CPU (min of 6), speed-up {g / f:F2}×");
        }
    }
}
