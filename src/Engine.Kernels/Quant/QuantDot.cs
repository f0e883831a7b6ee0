// Owns: the public entry points of the quantized dot products used by the CPU backend's MatMul for quantized
// weights: activation quantization to the weight type's "vec_dot" type and weight-row · activation-row dots.
// Invariants: activations are quantized as llama.cpp's CPU path does (Q4_0/Q5_0/Q8_0 → Q8_0, Q4_1/Q5_1 → Q8_1,
// K-quants → Q8_K with bsums); integer products are exact and each block's integer sum is scaled in float32, so
// Dot equals dequant(w) · dequant(qx) up to float32 rounding. No allocation on the hot path; cols is a multiple of
// the weight block size. The SIMD paths (AVX2 with or without AVX-VNNI; portable Vector128 for Q4_0/Q8_0/Q4_K/Q6_K)
// and the scalar-integer path compute the same block sums; tests run every path available (see QuantKernelPath).
// Source: the vec_dot scheme of ggml-cpu (llama.cpp); kernels written here.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;
using Engine.Tensors;
using Engine.Tensors.Quants;

[assembly: InternalsVisibleTo("Engine.Kernels.Tests")]

namespace Engine.Kernels.Quant;

/// <summary>Which implementation a quantized dot runs on (tests force each one). Avx2Vnni differs from Avx2 only in the
/// u8·s8 primitive of the 32-element types (vpdpbusd instead of vpmaddubsw + vpmaddwd).</summary>
internal enum QuantKernelPath { Scalar, Vector128, Avx2, Avx2Vnni }

/// <summary>Quantized weight-row · quantized activation-row dot products (llama.cpp-style vec_dot).</summary>
public static unsafe class QuantDot
{
    /// <summary>The best path on this machine.</summary>
    internal static readonly QuantKernelPath BestPath =
        Avx2.IsSupported && Fma.IsSupported ? (AvxVnni.IsSupported ? QuantKernelPath.Avx2Vnni : QuantKernelPath.Avx2)
        : System.Runtime.Intrinsics.Vector128.IsHardwareAccelerated ? QuantKernelPath.Vector128
        : QuantKernelPath.Scalar;

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
        var k = Kernel(weightType, path);
        // One row at a time on purpose: a 4-rows-per-pass Q4_0 kernel was ~15 % faster with L3-resident weights
        // but 2.6× slower with weights streaming from DRAM (four interleaved streams), so it was dropped.
        for (int r = rowStart; r < rowEnd; r++) y[r] = k(w + r * rowBytes, qx, nb);
    }

    /// <summary>
    /// Batched form for several activation rows (prefill): y[t·yStride + r] = row r of W · activation row t, for
    /// r in [rowStart, rowEnd) and t in [0, n). Activation row t starts at qx + t·qxStride (each row quantized with
    /// <see cref="QuantizeActivation"/>). Each weight row is read once per tile of tokens, so weights stream from
    /// memory ⌈n / TokenTile⌉ times instead of n times.
    /// </summary>
    public static void DotRowsBatch(DType weightType, byte* w, long rowBytes, int rowStart, int rowEnd,
        byte* qx, long qxStride, int n, int cols, float* y, long yStride) =>
        DotRowsBatch(weightType, w, rowBytes, rowStart, rowEnd, qx, qxStride, n, cols, y, yStride, BestPath);

    /// <summary>Tokens per tile in <see cref="DotRowsBatch(DType, byte*, long, int, int, byte*, long, int, int, float*, long)"/>
    /// (their activation rows stay in L2 while a weight row is reused).</summary>
    private const int TokenTile = 32;

    internal static void DotRowsBatch(DType weightType, byte* w, long rowBytes, int rowStart, int rowEnd,
        byte* qx, long qxStride, int n, int cols, float* y, long yStride, QuantKernelPath path)
    {
        CheckCols(weightType, cols);
        if (rowBytes < weightType.ByteCount(cols)) throw new ArgumentException($"rowBytes {rowBytes} is too small for {cols} {weightType} elements");
        if (n < 0) throw new ArgumentOutOfRangeException(nameof(n));
        if (n == 1) { DotRows(weightType, w, rowBytes, rowStart, rowEnd, qx, cols, y, path); return; }
        int nb = cols / weightType.BlockSize();
        var k = Kernel(weightType, path);
        var k4 = path is QuantKernelPath.Avx2 or QuantKernelPath.Avx2Vnni ? Avx2Batch4.For(weightType, path == QuantKernelPath.Avx2Vnni) : null;
        if (k4 == null)
        {
            // No multi-activation kernel: block rows so a small tile of weight rows (~16 KiB) stays in L1 while
            // every activation row passes over it (measured best among 4..1024-row tiles here).
            int rowTile = (int)Math.Max(1, 16 * 1024 / rowBytes);
            for (int r0 = rowStart; r0 < rowEnd; r0 += rowTile)
            {
                int r1 = Math.Min(rowEnd, r0 + rowTile);
                for (int t = 0; t < n; t++)
                {
                    byte* xt = qx + t * qxStride;
                    float* yt = y + t * yStride;
                    for (int r = r0; r < r1; r++) yt[r] = k(w + r * rowBytes, xt, nb);
                }
            }
            return;
        }
        float* four = stackalloc float[4];
        for (int t0 = 0; t0 < n; t0 += TokenTile)
        {
            int t1 = Math.Min(n, t0 + TokenTile);
            for (int r = rowStart; r < rowEnd; r++)
            {
                byte* wr = w + r * rowBytes;
                int t = t0;
                for (; t + 4 <= t1; t += 4)
                {
                    k4(wr, qx + t * qxStride, qxStride, nb, four);
                    for (int i = 0; i < 4; i++) y[(t + i) * yStride + r] = four[i];
                }
                for (; t < t1; t++) y[t * yStride + r] = k(wr, qx + t * qxStride, nb);
            }
        }
    }

    private static void CheckCols(DType weightType, int cols)
    {
        if (!Supports(weightType)) throw new NotSupportedException($"no quantized dot product for weight type {weightType}");
        int bs = weightType.BlockSize();
        if (cols <= 0 || cols % bs != 0) throw new ArgumentException($"{cols} columns is not a positive multiple of the {weightType} block size {bs}");
    }

    private static delegate*<byte*, byte*, int, float> Kernel(DType t, QuantKernelPath path) => path switch
    {
        QuantKernelPath.Avx2Vnni when t is DType.Q4_0 or DType.Q4_1 or DType.Q5_0 or DType.Q5_1 or DType.Q8_0 => t switch
        {
            DType.Q4_0 => &Avx2Legacy.Q4_0<VnniDot>,
            DType.Q4_1 => &Avx2Legacy.Q4_1<VnniDot>,
            DType.Q5_0 => &Avx2Legacy.Q5_0<VnniDot>,
            DType.Q5_1 => &Avx2Legacy.Q5_1<VnniDot>,
            _ => &Avx2Legacy.Q8_0<VnniDot>,
        },
        QuantKernelPath.Avx2 or QuantKernelPath.Avx2Vnni => t switch
        {
            DType.Q4_0 => &Avx2Legacy.Q4_0<MaddDot>,
            DType.Q4_1 => &Avx2Legacy.Q4_1<MaddDot>,
            DType.Q5_0 => &Avx2Legacy.Q5_0<MaddDot>,
            DType.Q5_1 => &Avx2Legacy.Q5_1<MaddDot>,
            DType.Q8_0 => &Avx2Legacy.Q8_0<MaddDot>,
            DType.Q2_K => &Avx2KQuants.Q2_K,
            DType.Q3_K => &Avx2KQuants.Q3_K,
            DType.Q4_K => &Avx2KQuants.Q4_K,
            DType.Q5_K => &Avx2KQuants.Q5_K,
            DType.Q6_K => &Avx2KQuants.Q6_K,
            _ => throw new NotSupportedException(t.ToString()),
        },
        QuantKernelPath.Vector128 when t is DType.Q4_0 or DType.Q8_0 or DType.Q4_K or DType.Q6_K => t switch
        {
            DType.Q4_0 => &Vector128Dot.Q4_0,
            DType.Q8_0 => &Vector128Dot.Q8_0,
            DType.Q4_K => &Vector128Dot.Q4_K,
            _ => &Vector128Dot.Q6_K,
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
