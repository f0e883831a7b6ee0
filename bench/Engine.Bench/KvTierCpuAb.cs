// Owns: `--cpu-ab-kvtier`: decode (1 query row) and prefill (32 query rows, causal) attention over F32 vs Int8 vs Int4
// (KIVI) vs F16 KV pages of the same data, measured in CPU time of a single-threaded backend (min over interleaved repetitions —
// robust to other processes on the shared cores). Shape: Llama-3.2-1B (32 query heads, 8 KV heads, head dim 64);
// quantization group 32 (the policy store's block size). Prints µs of CPU per call per tier and the ratios tier / F32
// (lower is better; 1.0 = as fast as float32), plus each tier's NMSE against the F32 output (quantization error only).
// `--bits256` caps CpuKernelOptions.MaxVectorBits at 256 (the AVX2 paths of every tier, F32 included); `--generic` turns
// CpuKernelOptions.AttentionQuant off (the decode-row-then-dot path every non-F32 tier took before it).
using System.Diagnostics;
using System.Runtime.InteropServices;
using Engine.Kernels;

namespace Engine.Bench;

public static unsafe class KvTierCpuAb
{
    private const int Rounds = 7, Group = 32, Heads = 32, KvHeads = 8, HeadDim = 64;

    public static void Run(int threads = 1, int bits = 512, bool generic = false)
    {
        using var backend = new CpuBackend(threads, options: new CpuKernelOptions { MaxVectorBits = bits, AttentionQuant = !generic });
        var p = new AttentionParams(Heads, KvHeads, HeadDim, 1f / MathF.Sqrt(HeadDim));
        int kvDim = KvHeads * HeadDim;
        foreach (int ctx in new[] { 1024, 4096, 16384 })
        {
            var allocs = new List<nint>();
            nint Alloc(long bytes) { var a = (nint)NativeMemory.AlignedAlloc((nuint)bytes, 64); allocs.Add(a); return a; }
            long n = (long)ctx * kvDim;
            float* k = (float*)Alloc(n * 4), v = (float*)Alloc(n * 4);
            var rng = new Random(ctx);                                     // uniform keys in ±2, values in ±1 (random, so NMSE means something)
            for (long i = 0; i < n; i++) { k[i] = (float)(rng.NextDouble() * 4 - 2); v[i] = (float)(rng.NextDouble() * 2 - 1); }
            var f32 = new KvPage((nint)k, (nint)v, ctx, 0, kvDim);
            sbyte* k8 = (sbyte*)Alloc(n), v8 = (sbyte*)Alloc(n);
            float* k8s = (float*)Alloc(n / Group * 4), v8s = (float*)Alloc(n / Group * 4);
            KvQuantizer.Int8(k, kvDim, ctx, kvDim, Group, k8, k8s);
            KvQuantizer.Int8(v, kvDim, ctx, kvDim, Group, v8, v8s);
            var i8 = new KvPage((nint)k8, (nint)v8, ctx, 0, kvDim) { Type = KvElementType.Int8, KScale = (nint)k8s, VScale = (nint)v8s, GroupSize = Group };
            byte* k4 = (byte*)Alloc(n / 2), v4 = (byte*)Alloc(n / 2);
            float* k4p = (float*)Alloc((ctx + Group - 1) / Group * kvDim * 8L), v4p = (float*)Alloc(n / Group * 8);
            KvQuantizer.Int4Keys(k, kvDim, ctx, kvDim, Group, k4, k4p);
            KvQuantizer.Int4Values(v, kvDim, ctx, kvDim, Group, v4, v4p);
            var i4 = new KvPage((nint)k4, (nint)v4, ctx, 0, kvDim) { Type = KvElementType.Int4, KScale = (nint)k4p, VScale = (nint)v4p, GroupSize = Group };
            ushort* k16 = (ushort*)Alloc(n * 2), v16 = (ushort*)Alloc(n * 2);
            for (long i = 0; i < n; i++) { k16[i] = BitConverter.HalfToUInt16Bits((Half)k[i]); v16[i] = BitConverter.HalfToUInt16Bits((Half)v[i]); }
            var f16 = new KvPage((nint)k16, (nint)v16, ctx, 0, kvDim) { Type = KvElementType.F16 };
            KvPage[][] tiers = [[f32], [i8], [i4], [f16]];
            string[] names = ["F32", "Int8", "Int4", "F16"];

            foreach (int rows in ctx <= 4096 ? new[] { 1, 32 } : new[] { 1 })
            {
                var qr = new Random(rows);
                var q = Enumerable.Range(0, rows * Heads * HeadDim).Select(_ => (float)(qr.NextDouble() * 2 - 1)).ToArray();
                var pos = Enumerable.Range(ctx - rows, rows).ToArray();
                var outs = tiers.Select(_ => new float[q.Length]).ToArray();
                var times = tiers.Select(_ => new List<double>()).ToArray();
                int iters = Math.Max(2, (rows == 1 ? 48_000 : 2_000) / ctx * 8);
                for (int round = 0; round < Rounds; round++)
                    for (int w = 0; w < tiers.Length; w++)
                    {
                        backend.Attention(q, pos, tiers[w], p, outs[w]);
                        var t0 = Process.GetCurrentProcess().TotalProcessorTime;
                        for (int i = 0; i < iters; i++) backend.Attention(q, pos, tiers[w], p, outs[w]);
                        times[w].Add((Process.GetCurrentProcess().TotalProcessorTime - t0).TotalMicroseconds / iters);
                    }
                double f = times[0].Min();
                var line = $"ctx {ctx,5} {(rows == 1 ? "decode " : $"prefill{rows}")} threads {threads} bits {bits}{(generic ? " generic" : "")}: F32 {f,9:F1} µs CPU";
                for (int w = 1; w < tiers.Length; w++)
                    line += $" | {names[w]} {times[w].Min(),9:F1} µs ({times[w].Min() / f:F2}× F32, nmse {Nmse(outs[w], outs[0]):E1})";
                Console.WriteLine(line + $" — min of {Rounds}");
            }
            foreach (var a in allocs) NativeMemory.AlignedFree((void*)a);
        }
    }

    private static double Nmse(float[] a, float[] b)
    {
        double num = 0, den = 0;
        for (int i = 0; i < a.Length; i++) { num += (double)(a[i] - b[i]) * (a[i] - b[i]); den += (double)b[i] * b[i]; }
        return den == 0 ? 0 : num / den;
    }
}
