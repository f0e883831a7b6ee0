// Owns: the non-matmul ops of a Llama-1B forward on the CPU backend: RMSNorm over [n, 2048] rows, softmax over one
// vector (a head's scores, the vocabulary), and decode attention (1 query row, 32 heads / 8 KV heads × 64) over a
// float32 KV cache of 1K / 4K / 16K tokens, with the K+V bytes read per call as GB/s.
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using Engine.Kernels;

namespace Engine.Bench;

internal static class BenchSettings
{
    public static int Threads => int.TryParse(Environment.GetEnvironmentVariable("ENGINE_BENCH_THREADS"), out int t) ? t : 2;
}

public class RmsNormBenchmarks
{
    [Params(1, 512)] public int Rows { get; set; }

    private CpuBackend _backend = null!;
    private float[] _x = [], _w = [], _y = [];

    [GlobalSetup]
    public void Setup()
    {
        _backend = new CpuBackend(BenchSettings.Threads);
        _x = Enumerable.Range(0, Rows * 2048).Select(i => MathF.Sin(i * 0.1f)).ToArray();
        _w = Enumerable.Range(0, 2048).Select(i => 1 + 0.01f * MathF.Cos(i)).ToArray();
        _y = new float[_x.Length];
    }

    [Benchmark] public void RmsNorm() => _backend.RmsNorm(_x, _w, 1e-5f, _y);

    [GlobalCleanup] public void Cleanup() => _backend.Dispose();
}

public class SoftmaxBenchmarks
{
    [Params(4096, 128256)] public int Length { get; set; }

    private CpuBackend _backend = null!;
    private float[] _x = [], _src = [];

    [GlobalSetup]
    public void Setup()
    {
        _backend = new CpuBackend(BenchSettings.Threads);
        _src = Enumerable.Range(0, Length).Select(i => 8 * MathF.Sin(i * 0.37f)).ToArray();
        _x = new float[Length];
    }

    [Benchmark]
    public void Softmax()
    {
        _src.CopyTo(_x, 0);
        _backend.Softmax(_x);
    }

    [GlobalCleanup] public void Cleanup() => _backend.Dispose();
}

public unsafe class AttentionBenchmarks : IStreamsBytes
{
    private const int Heads = 32, KvHeads = 8, HeadDim = 64, KvDim = KvHeads * HeadDim;

    [Params(1024, 4096, 16384)] public int Context { get; set; }

    /// <summary>AVX-512 head-major fast path (AttentionRange512) on/off: the A/B of the attention change.</summary>
    [Params(true, false)] public bool FastPath { get; set; }

    private CpuBackend _backend = null!;
    private float* _k, _v;
    private float[] _q = [], _out = [];
    private KvPage[] _pages = [];
    private int[] _pos = [];

    public static long BytesPerCall(IReadOnlyDictionary<string, object> p) => 2L * (int)p[nameof(Context)] * KvDim * sizeof(float);

    [GlobalSetup]
    public void Setup() => Setup(BenchSettings.Threads);

    public void Setup(int threads)
    {
        _backend = new CpuBackend(threads, options: new CpuKernelOptions { Attention512 = FastPath });
        long n = (long)Context * KvDim;
        _k = (float*)NativeMemory.AlignedAlloc((nuint)(n * sizeof(float)), 64);
        _v = (float*)NativeMemory.AlignedAlloc((nuint)(n * sizeof(float)), 64);
        for (long i = 0; i < n; i++) { _k[i] = MathF.Sin(i * 0.013f); _v[i] = MathF.Cos(i * 0.007f); }
        _q = Enumerable.Range(0, Heads * HeadDim).Select(i => MathF.Sin(i * 0.11f)).ToArray();
        _out = new float[Heads * HeadDim];
        _pages = [new KvPage((nint)_k, (nint)_v, Context, 0, KvDim)];
        _pos = [Context - 1];
    }

    [Benchmark]
    public void DecodeAttention()
    {
        _backend.Attention(_q, _pos, _pages, new AttentionParams(Heads, KvHeads, HeadDim, 0.125f), _out);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _backend.Dispose();
        NativeMemory.AlignedFree(_k);
        NativeMemory.AlignedFree(_v);
    }
}
