// Owns: `--cpu-ab-paged`: paged vs contiguous decode attention measured in CPU time (single-threaded backend, min over
// interleaved repetitions — robust to other processes on the shared cores). The paged layout scatters the same K/V rows
// into blocks of BlockSize tokens placed in a shuffled order inside a pool (one KvPage per block, as PagedKvStore gives
// for a fragmented table); contiguous is one page. Also checks the two outputs are bitwise equal. Prints the ratio
// paged speed / contiguous speed (= contiguous CPU time / paged CPU time) per head shape and block size.
using System.Diagnostics;
using System.Runtime.InteropServices;
using Engine.Kernels;

namespace Engine.Bench;

public static unsafe class PagedCpuAb
{
    private const int Rounds = 15;

    public static void Run(int context = 4096, int threads = 1)
    {
        // (name, heads, kvHeads, headDim): Llama-3.2-1B, stories110M-like, stories42M-like
        var shapes = new (string Name, int Heads, int KvHeads, int HeadDim)[] { ("llama3.2-1b 32/8x64", 32, 8, 64), ("stories110m 12/12x64", 12, 12, 64), ("stories42m 8/8x64", 8, 8, 64) };
        using var backend = new CpuBackend(threads);                                   // page prefetch on (the default)
        using var noPrefetch = new CpuBackend(threads, options: new CpuKernelOptions { AttentionPagePrefetch = false });
        foreach (var s in shapes)
            foreach (int blockSize in new[] { 16, 32 })
            {
                int kvDim = s.KvHeads * s.HeadDim;
                long n = (long)context * kvDim;
                float* k = (float*)NativeMemory.AlignedAlloc((nuint)(n * 4), 64), v = (float*)NativeMemory.AlignedAlloc((nuint)(n * 4), 64);
                float* pk = (float*)NativeMemory.AlignedAlloc((nuint)(n * 4), 64), pv = (float*)NativeMemory.AlignedAlloc((nuint)(n * 4), 64);
                for (long i = 0; i < n; i++) { k[i] = MathF.Sin(i * 0.013f); v[i] = MathF.Cos(i * 0.007f); }
                int blocks = context / blockSize;
                var order = Enumerable.Range(0, blocks).ToArray();
                new Random(7).Shuffle(order);                                  // logical block b lives in physical slot order[b]
                var paged = new KvPage[blocks];
                for (int b = 0; b < blocks; b++)
                {
                    long src = (long)b * blockSize * kvDim, dst = (long)order[b] * blockSize * kvDim;
                    Buffer.MemoryCopy(k + src, pk + dst, blockSize * kvDim * 4, blockSize * kvDim * 4);
                    Buffer.MemoryCopy(v + src, pv + dst, blockSize * kvDim * 4, blockSize * kvDim * 4);
                    paged[b] = new KvPage((nint)(pk + dst), (nint)(pv + dst), blockSize, b * blockSize, kvDim);
                }
                var contiguous = new[] { new KvPage((nint)k, (nint)v, context, 0, kvDim) };
                var q = Enumerable.Range(0, s.Heads * s.HeadDim).Select(i => MathF.Sin(i * 0.11f)).ToArray();
                float[] oc = new float[q.Length], op = new float[q.Length];
                int[] pos = [context - 1];
                var p = new AttentionParams(s.Heads, s.KvHeads, s.HeadDim, 1f / MathF.Sqrt(s.HeadDim));
                var times = new[] { new List<double>(), new List<double>(), new List<double>() };
                int iters = Math.Max(3, 800_000 / context * 8 / s.Heads);
                float[] op0 = new float[q.Length];
                for (int round = 0; round < Rounds; round++)
                    for (int which = 0; which < 3; which++)
                    {
                        var pages = which == 0 ? contiguous : paged;
                        var o = which == 0 ? oc : which == 1 ? op0 : op;
                        var be = which == 1 ? noPrefetch : backend;         // 1: paged without the page prefetch, 2: with
                        be.Attention(q, pos, pages, p, o);
                        var t0 = Process.GetCurrentProcess().TotalProcessorTime;
                        for (int i = 0; i < iters; i++) be.Attention(q, pos, pages, p, o);
                        times[which].Add((Process.GetCurrentProcess().TotalProcessorTime - t0).TotalMicroseconds / iters);
                    }
                bool equal = oc.AsSpan().SequenceEqual(op) && oc.AsSpan().SequenceEqual(op0);
                double c = times[0].Min(), g0 = times[1].Min(), g = times[2].Min();
                Console.WriteLine($"ctx {context} threads {threads} {s.Name,-22} block {blockSize,2}: contiguous {c,7:F1} µs CPU, paged no-prefetch {g0,7:F1} (ratio {c / g0:F3}), paged prefetch {g,7:F1} (ratio {c / g:F3}) — min of {Rounds}, bitwise equal {equal}");
                NativeMemory.AlignedFree(k); NativeMemory.AlignedFree(v); NativeMemory.AlignedFree(pk); NativeMemory.AlignedFree(pv);
            }
    }
}
