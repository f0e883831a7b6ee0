// Owns: AVX-VNNI GEMV kernels that dot FOUR weight rows with ONE activation row per pass (the decode path):
// the activation block and its Σy are loaded once and shared by the four rows. Type: Q4_0 (× Q8_0). (A Q8_0 variant,
// Σ(x+128)·y − 128·Σy, measured ~25 % slower than the single-row sign-trick kernel here, so Q8_0 keeps that one.)
// Invariants: unsigned form — Σ(q−8)·y = Σq·y − 8·Σy, with every integer sum exact (vpdpbusd does not saturate),
// so per block the results equal the single-row kernels'; float scaling per block as in Avx2Legacy.
// Only used when AvxVnni.IsSupported.
// Source: the unsigned-offset formulation of ggml's VNNI vec_dot; the 4-row tiling is ours.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Engine.Kernels.Quant;

internal static unsafe class Avx2Rows4
{
    /// <summary>The 4-row kernel for a weight type, or null.</summary>
    public static delegate*<byte*, long, byte*, int, float*, void> For(Engine.Tensors.DType t) => t switch
    {
        Engine.Tensors.DType.Q4_0 => &Q4_0,
        _ => null,
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Dp(Vector256<byte> u, Vector256<sbyte> s) => AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, u, s);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Acc(Vector256<float> acc, float scale, Vector256<int> isum) =>
        Fma.MultiplyAdd(Vector256.Create(scale), Avx.ConvertToVector256Single(isum), acc);

    // o[i] = row i · y for i < 4; row i starts at w + i·rb.
    public static void Q4_0(byte* w, long rb, byte* y, int nb, float* o)
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector256<byte> ones = Vector256.Create((byte)1);
        byte* w0 = w, w1 = w + rb, w2 = w + 2 * rb, w3 = w + 3 * rb;
        for (int b = 0; b < nb; b++, y += 34)
        {
            Vector256<sbyte> qy = Vector256.Load((sbyte*)(y + 2));
            Vector256<int> sy8 = Vector256.ShiftLeft(Dp(ones, qy), 3); // 8·Σy per lane group
            float dy = Fp16.Read(y);
            long ob = 18L * b;
            a0 = Acc(a0, dy * Fp16.Read(w0 + ob), Dp(Avx2Legacy.Nibbles(w0 + ob + 2), qy) - sy8);
            a1 = Acc(a1, dy * Fp16.Read(w1 + ob), Dp(Avx2Legacy.Nibbles(w1 + ob + 2), qy) - sy8);
            a2 = Acc(a2, dy * Fp16.Read(w2 + ob), Dp(Avx2Legacy.Nibbles(w2 + ob + 2), qy) - sy8);
            a3 = Acc(a3, dy * Fp16.Read(w3 + ob), Dp(Avx2Legacy.Nibbles(w3 + ob + 2), qy) - sy8);
        }
        o[0] = Vector256.Sum(a0); o[1] = Vector256.Sum(a1); o[2] = Vector256.Sum(a2); o[3] = Vector256.Sum(a3);
    }
}
