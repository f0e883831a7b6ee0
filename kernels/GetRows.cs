// Owns: embedding lookup on the device — dst[i, :] = dequantized row ids[i] of the table, any weight type.
// Invariants: one thread per output element; ids were validated on the host (0 ≤ id < table rows).
// Source: ggml get_rows.
using ILGPU;

namespace Engine.Gpu.Kernels;

public static class GetRowsKernel
{
    public static void Run(Index1D i, ArrayView<byte> table, ArrayView<int> ids, ArrayView<float> dst, int type, int dim, long rowBytes)
    {
        int r = i / dim, c = i % dim;
        dst[i] = DeviceDequant.At(table, ids[r] * rowBytes, c, type);
    }
}
