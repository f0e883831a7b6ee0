// Owns: the tensor element types Engine understands, with their GGML/GGUF type ids and block layouts.
// Invariant: the numeric values are the GGUF `ggml_type` ids, so a tensor-info type id casts directly.
// Source: ggml.h (type ids) and ggml-common.h (block sizes / bytes per block).
namespace Engine.Tensors;

/// <summary>Tensor element type; values are the GGUF/GGML type ids.</summary>
public enum DType : uint
{
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    BF16 = 30,
}

/// <summary>Block layout facts per <see cref="DType"/>.</summary>
public static class DTypeInfo
{
    /// <summary>Elements per block (1 for plain types).</summary>
    public static int BlockSize(this DType t) => t switch
    {
        DType.F32 or DType.F16 or DType.BF16 or DType.I8 or DType.I16 or DType.I32 or DType.I64 or DType.F64 => 1,
        DType.Q4_0 or DType.Q4_1 or DType.Q5_0 or DType.Q5_1 or DType.Q8_0 or DType.Q8_1 => 32,
        DType.Q2_K or DType.Q3_K or DType.Q4_K or DType.Q5_K or DType.Q6_K or DType.Q8_K => 256,
        _ => throw new NotSupportedException($"unknown tensor type id {(uint)t}"),
    };

    /// <summary>Bytes per block.</summary>
    public static int BytesPerBlock(this DType t) => t switch
    {
        DType.F32 => 4,
        DType.F16 => 2,
        DType.BF16 => 2,
        DType.I8 => 1,
        DType.I16 => 2,
        DType.I32 => 4,
        DType.I64 => 8,
        DType.F64 => 8,
        DType.Q4_0 => 2 + 16,
        DType.Q4_1 => 2 + 2 + 16,
        DType.Q5_0 => 2 + 4 + 16,
        DType.Q5_1 => 2 + 2 + 4 + 16,
        DType.Q8_0 => 2 + 32,
        DType.Q8_1 => 2 + 2 + 32,
        DType.Q2_K => 16 + 64 + 2 + 2,          // scales[16], qs[64], d, dmin
        DType.Q3_K => 32 + 64 + 12 + 2,         // hmask[32], qs[64], scales[12], d
        DType.Q4_K => 2 + 2 + 12 + 128,         // d, dmin, scales[12], qs[128]
        DType.Q5_K => 2 + 2 + 12 + 32 + 128,    // d, dmin, scales[12], qh[32], qs[128]
        DType.Q6_K => 128 + 64 + 16 + 2,        // ql[128], qh[64], scales[16], d
        DType.Q8_K => 4 + 256 + 32,             // d (f32), qs[256], bsums[16] (int16)
        _ => throw new NotSupportedException($"unknown tensor type id {(uint)t}"),
    };

    /// <summary>True for ids this build knows (including ones it can only carry, not compute with).</summary>
    public static bool IsKnown(uint id) => Enum.IsDefined(typeof(DType), id);

    /// <summary>True for the weight types the kernels compute with.</summary>
    public static bool IsSupportedWeight(this DType t) => t is DType.F32 or DType.F16 or DType.BF16 or DType.Q8_0
        or DType.Q4_0 or DType.Q4_1 or DType.Q5_0 or DType.Q5_1 or DType.Q2_K or DType.Q3_K or DType.Q4_K
        or DType.Q5_K or DType.Q6_K;

    /// <summary>Bytes for <paramref name="elements"/> elements; throws if not a whole number of blocks.</summary>
    public static long ByteCount(this DType t, long elements)
    {
        long bs = t.BlockSize();
        if (elements % bs != 0)
            throw new ArgumentException($"{elements} elements is not a multiple of the {t} block size {bs}");
        return checked(elements / bs * t.BytesPerBlock());
    }
}
