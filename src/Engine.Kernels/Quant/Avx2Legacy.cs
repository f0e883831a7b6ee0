// Owns: AVX2 (+ AVX-VNNI when present) single-row dot kernels for the 32-element block types:
// Q4_0, Q5_0, Q8_0 (× Q8_0 activations) and Q4_1, Q5_1 (× Q8_1 activations).
// Invariants: per block the 32 products are summed exactly in int32 lanes, converted to float and scaled by the
// block's d_w·d_y with FMA — the same block sums as ScalarDot. Signed×signed products use the sign trick
// (|x| as u8, sign(y, x) as s8) so u8·s8 instructions apply; pairs never saturate int16 because |x| ≤ 128, |y| ≤ 127.
// Source: ggml-cpu x86 vec_dot kernels (the sign trick, nibble unpacking, qh bit expansion), re-implemented.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Engine.Kernels.Quant;

/// <summary>The u8·s8 → int32 (groups of 4) primitive; a struct type argument picks the instruction at JIT time.</summary>
internal interface IDotU8S8
{
    static abstract Vector256<int> Dot(Vector256<byte> u, Vector256<sbyte> s);
}

/// <summary>AVX-VNNI vpdpbusd (exact, no saturation). Only valid when AvxVnni.IsSupported.</summary>
internal struct VnniDot : IDotU8S8
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(Vector256<byte> u, Vector256<sbyte> s) => AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, u, s);
}

/// <summary>AVX2 vpmaddubsw + vpmaddwd (pairs saturate at int16; callers keep u·s pairs below 32767).</summary>
internal struct MaddDot : IDotU8S8
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(Vector256<byte> u, Vector256<sbyte> s) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, s), Vector256.Create((short)1));
}

internal static unsafe class Avx2Legacy
{
    /// <summary>Signed·signed dot of 32 int8 pairs → 8 int32 lanes (sign trick: |x| as u8, sign(y, x) as s8).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> DotS8S8<TDot>(Vector256<sbyte> x, Vector256<sbyte> y) where TDot : struct, IDotU8S8 =>
        TDot.Dot(Avx2.Abs(x), Avx2.Sign(y, x));

    /// <summary>16 packed bytes → 32 nibbles: elements 0..15 = low nibbles, 16..31 = high nibbles.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Nibbles(byte* qs)
    {
        Vector128<byte> q = Vector128.Load(qs);
        Vector128<byte> hi = Vector128.ShiftRightLogical(q.AsUInt16(), 4).AsByte();
        return Vector256.Create(q, hi) & Vector256.Create((byte)0x0F);
    }

    /// <summary>32 bits → 32 bytes, byte i = <paramref name="value"/> where bit i is set, else 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> BitsToBytes(uint bits, byte value)
    {
        Vector256<byte> v = Vector256.Create(bits).AsByte();
        Vector256<byte> idx = Vector256.Create(
            (byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
        Vector256<byte> spread = Avx2.Shuffle(v, idx);
        Vector256<byte> mask = Vector256.Create(0x8040201008040201UL).AsByte();
        return Avx2.CompareEqual(spread & mask, mask) & Vector256.Create(value);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> ToFloat(Vector256<int> v) => Avx.ConvertToVector256Single(v);

    public static float Q4_0<TDot>(byte* w, byte* y, int nb) where TDot : struct, IDotU8S8
    {
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
        Vector256<sbyte> eight = Vector256.Create((sbyte)8);
        int b = 0;
        for (; b + 1 < nb; b += 2, w += 36, y += 68)
        {
            Vector256<sbyte> x0 = Avx2.Subtract(Nibbles(w + 2).AsSByte(), eight);
            Vector256<sbyte> x1 = Avx2.Subtract(Nibbles(w + 20).AsSByte(), eight);
            Vector256<int> p0 = DotS8S8<TDot>(x0, Vector256.Load((sbyte*)(y + 2)));
            Vector256<int> p1 = DotS8S8<TDot>(x1, Vector256.Load((sbyte*)(y + 36)));
            acc0 = Fma.MultiplyAdd(Vector256.Create(Fp16.Read(w) * Fp16.Read(y)), ToFloat(p0), acc0);
            acc1 = Fma.MultiplyAdd(Vector256.Create(Fp16.Read(w + 18) * Fp16.Read(y + 34)), ToFloat(p1), acc1);
        }
        for (; b < nb; b++, w += 18, y += 34)
        {
            Vector256<sbyte> x0 = Avx2.Subtract(Nibbles(w + 2).AsSByte(), eight);
            Vector256<int> p0 = DotS8S8<TDot>(x0, Vector256.Load((sbyte*)(y + 2)));
            acc0 = Fma.MultiplyAdd(Vector256.Create(Fp16.Read(w) * Fp16.Read(y)), ToFloat(p0), acc0);
        }
        return Vector256.Sum(acc0 + acc1);
    }

    public static float Q8_0<TDot>(byte* w, byte* y, int nb) where TDot : struct, IDotU8S8
    {
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
        int b = 0;
        for (; b + 1 < nb; b += 2, w += 68, y += 68)
        {
            Vector256<int> p0 = DotS8S8<TDot>(Vector256.Load((sbyte*)(w + 2)), Vector256.Load((sbyte*)(y + 2)));
            Vector256<int> p1 = DotS8S8<TDot>(Vector256.Load((sbyte*)(w + 36)), Vector256.Load((sbyte*)(y + 36)));
            acc0 = Fma.MultiplyAdd(Vector256.Create(Fp16.Read(w) * Fp16.Read(y)), ToFloat(p0), acc0);
            acc1 = Fma.MultiplyAdd(Vector256.Create(Fp16.Read(w + 34) * Fp16.Read(y + 34)), ToFloat(p1), acc1);
        }
        for (; b < nb; b++, w += 34, y += 34)
        {
            Vector256<int> p0 = DotS8S8<TDot>(Vector256.Load((sbyte*)(w + 2)), Vector256.Load((sbyte*)(y + 2)));
            acc0 = Fma.MultiplyAdd(Vector256.Create(Fp16.Read(w) * Fp16.Read(y)), ToFloat(p0), acc0);
        }
        return Vector256.Sum(acc0 + acc1);
    }

    public static float Q5_0<TDot>(byte* w, byte* y, int nb) where TDot : struct, IDotU8S8
    {
        Vector256<float> acc = Vector256<float>.Zero;
        Vector256<sbyte> sixteen = Vector256.Create((sbyte)16);
        for (int b = 0; b < nb; b++, w += 22, y += 34)
        {
            Vector256<byte> q = Nibbles(w + 6) | BitsToBytes(*(uint*)(w + 2), 0x10);
            Vector256<int> p = DotS8S8<TDot>(Avx2.Subtract(q.AsSByte(), sixteen), Vector256.Load((sbyte*)(y + 2)));
            acc = Fma.MultiplyAdd(Vector256.Create(Fp16.Read(w) * Fp16.Read(y)), ToFloat(p), acc);
        }
        return Vector256.Sum(acc);
    }

    // Q4_1/Q5_1 × Q8_1: x is unsigned, so u8·s8 applies directly; the min term uses Σy computed as ones·y.
    public static float Q4_1<TDot>(byte* w, byte* y, int nb) where TDot : struct, IDotU8S8
    {
        Vector256<float> acc = Vector256<float>.Zero, accm = Vector256<float>.Zero;
        Vector256<byte> ones = Vector256.Create((byte)1);
        for (int b = 0; b < nb; b++, w += 20, y += 36)
        {
            Vector256<sbyte> qy = Vector256.Load((sbyte*)(y + 4));
            Vector256<int> p = TDot.Dot(Nibbles(w + 4), qy);
            Vector256<int> sy = TDot.Dot(ones, qy);
            float dy = Fp16.Read(y);
            acc = Fma.MultiplyAdd(Vector256.Create(Fp16.Read(w) * dy), ToFloat(p), acc);
            accm = Fma.MultiplyAdd(Vector256.Create(Fp16.Read(w + 2) * dy), ToFloat(sy), accm);
        }
        return Vector256.Sum(acc + accm);
    }

    public static float Q5_1<TDot>(byte* w, byte* y, int nb) where TDot : struct, IDotU8S8
    {
        Vector256<float> acc = Vector256<float>.Zero, accm = Vector256<float>.Zero;
        Vector256<byte> ones = Vector256.Create((byte)1);
        for (int b = 0; b < nb; b++, w += 24, y += 36)
        {
            Vector256<sbyte> qy = Vector256.Load((sbyte*)(y + 4));
            Vector256<byte> q = Nibbles(w + 8) | BitsToBytes(*(uint*)(w + 4), 0x10);
            Vector256<int> p = TDot.Dot(q, qy);
            Vector256<int> sy = TDot.Dot(ones, qy);
            float dy = Fp16.Read(y);
            acc = Fma.MultiplyAdd(Vector256.Create(Fp16.Read(w) * dy), ToFloat(p), acc);
            accm = Fma.MultiplyAdd(Vector256.Create(Fp16.Read(w + 2) * dy), ToFloat(sy), accm);
        }
        return Vector256.Sum(acc + accm);
    }
}
