// Owns: the public entry points of the quantized dot products used by the CPU backend's MatMul for quantized
// weights: activation quantization to the weight type's "vec_dot" type and weight-row · activation-row dots.
// Invariants: activations are quantized as llama.cpp's CPU path does (Q4_0/Q5_0/Q8_0 → Q8_0, Q4_1/Q5_1 → Q8_1,
// K-quants → Q8_K with bsums); integer products are exact and each block's integer sum is scaled in float32, so
// Dot equals dequant(w) · dequant(qx) up to float32 rounding. No allocation on the hot path; cols is a multiple of
// the weight block size. The SIMD path (AVX2, AVX-VNNI when present) and the scalar-integer path compute the same
// block sums; tests run both (see QuantKernelPath).
// Source: the vec_dot scheme of ggml-cpu (llama.cpp); kernels written here.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;
using Engine.Tensors;
using Engine.Tensors.Quants;

[assembly: InternalsVisibleTo("Engine.Kernels.Tests")]

namespace Engine.Kernels.Quant;

/// <summary>Which implementation a quantized dot runs on (tests force each one).</summary>
internal enum QuantKernelPath { Scalar, Avx2 }

/// <summary>Quantized weight-row · quantized activation-row dot products (llama.cpp-style vec_dot).</summary>
public static unsafe class QuantDot
{
    /// <summary>The best path on this machine.</summary>
    internal static readonly QuantKernelPath BestPath =
        Avx2.IsSupported && Fma.IsSupported ? QuantKernelPath.Avx2 : QuantKernelPath.Scalar;

    /// <summary>True for the weight types this class computes with (the quantized ones; F32/F16/BF16 are not handled here).</summary>
    public static bool Supports(DType weightType) => weightType is DType.Q4_0 or DType.Q4_1 or DType.Q5_0 or DType.Q5_1
        or DType.Q8_0 or DType.Q2_K or DType.Q3_K or DType.Q4_K or DType.Q5_K or DType.Q6_K;

    /// <summary>The block type activations are quantized to for a weight type: Q8_0, Q8_1 or Q8_K.</summary>
    public static DType ActivationType(DType weightType) => weightType switch
    {
        DType.Q4_0 or DType.Q5_0 or DType.Q8_0 => DType.Q8_0,
        DType.Q4_1 or DType.Q5_1 => DType.Q8_1,
        DType.Q2_K or DType.Q3_K or DType.Q4_K or DType.Q5_K or DType.Q6_K => DType.Q8_K,
        _ => throw new NotSupportedException($"no quantized dot product for weight type {weightType}"),
    };

    /// <summary>Bytes of one quantized activation row of <paramref name="cols"/> elements.</summary>
    public static int ActivationBytes(DType weightType, int cols)
    {
        CheckCols(weightType, cols);
        return checked((int)ActivationType(weightType).ByteCount(cols));
    }

    /// <summary>Quantizes one activation row x[cols] into dst (ActivationBytes(weightType, cols) bytes).</summary>
    public static void QuantizeActivation(DType weightType, ReadOnlySpan<float> x, Span<byte> dst)
    {
        CheckCols(weightType, x.Length);
        DType at = ActivationType(weightType);
        if (dst.Length < at.ByteCount(x.Length))
            throw new ArgumentException($"activation buffer of {dst.Length} bytes is too small for {x.Length} {at} elements", nameof(dst));
        ActivationQuantizer.Row(at, x, dst);
    }

    /// <summary>One weight row (cols elements of weightType) · one quantized activation row.</summary>
    public static float Dot(DType weightType, ReadOnlySpan<byte> wRow, ReadOnlySpan<byte> qx, int cols) =>
        Dot(weightType, wRow, qx, cols, BestPath);

    internal static float Dot(DType weightType, ReadOnlySpan<byte> wRow, ReadOnlySpan<byte> qx, int cols, QuantKernelPath path)
    {
        CheckCols(weightType, cols);
        if (wRow.Length < weightType.ByteCount(cols))
            throw new ArgumentException($"weight row of {wRow.Length} bytes is too small for {cols} {weightType} elements", nameof(wRow));
        if (qx.Length < ActivationType(weightType).ByteCount(cols))
            throw new ArgumentException($"activation row of {qx.Length} bytes is too small for {cols} elements", nameof(qx));
        fixed (byte* w = wRow)
        fixed (byte* y = qx)
            return Kernel(weightType, path)(w, y, cols / weightType.BlockSize());
    }

    /// <summary>
    /// y[r] = row r of W · qx for r in [rowStart, rowEnd). W starts at <paramref name="w"/> with <paramref name="rowBytes"/>
    /// bytes per row; <paramref name="y"/> is the whole output vector (indexed by absolute row).
    /// </summary>
    public static void DotRows(DType weightType, byte* w, long rowBytes, int rowStart, int rowEnd, byte* qx, int cols, float* y) =>
        DotRows(weightType, w, rowBytes, rowStart, rowEnd, qx, cols, y, BestPath);

    internal static void DotRows(DType weightType, byte* w, long rowBytes, int rowStart, int rowEnd, byte* qx, int cols, float* y, QuantKernelPath path)
    {
        CheckCols(weightType, cols);
        if (rowBytes < weightType.ByteCount(cols)) throw new ArgumentException($"rowBytes {rowBytes} is too small for {cols} {weightType} elements");
        int nb = cols / weightType.BlockSize();
        if (path == QuantKernelPath.Avx2 && MultiRow.TryDotRows(weightType, w, rowBytes, rowStart, rowEnd, qx, nb, y)) return;
        var k = Kernel(weightType, path);
        for (int r = rowStart; r < rowEnd; r++) y[r] = k(w + r * rowBytes, qx, nb);
    }

    private static void CheckCols(DType weightType, int cols)
    {
        if (!Supports(weightType)) throw new NotSupportedException($"no quantized dot product for weight type {weightType}");
        int bs = weightType.BlockSize();
        if (cols <= 0 || cols % bs != 0) throw new ArgumentException($"{cols} columns is not a positive multiple of the {weightType} block size {bs}");
    }

    private static delegate*<byte*, byte*, int, float> Kernel(DType t, QuantKernelPath path) => path switch
    {
        QuantKernelPath.Avx2 => t switch
        {
            DType.Q4_0 => &Avx2Legacy.Q4_0,
            DType.Q4_1 => &Avx2Legacy.Q4_1,
            DType.Q5_0 => &Avx2Legacy.Q5_0,
            DType.Q5_1 => &Avx2Legacy.Q5_1,
            DType.Q8_0 => &Avx2Legacy.Q8_0,
            DType.Q2_K => &Avx2KQuants.Q2_K,
            DType.Q3_K => &Avx2KQuants.Q3_K,
            DType.Q4_K => &Avx2KQuants.Q4_K,
            DType.Q5_K => &Avx2KQuants.Q5_K,
            DType.Q6_K => &Avx2KQuants.Q6_K,
            _ => throw new NotSupportedException(t.ToString()),
        },
        _ => t switch
        {
            DType.Q4_0 => &ScalarDot.Q4_0,
            DType.Q4_1 => &ScalarDot.Q4_1,
            DType.Q5_0 => &ScalarDot.Q5_0,
            DType.Q5_1 => &ScalarDot.Q5_1,
            DType.Q8_0 => &ScalarDot.Q8_0,
            DType.Q2_K => &ScalarDot.Q2_K,
            DType.Q3_K => &ScalarDot.Q3_K,
            DType.Q4_K => &ScalarDot.Q4_K,
            DType.Q5_K => &ScalarDot.Q5_K,
            DType.Q6_K => &ScalarDot.Q6_K,
            _ => throw new NotSupportedException(t.ToString()),
        },
    };
}

/// <summary>float16 → float32 lookup table (the kernels read block scales through it).</summary>
internal static unsafe class Fp16
{
    private static readonly float[] Table = Build();

    private static float[] Build()
    {
        var t = GC.AllocateUninitializedArray<float>(65536, pinned: true);
        for (int i = 0; i < 65536; i++) t[i] = Dequant.HalfToFloat((ushort)i);
        return t;
    }

    /// <summary>The float value of the little-endian binary16 at p.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Read(byte* p) => Unsafe.Add(ref System.Runtime.InteropServices.MemoryMarshal.GetArrayDataReference(Table), *(ushort*)p);
}
