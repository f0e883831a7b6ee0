// Owns: scalar reference quantization (float32 row → blocks) for the plain types, the 32-element block types
// (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1) and, in Quantize.KQuants.cs, the K-quants and Q8_K.
// Invariants: x.Length is a multiple of the block size; dst holds exactly type.ByteCount(x.Length) bytes (at least);
// output is always a valid block that Dequant.Row reads back. The 32-block and Q8 rules follow ggml's reference
// quantizers (same rounding rules), so activations quantized here match what llama.cpp's CPU path computes.
// Source: quantize_row_*_ref in ggml-quants.c (llama.cpp), re-implemented.
using System.Buffers.Binary;

namespace Engine.Tensors.Quants;

/// <summary>Scalar reference quantization (float32 → blocks).</summary>
public static partial class Quantize
{
    /// <summary>True for types <see cref="Row"/> can produce.</summary>
    public static bool IsSupported(DType type) => Dequant.IsSupported(type);

    /// <summary>Quantizes <c>x.Length</c> elements (a multiple of the block size) into <paramref name="dst"/>.</summary>
    public static void Row(DType type, ReadOnlySpan<float> x, Span<byte> dst)
    {
        if (!IsSupported(type)) throw new NotSupportedException($"quantization to {type} is not supported");
        long need = type.ByteCount(x.Length);
        if (dst.Length < need)
            throw new ArgumentException($"{type}: {x.Length} elements need {need} bytes, got {dst.Length}", nameof(dst));
        int bs = type.BlockSize(), bb = type.BytesPerBlock();
        int blocks = x.Length / bs;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<float> v = x.Slice(b * bs, bs);
            Span<byte> o = dst.Slice(b * bb, bb);
            switch (type)
            {
                case DType.F32: BinaryPrimitives.WriteSingleLittleEndian(o, v[0]); break;
                case DType.F16: BinaryPrimitives.WriteUInt16LittleEndian(o, Dequant.FloatToHalf(v[0])); break;
                case DType.BF16: BinaryPrimitives.WriteUInt16LittleEndian(o, Dequant.FloatToBF16(v[0])); break;
                case DType.Q4_0: BlockQ4_0(v, o); break;
                case DType.Q4_1: BlockQ4_1(v, o); break;
                case DType.Q5_0: BlockQ5_0(v, o); break;
                case DType.Q5_1: BlockQ5_1(v, o); break;
                case DType.Q8_0: BlockQ8_0(v, o); break;
                case DType.Q8_1: BlockQ8_1(v, o); break;
                case DType.Q2_K: BlockQ2_K(v, o); break;
                case DType.Q3_K: BlockQ3_K(v, o); break;
                case DType.Q4_K: BlockQ4_K(v, o); break;
                case DType.Q5_K: BlockQ5_K(v, o); break;
                case DType.Q6_K: BlockQ6_K(v, o); break;
                case DType.Q8_K: BlockQ8_K(v, o); break;
            }
        }
    }

    /// <summary>Quantizes a whole row into a new array.</summary>
    public static byte[] Row(DType type, ReadOnlySpan<float> x)
    {
        var dst = new byte[type.ByteCount(x.Length)];
        Row(type, x, dst);
        return dst;
    }

    internal static void WriteHalf(Span<byte> o, int offset, float v) => BinaryPrimitives.WriteUInt16LittleEndian(o.Slice(offset, 2), Dequant.FloatToHalf(v));

    /// <summary>Round half away from zero (C roundf).</summary>
    internal static int RoundAway(float v) => (int)MathF.Round(v, MidpointRounding.AwayFromZero);

    /// <summary>Round half to even (ggml nearest_int).</summary>
    internal static int Nearest(float v) => (int)MathF.Round(v, MidpointRounding.ToEven);

    /// <summary>The element with the largest magnitude, keeping its sign (first one on ties).</summary>
    internal static float SignedAbsMax(ReadOnlySpan<float> v)
    {
        float amax = 0, max = 0;
        foreach (float f in v)
            if (MathF.Abs(f) > amax) { amax = MathF.Abs(f); max = f; }
        return max;
    }

    private static void MinMax(ReadOnlySpan<float> v, out float min, out float max)
    {
        min = float.MaxValue; max = float.MinValue;
        foreach (float f in v) { if (f < min) min = f; if (f > max) max = f; }
    }

    // Q4_0: d = signed-absmax / −8 so the extreme maps to q = 0 (value −8·d); q = min(15, trunc(x/d + 8.5)).
    private static void BlockQ4_0(ReadOnlySpan<float> v, Span<byte> o)
    {
        float max = SignedAbsMax(v);
        float d = max / -8, id = d != 0 ? 1 / d : 0;
        WriteHalf(o, 0, d);
        for (int j = 0; j < 16; j++)
        {
            int q0 = Math.Min(15, (int)(v[j] * id + 8.5f));
            int q1 = Math.Min(15, (int)(v[j + 16] * id + 8.5f));
            o[2 + j] = (byte)(q0 | (q1 << 4));
        }
    }

    // Q4_1: d = (max − min)/15, m = min; q = min(15, trunc((x − min)/d + 0.5)).
    private static void BlockQ4_1(ReadOnlySpan<float> v, Span<byte> o)
    {
        MinMax(v, out float min, out float max);
        float d = (max - min) / 15, id = d != 0 ? 1 / d : 0;
        WriteHalf(o, 0, d); WriteHalf(o, 2, min);
        for (int j = 0; j < 16; j++)
        {
            int q0 = Math.Min(15, (int)((v[j] - min) * id + 0.5f));
            int q1 = Math.Min(15, (int)((v[j + 16] - min) * id + 0.5f));
            o[4 + j] = (byte)(q0 | (q1 << 4));
        }
    }

    // Q5_0: d = signed-absmax / −16; q = min(31, trunc(x/d + 16.5)); bit 4 of element j goes to bit j of qh.
    private static void BlockQ5_0(ReadOnlySpan<float> v, Span<byte> o)
    {
        float max = SignedAbsMax(v);
        float d = max / -16, id = d != 0 ? 1 / d : 0;
        WriteHalf(o, 0, d);
        uint qh = 0;
        for (int j = 0; j < 16; j++)
        {
            int q0 = Math.Min(31, (int)(v[j] * id + 16.5f));
            int q1 = Math.Min(31, (int)(v[j + 16] * id + 16.5f));
            o[6 + j] = (byte)((q0 & 0xF) | ((q1 & 0xF) << 4));
            qh |= (uint)((q0 >> 4) & 1) << j;
            qh |= (uint)((q1 >> 4) & 1) << (j + 16);
        }
        BinaryPrimitives.WriteUInt32LittleEndian(o.Slice(2, 4), qh);
    }

    // Q5_1: d = (max − min)/31, m = min; q = min(31, trunc((x − min)/d + 0.5)).
    private static void BlockQ5_1(ReadOnlySpan<float> v, Span<byte> o)
    {
        MinMax(v, out float min, out float max);
        float d = (max - min) / 31, id = d != 0 ? 1 / d : 0;
        WriteHalf(o, 0, d); WriteHalf(o, 2, min);
        uint qh = 0;
        for (int j = 0; j < 16; j++)
        {
            int q0 = Math.Min(31, (int)((v[j] - min) * id + 0.5f));
            int q1 = Math.Min(31, (int)((v[j + 16] - min) * id + 0.5f));
            o[8 + j] = (byte)((q0 & 0xF) | ((q1 & 0xF) << 4));
            qh |= (uint)((q0 >> 4) & 1) << j;
            qh |= (uint)((q1 >> 4) & 1) << (j + 16);
        }
        BinaryPrimitives.WriteUInt32LittleEndian(o.Slice(4, 4), qh);
    }

    // Q8_0: d = absmax/127, q = roundf(x/d).
    private static void BlockQ8_0(ReadOnlySpan<float> v, Span<byte> o)
    {
        float amax = 0;
        foreach (float f in v) amax = MathF.Max(amax, MathF.Abs(f));
        float d = amax / 127, id = d != 0 ? 1 / d : 0;
        WriteHalf(o, 0, d);
        for (int j = 0; j < 32; j++) o[2 + j] = (byte)(sbyte)RoundAway(v[j] * id);
    }

    // Q8_1: as Q8_0 plus s = d·Σq (float16), the cached block sum used by the Q4_1/Q5_1 dot products.
    private static void BlockQ8_1(ReadOnlySpan<float> v, Span<byte> o)
    {
        float amax = 0;
        foreach (float f in v) amax = MathF.Max(amax, MathF.Abs(f));
        float d = amax / 127, id = d != 0 ? 1 / d : 0;
        int sum = 0;
        for (int j = 0; j < 32; j++)
        {
            int q = RoundAway(v[j] * id);
            o[4 + j] = (byte)(sbyte)q;
            sum += q;
        }
        WriteHalf(o, 0, d); WriteHalf(o, 2, sum * d);
    }
}
