// Owns: per-thread native scratch buffers of the CPU backend (64-byte aligned, grown on demand, never shrunk).
// Invariant: buffer t is touched only by pool thread t during an op; growth happens only when a larger shape than
// ever before arrives, so steady-state ops allocate nothing.
namespace Engine.Kernels;

using System.Runtime.InteropServices;

internal sealed unsafe class Scratch : IDisposable
{
    private readonly byte*[] _buffers;
    private readonly long[] _sizes;

    public Scratch(int threads)
    {
        _buffers = new byte*[threads];
        _sizes = new long[threads];
    }

    /// <summary>At least <paramref name="bytes"/> bytes for thread <paramref name="thread"/>; contents undefined.</summary>
    public byte* Get(int thread, long bytes)
    {
        if (_sizes[thread] < bytes)
        {
            if (_buffers[thread] != null) NativeMemory.AlignedFree(_buffers[thread]);
            long size = Math.Max(bytes, _sizes[thread] * 2);
            _buffers[thread] = (byte*)NativeMemory.AlignedAlloc((nuint)size, 64);
            _sizes[thread] = size;
        }
        return _buffers[thread];
    }

    public float* Floats(int thread, long count) => (float*)Get(thread, count * sizeof(float));

    public void Dispose()
    {
        for (int i = 0; i < _buffers.Length; i++)
        {
            if (_buffers[i] != null) NativeMemory.AlignedFree(_buffers[i]);
            _buffers[i] = null; _sizes[i] = 0;
        }
    }
}
