// Owns: `--cpu-ab-f32walk`: float32 attention CPU time with AttentionRangeF32Walk off (AttentionRange512's per-query-head
// page walk, the default before) vs on (per-KV-head chunked walk with next-chunk prefetch), side by side in one run:
// interleaved rounds, min of Rounds (CPU time of the process: robust to other processes on the shared cores).
// Shape: Llama-3.2-1B (32 query heads, 8 KV heads, head dim 64). Contexts 1K/4K/16K/64K; contiguous (one page) and
// paged (16-token blocks placed in a shuffled order in a pool, as PagedKvStore gives for a fragmented table); decode
// (1 row) and causal prefill (32 rows, contexts ≤ 4K). Prints µs of CPU per call and the ratio walk / off (lower is
// better) and whether the two outputs are bitwise equal (the walk's invariant). `--threads2`: a 2-thread backend.
using System.Diagnostics;
using System.Runtime.InteropServices;
using Engine.Kernels;

namespace Engine.Bench;

public static unsafe class F32WalkCpuAb
{
    private const int Rounds = 7, Heads = 32, KvHeads = 8, HeadDim = 64, Block = 16;

    public static void Run(int threads = 1, int[]? contexts = null)
    {
        int.TryParse(Environment.GetEnvironmentVariable("F32WALK_CHUNK"), out int chunk);
        var walk = new CpuKernelOptions { AttentionF32WalkChunk = Math.Max(0, chunk) };
        // [0] walk off, [1] walk on: two backends side by side (the variant is a constructor parameter)
        using var offBackend = new CpuBackend(threads, options: walk with { AttentionF32Walk = false });
        using var onBackend = new CpuBackend(threads, options: walk);
        var backends = new[] { offBackend, onBackend };
        var p = new AttentionParams(Heads, KvHeads, HeadDim, 1f / MathF.Sqrt(HeadDim));
        int kvDim = KvHeads * HeadDim;
        Console.WriteLine($"F32 walk chunk override {walk.AttentionF32WalkChunk} (0 = automatic)");
        foreach (int ctx in contexts ?? [1024, 4096, 16384, 65536])
        {
            long n = (long)ctx * kvDim;
            float* k = (float*)NativeMemory.AlignedAlloc((nuint)(n * 4), 64), v = (float*)NativeMemory.AlignedAlloc((nuint)(n * 4), 64);
            float* pk = (float*)NativeMemory.AlignedAlloc((nuint)(n * 4), 64), pv = (float*)NativeMemory.AlignedAlloc((nuint)(n * 4), 64);
            var rng = new Random(ctx);
            for (long i = 0; i < n; i++) { k[i] = (float)(rng.NextDouble() * 4 - 2); v[i] = (float)(rng.NextDouble() * 2 - 1); }
            int blocks = ctx / Block;
            var order = Enumerable.Range(0, blocks).ToArray();
            new Random(7).Shuffle(order);                                      // logical block b lives in physical slot order[b]
            var paged = new KvPage[blocks];
            for (int b = 0; b < blocks; b++)
            {
                long src = (long)b * Block * kvDim, dst = (long)order[b] * Block * kvDim;
                Buffer.MemoryCopy(k + src, pk + dst, Block * kvDim * 4, Block * kvDim * 4);
                Buffer.MemoryCopy(v + src, pv + dst, Block * kvDim * 4, Block * kvDim * 4);
                paged[b] = new KvPage((nint)(pk + dst), (nint)(pv + dst), Block, b * Block, kvDim);
            }
            var layouts = new[] { ("contiguous", new[] { new KvPage((nint)k, (nint)v, ctx, 0, kvDim) }), ("paged16", paged) };
            foreach (int rows in ctx <= 4096 ? new[] { 1, 32 } : new[] { 1 })
                foreach (var (name, pages) in layouts)
                {
                    var qr = new Random(rows);
                    var q = Enumerable.Range(0, rows * Heads * HeadDim).Select(_ => (float)(qr.NextDouble() * 2 - 1)).ToArray();
                    var pos = Enumerable.Range(ctx - rows, rows).ToArray();
                    var outs = new[] { new float[q.Length], new float[q.Length] };
                    var times = new[] { new List<double>(), new List<double>() };
                    int iters = Math.Max(2, (rows == 1 ? 96_000 : 4_000) / ctx * 4);
                    for (int round = 0; round < Rounds; round++)
                        for (int w = 0; w < 2; w++)
                        {
                            var backend = backends[w];
                            backend.Attention(q, pos, pages, p, outs[w]);
                            var t0 = Process.GetCurrentProcess().TotalProcessorTime;
                            for (int i = 0; i < iters; i++) backend.Attention(q, pos, pages, p, outs[w]);
                            times[w].Add((Process.GetCurrentProcess().TotalProcessorTime - t0).TotalMicroseconds / iters);
                        }
                    double off = times[0].Min(), on = times[1].Min();
                    Console.WriteLine($"ctx {ctx,5} {(rows == 1 ? "decode   " : $"prefill{rows}")} {name,-10} threads {threads}: off {off,9:F1} µs CPU, walk {on,9:F1} µs CPU, walk/off {on / off:F3} — min of {Rounds}, bitwise equal {outs[0].AsSpan().SequenceEqual(outs[1])}");
                }
            NativeMemory.AlignedFree(k); NativeMemory.AlignedFree(v); NativeMemory.AlignedFree(pk); NativeMemory.AlignedFree(pv);
        }
    }
}
