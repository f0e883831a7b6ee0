// Owns: the scalar reference dequantization of every GGUF block type the engine computes with
// (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, and in Dequant.KQuants.cs Q2_K..Q6_K, Q8_K),
// plus the F16/BF16 scalar conversions.
// Invariants: a row is a whole number of blocks; dst.Length is the element count and src must hold at least
// type.ByteCount(dst.Length) bytes; all multi-byte fields are little-endian. This code is the ground truth for
// the optimised kernels: keep it obvious, never optimise it.
// Source: block layouts and formulas from ggml-common.h / ggml-quants.c (llama.cpp), re-implemented here.
using System.Buffers.Binary;

namespace Engine.Tensors.Quants;

/// <summary>Scalar reference dequantization (blocks → float32).</summary>
public static partial class Dequant
{
    /// <summary>IEEE binary16 bits → float32 (exact).</summary>
    public static float HalfToFloat(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    /// <summary>float32 → IEEE binary16 bits, round-to-nearest-even (what ggml's F16C path does).</summary>
    public static ushort FloatToHalf(float value) => BitConverter.HalfToUInt16Bits((Half)value);

    /// <summary>bfloat16 bits → float32 (exact: the bits are the top half of a float32).</summary>
    public static float BF16ToFloat(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>float32 → bfloat16 bits, round-to-nearest-even; NaN stays a (quiet) NaN.</summary>
    public static ushort FloatToBF16(float value)
    {
        uint u = BitConverter.SingleToUInt32Bits(value);
        if ((u & 0x7fffffff) > 0x7f800000) return (ushort)((u >> 16) | 0x40); // NaN: keep sign, force quiet bit
        return (ushort)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
    }

    /// <summary>Reads a little-endian binary16 at <paramref name="offset"/> as float32.</summary>
    internal static float ReadHalf(ReadOnlySpan<byte> s, int offset) => HalfToFloat(BinaryPrimitives.ReadUInt16LittleEndian(s.Slice(offset, 2)));

    /// <summary>
    /// Dequantizes <c>dst.Length</c> elements of <paramref name="type"/> from <paramref name="src"/>.
    /// dst.Length must be a multiple of the block size; src must hold at least the matching byte count.
    /// </summary>
    public static void Row(DType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        if (!IsSupported(type)) throw new NotSupportedException($"dequantization of {type} is not supported");
        long need = type.ByteCount(dst.Length); // throws ArgumentException for a partial block
        if (src.Length < need)
            throw new ArgumentException($"{type}: {dst.Length} elements need {need} bytes, got {src.Length}", nameof(src));
        int bs = type.BlockSize(), bb = type.BytesPerBlock();
        int blocks = dst.Length / bs;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> blk = src.Slice(b * bb, bb);
            Span<float> y = dst.Slice(b * bs, bs);
            switch (type)
            {
                case DType.F32: y[0] = BinaryPrimitives.ReadSingleLittleEndian(blk); break;
                case DType.F16: y[0] = HalfToFloat(BinaryPrimitives.ReadUInt16LittleEndian(blk)); break;
                case DType.BF16: y[0] = BF16ToFloat(BinaryPrimitives.ReadUInt16LittleEndian(blk)); break;
                case DType.Q4_0: BlockQ4_0(blk, y); break;
                case DType.Q4_1: BlockQ4_1(blk, y); break;
                case DType.Q5_0: BlockQ5_0(blk, y); break;
                case DType.Q5_1: BlockQ5_1(blk, y); break;
                case DType.Q8_0: BlockQ8_0(blk, y); break;
                case DType.Q8_1: BlockQ8_1(blk, y); break;
                case DType.Q2_K: BlockQ2_K(blk, y); break;
                case DType.Q3_K: BlockQ3_K(blk, y); break;
                case DType.Q4_K: BlockQ4_K(blk, y); break;
                case DType.Q5_K: BlockQ5_K(blk, y); break;
                case DType.Q6_K: BlockQ6_K(blk, y); break;
                case DType.Q8_K: BlockQ8_K(blk, y); break;
            }
        }
    }

    /// <summary>True for types <see cref="Row"/> can dequantize.</summary>
    public static bool IsSupported(DType type) => type is DType.F32 or DType.F16 or DType.BF16 or DType.Q4_0 or DType.Q4_1
        or DType.Q5_0 or DType.Q5_1 or DType.Q8_0 or DType.Q8_1 or DType.Q2_K or DType.Q3_K or DType.Q4_K or DType.Q5_K
        or DType.Q6_K or DType.Q8_K;

    // block_q4_0 { half d; u8 qs[16] } (18 B): element j = low nibble of qs[j], element j+16 = high nibble; x = (q-8)·d.
    private static void BlockQ4_0(ReadOnlySpan<byte> b, Span<float> y)
    {
        float d = ReadHalf(b, 0);
        for (int j = 0; j < 16; j++)
        {
            byte q = b[2 + j];
            y[j] = ((q & 0xF) - 8) * d;
            y[j + 16] = ((q >> 4) - 8) * d;
        }
    }

    // block_q4_1 { half d; half m; u8 qs[16] } (20 B): x = q·d + m, nibble order as Q4_0.
    private static void BlockQ4_1(ReadOnlySpan<byte> b, Span<float> y)
    {
        float d = ReadHalf(b, 0), m = ReadHalf(b, 2);
        for (int j = 0; j < 16; j++)
        {
            byte q = b[4 + j];
            y[j] = (q & 0xF) * d + m;
            y[j + 16] = (q >> 4) * d + m;
        }
    }

    // block_q5_0 { half d; u8 qh[4]; u8 qs[16] } (22 B): qh is a little-endian u32 whose bit j is the 5th bit of
    // element j (j < 32); low 4 bits as Q4_0; x = (q-16)·d.
    private static void BlockQ5_0(ReadOnlySpan<byte> b, Span<float> y)
    {
        float d = ReadHalf(b, 0);
        uint qh = BinaryPrimitives.ReadUInt32LittleEndian(b.Slice(2, 4));
        for (int j = 0; j < 16; j++)
        {
            byte q = b[6 + j];
            int lo = (q & 0xF) | (int)(((qh >> j) & 1) << 4);
            int hi = (q >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            y[j] = (lo - 16) * d;
            y[j + 16] = (hi - 16) * d;
        }
    }

    // block_q5_1 { half d; half m; u8 qh[4]; u8 qs[16] } (24 B): x = q·d + m, bits as Q5_0.
    private static void BlockQ5_1(ReadOnlySpan<byte> b, Span<float> y)
    {
        float d = ReadHalf(b, 0), m = ReadHalf(b, 2);
        uint qh = BinaryPrimitives.ReadUInt32LittleEndian(b.Slice(4, 4));
        for (int j = 0; j < 16; j++)
        {
            byte q = b[8 + j];
            int lo = (q & 0xF) | (int)(((qh >> j) & 1) << 4);
            int hi = (q >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            y[j] = lo * d + m;
            y[j + 16] = hi * d + m;
        }
    }

    // block_q8_0 { half d; i8 qs[32] } (34 B): x = q·d.
    private static void BlockQ8_0(ReadOnlySpan<byte> b, Span<float> y)
    {
        float d = ReadHalf(b, 0);
        for (int j = 0; j < 32; j++) y[j] = (sbyte)b[2 + j] * d;
    }

    // block_q8_1 { half d; half s (= d·Σq); i8 qs[32] } (36 B): x = q·d; s is only a cached sum.
    private static void BlockQ8_1(ReadOnlySpan<byte> b, Span<float> y)
    {
        float d = ReadHalf(b, 0);
        for (int j = 0; j < 32; j++) y[j] = (sbyte)b[4 + j] * d;
    }
}
