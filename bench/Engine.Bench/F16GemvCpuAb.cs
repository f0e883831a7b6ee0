// Owns: `--cpu-ab-f16`: A/B of the F16 → float conversion inside the decode GEMV (one token × an 8192 × 2048 F16
// matrix, 32 MiB, the shape of Llama-3.2-1B's ffn_up), old conversion (separate sign and exponent/mantissa paths,
// kept here verbatim as the "before") vs HalfConvert.DotF16 (the current one), single thread, measured in CPU time of
// this process (robust when other processes share the cores), rounds interleaved, min and median of 9.
using System.Diagnostics;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Engine.Kernels;

namespace Engine.Bench;

public static unsafe class F16GemvCpuAb
{
    private static readonly float Rebias = BitConverter.Int32BitsToSingle(0x77800000);

    // The conversion before this change (HalfConvert.F16x16 at commit 9e6ef77).
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> OldF16x16(ushort* p)
    {
        var u = Avx512F.ConvertToVector512UInt32(Vector256.Load(p));
        var em = u & Vector512.Create(0x7FFFu);
        var v = em << 13;
        var f = v.AsSingle() * Vector512.Create(Rebias);
        var special = Vector512.GreaterThanOrEqual(em, Vector512.Create(0x7C00u));
        var r = Vector512.ConditionalSelect(special, v | Vector512.Create(0x7F800000u), f.AsUInt32());
        return (r | ((u & Vector512.Create(0x8000u)) << 16)).AsSingle();
    }

    private static float OldDot(ushort* w, float* x, int n)
    {
        Vector512<float> s0 = default, s1 = default;
        for (int i = 0; i < n; i += 32)
        {
            s0 = Vector512.FusedMultiplyAdd(OldF16x16(w + i), Vector512.Load(x + i), s0);
            s1 = Vector512.FusedMultiplyAdd(OldF16x16(w + i + 16), Vector512.Load(x + i + 16), s1);
        }
        return Vector512.Sum(s0 + s1);
    }

    public static void Run()
    {
        if (!Avx512F.IsSupported) { Console.WriteLine("needs AVX-512"); return; }
        const int rows = 8192, cols = 2048;
        var w = (ushort*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)rows * cols * 2, 64);
        var x = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)cols * 4, 64);
        var y = new float[rows];
        var rng = new Random(1);
        for (long i = 0; i < (long)rows * cols; i++) w[i] = BitConverter.HalfToUInt16Bits((Half)(rng.NextSingle() * 0.04f - 0.02f));
        for (int i = 0; i < cols; i++) x[i] = rng.NextSingle() * 2 - 1;
        float* px = x;
        {
            double Gemv(bool old)
            {
                var t0 = Process.GetCurrentProcess().TotalProcessorTime;
                for (int rep = 0; rep < 5; rep++)
                    for (int r = 0; r < rows; r++)
                        y[r] = old ? OldDot(w + (long)r * cols, px, cols) : HalfConvert.DotF16(SimdWidth.Widest, w + (long)r * cols, px, cols);
                return (Process.GetCurrentProcess().TotalProcessorTime - t0).TotalMilliseconds / 5;
            }
            Gemv(true); Gemv(false);
            var a = new List<double>(); var b = new List<double>();
            for (int round = 0; round < 9; round++) { a.Add(Gemv(true)); b.Add(Gemv(false)); }
            a.Sort(); b.Sort();
            double gb = (double)rows * cols * 2 / 1e9;
            Console.WriteLine($"F16 GEMV 8192x2048, 1 thread, CPU ms per call (min / median of 9): old {a[0]:F2} / {a[4]:F2} ({gb / a[0] * 1e3:F1} GB/s), " +
                $"new {b[0]:F2} / {b[4]:F2} ({gb / b[0] * 1e3:F1} GB/s), speed-up {a[0] / b[0]:F2}x (median {a[4] / b[4]:F2}x)");
        }
        System.Runtime.InteropServices.NativeMemory.AlignedFree(w);
        System.Runtime.InteropServices.NativeMemory.AlignedFree(x);
    }
}
