// Owns: helpers every GPU kernel shares — the lane group (a warp of 32 on CUDA, or 1 lane when a launch uses groups
// of one thread, which is how gpu-sim runs whole models fast on ILGPU's CPU accelerator), lane reductions, and the
// bit-exact F16/BF16 conversions the kernels use to read weights and F16 KV rows.
// Invariants: a lane group is Lanes() consecutive threads of one ILGPU group; every lane of a group reaches the same
// reductions (early returns are uniform per group); Lanes() is 32 or 1, never in between.
// Source: warp-per-row layout as in llama.cpp ggml-cuda mmv; IEEE 754 half/bfloat16 bit layouts.
using ILGPU;

namespace Engine.Gpu.Kernels;

/// <summary>Device helpers used inside kernels.</summary>
public static class GpuMath
{
    /// <summary>Lanes cooperating on one unit of work: the warp (32) when groups are ≥ 32 threads, else 1.</summary>
    public static int Lanes() => Group.DimX >= 32 ? 32 : 1;

    /// <summary>This thread's lane inside its lane group.</summary>
    public static int Lane(int lanes) => Group.IdxX % lanes;

    /// <summary>Index of this thread's lane group over the whole grid.</summary>
    public static int Unit(int lanes) => Grid.IdxX * (Group.DimX / lanes) + Group.IdxX / lanes;

    /// <summary>Sum over the lane group (butterfly shuffles; none when lanes = 1). Every lane gets the total.</summary>
    public static float LaneSum(float v, int lanes)
    {
        for (int o = lanes / 2; o > 0; o >>= 1) v += Warp.ShuffleXor(v, o);
        return v;
    }

    /// <summary>Max over the lane group. Every lane gets the result.</summary>
    public static float LaneMax(float v, int lanes)
    {
        for (int o = lanes / 2; o > 0; o >>= 1)
        {
            float u = Warp.ShuffleXor(v, o);
            v = u > v ? u : v;
        }
        return v;
    }

    /// <summary>IEEE half bits → float (subnormals, inf, NaN exact).</summary>
    public static float HalfToFloat(ushort h)
    {
        uint sign = (uint)(h & 0x8000) << 16;
        int exp = (h >> 10) & 0x1F;
        uint mant = (uint)(h & 0x3FF);
        if (exp == 0)
        {
            // zero or subnormal: mant · 2^-24
            float f = mant * 5.9604644775390625e-8f;
            return sign != 0 ? -f : f;
        }
        if (exp == 31) return Interop.IntAsFloat(sign | 0x7F800000u | (mant << 13));
        return Interop.IntAsFloat(sign | (uint)(exp - 15 + 127) << 23 | (mant << 13));
    }

    /// <summary>float → IEEE half bits, round to nearest even (overflow → inf).</summary>
    public static ushort FloatToHalf(float f)
    {
        uint x = Interop.FloatAsInt(f);
        uint sign = (x >> 16) & 0x8000;
        int exp = (int)((x >> 23) & 0xFF);
        uint mant = x & 0x7FFFFF;
        if (exp == 255) return (ushort)(sign | 0x7C00 | (mant != 0 ? 0x200u : 0u));
        int e = exp - 127 + 15;
        if (e >= 31) return (ushort)(sign | 0x7C00);
        if (e <= 0)
        {
            if (e < -10) return (ushort)sign;
            mant |= 0x800000;
            int shift = 14 - e;
            uint half = mant >> shift;
            uint rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
            if (rem > mid || (rem == mid && (half & 1) != 0)) half++;
            return (ushort)(sign | half);
        }
        uint h = sign | ((uint)e << 10) | (mant >> 13);
        uint r = mant & 0x1FFF;
        if (r > 0x1000 || (r == 0x1000 && (h & 1) != 0)) h++;   // carry into the exponent is the right rounding
        return (ushort)h;
    }

    /// <summary>bfloat16 bits → float.</summary>
    public static float BF16ToFloat(ushort b) => Interop.IntAsFloat((uint)b << 16);
}
