// Owns: the plain memory bandwidth baseline for MatVecBenchmarks: copying a 256 MiB buffer (far beyond L3) on one
// thread and split over the backend's thread count. GB/s counts bytes copied (each is read once and written once).
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;

namespace Engine.Bench;

public unsafe class MemoryBenchmarks : IStreamsBytes
{
    public const long Bytes = 256L << 20;

    [Params(1, 2)]
    public int CopyThreads { get; set; }

    private byte* _src, _dst;

    public static long BytesPerCall(IReadOnlyDictionary<string, object> p) => Bytes;

    [GlobalSetup]
    public void Setup()
    {
        _src = (byte*)NativeMemory.AlignedAlloc((nuint)Bytes, 64);
        _dst = (byte*)NativeMemory.AlignedAlloc((nuint)Bytes, 64);
        new Span<byte>(_src, (int)Bytes).Fill(1);
        Copy();
    }

    [Benchmark]
    public void Copy()
    {
        if (CopyThreads == 1) { Buffer.MemoryCopy(_src, _dst, Bytes, Bytes); return; }
        long part = Bytes / CopyThreads;
        Parallel.For(0, CopyThreads, i => Buffer.MemoryCopy(_src + i * part, _dst + i * part, part, part));
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        NativeMemory.AlignedFree(_src);
        NativeMemory.AlignedFree(_dst);
    }
}
