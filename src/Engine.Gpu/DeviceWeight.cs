// Owns: a weight matrix (or embedding table / norm vector) uploaded once to the device in its own GGUF type.
// Layout: the file's bytes as they are (GGUF block layout, rows back to back), so device bytes = file bytes (1.00×);
// kernels dequantize per element (kernels/Dequant.cs). Supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K.
// Invariants: Rows · RowBytes = ByteLength; a row is a whole number of blocks; immutable after upload.
using ILGPU;
using ILGPU.Runtime;
using Engine.Tensors;

namespace Engine.Gpu;

/// <summary>A weight resident on the device.</summary>
public sealed class DeviceWeight : IDisposable
{
    private readonly MemoryBuffer1D<byte, Stride1D.Dense> _buffer;

    private DeviceWeight(MemoryBuffer1D<byte, Stride1D.Dense> buffer, DType type, int rows, int cols, long rowBytes)
    {
        _buffer = buffer; Type = type; Rows = rows; Cols = cols; RowBytes = rowBytes;
    }

    public DType Type { get; }
    public int Rows { get; }
    public int Cols { get; }
    public long RowBytes { get; }
    public long ByteLength => _buffer.Length;
    public ArrayView<byte> View => _buffer.View;

    /// <summary>Types the device kernels read.</summary>
    public static bool IsSupported(DType t) => t is DType.F32 or DType.F16 or DType.BF16 or DType.Q8_0 or DType.Q4_0 or DType.Q4_K or DType.Q6_K;

    /// <summary>Uploads <paramref name="w"/> (ne = [cols, rows]) once.</summary>
    public static unsafe DeviceWeight Upload(GpuDevice device, TensorView w)
    {
        if (!IsSupported(w.Type))
            throw new NotSupportedException($"tensor '{w.Name}' has type {w.Type}, which the GPU backend does not read (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K)");
        long rowBytes = w.RowBytes;
        long bytes = rowBytes * w.RowCount;
        if (bytes > w.ByteLength) throw new ArgumentException($"tensor '{w.Name}' holds {w.ByteLength} bytes, its shape needs {bytes}");
        var buf = device.Accelerator.Allocate1D<byte>(Math.Max(bytes, 4));
        const int chunk = 1 << 30;
        for (long o = 0; o < bytes; o += chunk)
        {
            int len = (int)Math.Min(chunk, bytes - o);
            buf.View.AsContiguous().SubView(o, len).CopyFromCPU(new ReadOnlySpan<byte>((byte*)w.Data + o, len));
        }
        return new DeviceWeight(buf, w.Type, w.RowCount, w.RowLength, rowBytes);
    }

    /// <summary>Uploads a float vector (norm weights, biases) as an F32 "matrix" of one row.</summary>
    public static DeviceWeight Upload(GpuDevice device, ReadOnlySpan<float> v)
    {
        var buf = device.Accelerator.Allocate1D<byte>(Math.Max(v.Length * 4L, 4));
        buf.View.AsContiguous().SubView(0, v.Length * 4L).CopyFromCPU(System.Runtime.InteropServices.MemoryMarshal.AsBytes(v));
        return new DeviceWeight(buf, DType.F32, 1, v.Length, v.Length * 4L);
    }

    /// <summary>The bytes as floats (F32 only: norm weights, biases).</summary>
    public ArrayView<float> Floats => Type == DType.F32 ? _buffer.View.AsContiguous().SubView(0, (long)Rows * Cols * 4).Cast<float>()
        : throw new InvalidOperationException($"weight is {Type}, not F32");

    public void Dispose() => _buffer.Dispose();
}
