// Owns: Q4_K/Q5_K 6-bit scale/min unpacking in 32-bit words for the dot kernels (no ISA requirement).
// Invariants: same bits as Engine.Tensors.Quants.KScales.ScaleMinK4: byte j of sc03/sc47 = scale j / j+4,
// byte j of mn03/mn47 = min j / j+4.
// Source: block_q4_K scale packing (ggml-common.h), re-derived as word operations.
using System.Runtime.CompilerServices;

namespace Engine.Kernels.Quant;

internal static unsafe class KScaleWords
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void UnpackK4(byte* s, out uint sc03, out uint sc47, out uint mn03, out uint mn47)
    {
        uint u0 = *(uint*)s, u1 = *(uint*)(s + 4), u2 = *(uint*)(s + 8);
        sc03 = u0 & 0x3f3f3f3f;                                               // scales 0..3: low 6 bits of bytes 0..3
        mn03 = u1 & 0x3f3f3f3f;                                               // mins 0..3: low 6 bits of bytes 4..7
        sc47 = (u2 & 0x0f0f0f0f) | (((u0 >> 6) & 0x03030303) << 4);           // low nibble of 8..11 + top bits of 0..3
        mn47 = ((u2 >> 4) & 0x0f0f0f0f) | (((u1 >> 6) & 0x03030303) << 4);    // high nibble of 8..11 + top bits of 4..7
    }
}
