// Owns: turning one stored weight row of any supported DType into float32 (the scalar definition every backend shares).
// Invariants: F32 copies; F16 is IEEE binary16 (System.Half); BF16 is the upper 16 bits of a float32;
// block-quantized types go through Engine.Tensors.Quants.Dequant.Row (the `quants` helper's scalar reference).
namespace Engine.Kernels;

using System.Runtime.InteropServices;
using Engine.Tensors;
using Engine.Tensors.Quants;

public static class RowDecode
{
    /// <summary>Decodes one row (<paramref name="src"/> = its bytes) into <paramref name="dst"/> ([cols] floats).</summary>
    public static void Row(DType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        switch (type)
        {
            case DType.F32:
                MemoryMarshal.Cast<byte, float>(src)[..dst.Length].CopyTo(dst);
                break;
            case DType.F16:
            {
                var h = MemoryMarshal.Cast<byte, Half>(src);
                for (int i = 0; i < dst.Length; i++) dst[i] = (float)h[i];
                break;
            }
            case DType.BF16:
            {
                var u = MemoryMarshal.Cast<byte, ushort>(src);
                for (int i = 0; i < dst.Length; i++) dst[i] = Bf16ToFloat(u[i]);
                break;
            }
            default:
                QuantRow(type, src, dst);
                break;
        }
    }

    public static float Bf16ToFloat(ushort b) => BitConverter.Int32BitsToSingle(b << 16);

    private static void QuantRow(DType type, ReadOnlySpan<byte> src, Span<float> dst) => Dequant.Row(type, src, dst);
}
