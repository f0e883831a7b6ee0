// Owns: shared helpers for kernel tests — backend factories (one test body per backend, candle's test_device! idea),
// native tensors built from float data in any float storage type, random data, and the NMSE metric.
// Invariant: NMSE = Σ(a−b)² / Σb² with b the reference; 0 when both are all-zero.
namespace Engine.Kernels.Tests;

using System.Runtime.InteropServices;
using Engine.Tensors;

public static class Backends
{
    /// <summary>Every backend under test, by name; each factory returns a fresh instance the test disposes.</summary>
    public static IEnumerable<TestCaseData> All()
    {
        yield return new TestCaseData(new BackendFactory("reference", () => new ReferenceBackend())).SetArgDisplayNames("reference");
        foreach (var f in Optimised()) yield return new TestCaseData(f).SetArgDisplayNames(f.Name);
    }

    /// <summary>The optimised backends compared against the reference.</summary>
    public static IEnumerable<BackendFactory> Optimised()
    {
        yield return new BackendFactory("cpu-1t", () => new CpuBackend(1));
        yield return new BackendFactory("cpu-2t", () => new CpuBackend(2));
        yield return new BackendFactory("cpu-3t", () => new CpuBackend(3));
    }

    public static IEnumerable<TestCaseData> OptimisedCases()
    {
        foreach (var f in Optimised()) yield return new TestCaseData(f).SetArgDisplayNames(f.Name);
    }
}

public sealed record BackendFactory(string Name, Func<IBackend> Create)
{
    public override string ToString() => Name;
}

/// <summary>A tensor in native (unmanaged, 64-byte aligned) memory, like a weight inside a mapped file.</summary>
public sealed unsafe class NativeTensor : IDisposable
{
    public nint Ptr { get; private set; }
    public TensorView View { get; }

    private NativeTensor(string name, DType type, long[] shape, byte[] bytes)
    {
        Ptr = (nint)NativeMemory.AlignedAlloc((nuint)Math.Max(1, bytes.Length), 64);
        bytes.CopyTo(new Span<byte>((void*)Ptr, bytes.Length));
        View = new TensorView(name, type, shape, Ptr, bytes.Length);
    }

    /// <summary>A [rows, cols] matrix (GGUF ne = [cols, rows]) encoded from floats as F32, F16, BF16 (round to nearest even)
    /// or any quantized type (Engine.Tensors.Quants.Quantize, the scalar reference quantizer).</summary>
    public static NativeTensor FromFloats(DType type, float[] data, int rows, int cols, string name = "w")
    {
        if (data.Length != rows * cols) throw new ArgumentException("data size");
        return new NativeTensor(name, type, [cols, rows], Encode(type, data));
    }

    public static NativeTensor FromBytes(DType type, byte[] bytes, int rows, int cols, string name = "w")
        => new(name, type, [cols, rows], bytes);

    public static byte[] Encode(DType type, float[] data)
    {
        switch (type)
        {
            case DType.F32: return MemoryMarshal.AsBytes(data.AsSpan()).ToArray();
            case DType.F16:
            {
                var h = new Half[data.Length];
                for (int i = 0; i < h.Length; i++) h[i] = (Half)data[i];
                return MemoryMarshal.AsBytes(h.AsSpan()).ToArray();
            }
            case DType.BF16:
            {
                var u = new ushort[data.Length];
                for (int i = 0; i < u.Length; i++)
                {
                    uint b = BitConverter.SingleToUInt32Bits(data[i]);
                    u[i] = (ushort)((b + 0x7FFF + ((b >> 16) & 1)) >> 16);
                }
                return MemoryMarshal.AsBytes(u.AsSpan()).ToArray();
            }
            default: return Engine.Tensors.Quants.Quantize.Row(type, data);
        }
    }

    public void Dispose()
    {
        if (Ptr != 0) { NativeMemory.AlignedFree((void*)Ptr); Ptr = 0; }
    }
}

/// <summary>Pinned float buffer usable as a KV page.</summary>
public sealed unsafe class NativeFloats : IDisposable
{
    public float* Ptr { get; private set; }
    public int Length { get; }
    public NativeFloats(float[] data)
    {
        Length = data.Length;
        Ptr = (float*)NativeMemory.AlignedAlloc((nuint)Math.Max(4, data.Length * 4), 64);
        data.CopyTo(new Span<float>(Ptr, data.Length));
    }
    public nint Address => (nint)Ptr;
    public void Dispose() { if (Ptr != null) { NativeMemory.AlignedFree(Ptr); Ptr = null; } }
}

public static class Data
{
    public static float[] Random(int n, int seed, float scale = 1f) => TestData.RandomFloats(n, seed, scale);

    public static double Nmse(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected)
    {
        Assert.That(actual.Length, Is.EqualTo(expected.Length), "length");
        double num = 0, den = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double d = (double)actual[i] - expected[i];
            if (double.IsNaN(d)) return double.PositiveInfinity;
            num += d * d; den += (double)expected[i] * expected[i];
        }
        return den == 0 ? (num == 0 ? 0 : double.PositiveInfinity) : num / den;
    }
}
