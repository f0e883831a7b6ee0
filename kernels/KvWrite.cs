// Owns: storing a step's K/V rows into the device KV block pool through the block table (the same block ids the
// paged store and scheduler use): position p of a row's sequence lives in block table[rowTable[row] + p / bs],
// slot p % bs. One thread per (row, channel); F32 pools store floats, F16 pools store half bits (round to nearest).
// Invariants: pool layer views are [blocks, bs, kvDim]; the host checked that every position has a block.
// Source: vLLM PagedAttention reshape_and_cache (re-implemented).
using ILGPU;

namespace Engine.Gpu.Kernels;

/// <summary>Where a batch's rows live in the block pool.</summary>
public struct KvLayout
{
    public int BlockSize, KvDim, F16;
}

public static class KvWriteKernel
{
    public static void Run(Index1D i, ArrayView<float> k, ArrayView<float> v, ArrayView<int> positions, ArrayView<int> rowTable,
        ArrayView<int> tables, ArrayView<float> kf, ArrayView<float> vf, ArrayView<ushort> kh, ArrayView<ushort> vh, KvLayout a)
    {
        int row = i / a.KvDim, e = i % a.KvDim;
        int p = positions[row];
        int block = tables[rowTable[row] + p / a.BlockSize];
        long dst = ((long)block * a.BlockSize + p % a.BlockSize) * a.KvDim + e;
        if (a.F16 != 0)
        {
            kh[dst] = GpuMath.FloatToHalf(k[i]);
            vh[dst] = GpuMath.FloatToHalf(v[i]);
        }
        else
        {
            kf[dst] = k[i];
            vf[dst] = v[i];
        }
    }
}
