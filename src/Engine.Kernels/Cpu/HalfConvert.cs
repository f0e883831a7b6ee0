// Owns: vectorised F16 (IEEE binary16) and BF16 → float32 conversion for the CPU backend.
// Invariants: exact for every input (normals, subnormals, ±0, ±inf, NaN payload kept) — it equals (float)(Half)bits.
// .NET exposes no VCVTPH2PS intrinsic (checked: Avx512F/Avx2/F16C have no Half→Single conversion in .NET 10), so F16
// uses integer bit moves: t = sign | (h & 0x7FFF) << 13 (sign-extend, shift, mask) read as float × 2^112 re-biases the
// exponent (and turns subnormal halves into the right float); lanes whose result is ≥ 2^16 in magnitude had exponent 31
// (inf/NaN) and take t | 0x7F800000 instead (payload kept).
// BF16 is the upper half of a float32: a 16-bit left shift. Source: the standard half→float bit trick (public domain).
namespace Engine.Kernels;

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

public static unsafe class HalfConvert
{
    private static readonly float Rebias = BitConverter.Int32BitsToSingle(0x77800000);   // 2^112 exactly

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> F16x16(ushort* p)
    {
        // Sign-extend each half to 32 bits and shift by 13: bits 28..31 hold copies of the sign, 13..27 the exponent and
        // mantissa; masking bits 28..30 away leaves sign | em << 13 (3 ops where separate sign/em paths took 5).
        var t = (Avx512F.ConvertToVector512Int32(Vector256.Load((short*)p)) << 13) & Vector512.Create(unchecked((int)0x8FFFFFFF));
        var f = t.AsSingle() * Vector512.Create(Rebias);                // finite halves (subnormals too), sign kept
        var special = Vector512.GreaterThanOrEqual(Vector512.Abs(f), Vector512.Create(65536f));   // exponent 31: inf/NaN
        return Vector512.ConditionalSelect(special.AsInt32(), t | Vector512.Create(0x7F800000), f.AsInt32()).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> F16x8(ushort* p)
    {
        var t = (Vector256.WidenLower(Vector128.Load((short*)p).ToVector256Unsafe()) << 13) & Vector256.Create(unchecked((int)0x8FFFFFFF));
        var f = t.AsSingle() * Vector256.Create(Rebias);
        var special = Vector256.GreaterThanOrEqual(Vector256.Abs(f), Vector256.Create(65536f));
        return Vector256.ConditionalSelect(special.AsInt32(), t | Vector256.Create(0x7F800000), f.AsInt32()).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Bf16x16(ushort* p) => (Avx512F.ConvertToVector512UInt32(Vector256.Load(p)) << 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Bf16x8(ushort* p) => (Vector256.WidenLower(Vector128.Load(p).ToVector256Unsafe()) << 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float F16(ushort h) => (float)BitConverter.UInt16BitsToHalf(h);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Bf16(ushort h) => BitConverter.Int32BitsToSingle(h << 16);

    /// <summary>dst[i] = (float)src[i] for F16 bits.</summary>
    public static void F16ToFloat(SimdWidth isa, ushort* src, float* dst, int n)
    {
        int i = 0;
        if (isa.Use512)
            for (; i <= n - 16; i += 16) F16x16(src + i).Store(dst + i);
        if (isa.Use256)
            for (; i <= n - 8; i += 8) F16x8(src + i).Store(dst + i);
        for (; i < n; i++) dst[i] = F16(src[i]);
    }

    /// <summary>dst[i] = (float)src[i] for BF16 bits.</summary>
    public static void Bf16ToFloat(SimdWidth isa, ushort* src, float* dst, int n)
    {
        int i = 0;
        if (isa.Use512)
            for (; i <= n - 16; i += 16) Bf16x16(src + i).Store(dst + i);
        if (isa.Use256)
            for (; i <= n - 8; i += 8) Bf16x8(src + i).Store(dst + i);
        for (; i < n; i++) dst[i] = Bf16(src[i]);
    }

    /// <summary>Σ x[i]·(float)w[i] for F16 weights (fused convert + FMA; the decode GEMV inner loop).</summary>
    public static float DotF16(SimdWidth isa, ushort* w, float* x, int n)
    {
        int i = 0;
        float sum = 0;
        if (isa.Use512 && n >= 16)
        {
            Vector512<float> s0 = default, s1 = default;
            for (; i <= n - 32; i += 32)
            {
                s0 = Vector512.FusedMultiplyAdd(F16x16(w + i), Vector512.Load(x + i), s0);
                s1 = Vector512.FusedMultiplyAdd(F16x16(w + i + 16), Vector512.Load(x + i + 16), s1);
            }
            for (; i <= n - 16; i += 16) s0 = Vector512.FusedMultiplyAdd(F16x16(w + i), Vector512.Load(x + i), s0);
            sum = Vector512.Sum(s0 + s1);
        }
        if (isa.Use256 && n - i >= 8)
        {
            Vector256<float> s0 = default;
            for (; i <= n - 8; i += 8) s0 = Vector256.FusedMultiplyAdd(F16x8(w + i), Vector256.Load(x + i), s0);
            sum += Vector256.Sum(s0);
        }
        for (; i < n; i++) sum = MathF.FusedMultiplyAdd(F16(w[i]), x[i], sum);
        return sum;
    }

    /// <summary>Σ x[i]·(float)w[i] for BF16 weights.</summary>
    public static float DotBf16(SimdWidth isa, ushort* w, float* x, int n)
    {
        int i = 0;
        float sum = 0;
        if (isa.Use512 && n >= 16)
        {
            Vector512<float> s0 = default, s1 = default;
            for (; i <= n - 32; i += 32)
            {
                s0 = Vector512.FusedMultiplyAdd(Bf16x16(w + i), Vector512.Load(x + i), s0);
                s1 = Vector512.FusedMultiplyAdd(Bf16x16(w + i + 16), Vector512.Load(x + i + 16), s1);
            }
            for (; i <= n - 16; i += 16) s0 = Vector512.FusedMultiplyAdd(Bf16x16(w + i), Vector512.Load(x + i), s0);
            sum = Vector512.Sum(s0 + s1);
        }
        if (isa.Use256 && n - i >= 8)
        {
            Vector256<float> s0 = default;
            for (; i <= n - 8; i += 8) s0 = Vector256.FusedMultiplyAdd(Bf16x8(w + i), Vector256.Load(x + i), s0);
            sum += Vector256.Sum(s0);
        }
        for (; i < n; i++) sum = MathF.FusedMultiplyAdd(Bf16(w[i]), x[i], sum);
        return sum;
    }
}
