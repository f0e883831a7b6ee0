// Owns: y[t, r] = Σ_c x[t, c] · W[r, c] on the device for every weight type, dequantizing W on the fly.
// Layout: one lane group (a warp on CUDA) per (row r, tile of 4 tokens): the group reads each weight element once
// and multiplies it with up to 4 activation rows, so decode (n = 1) is the warp-per-row GEMV and prefill (n > 1)
// reads the weights n/4 times instead of n. Lanes stride the row (coalesced byte/half reads), then a shuffle sum.
// Invariants: x is [n, cols], y is [n, rows] (views already offset); every lane of a group takes the same path.
// Source: llama.cpp ggml-cuda mmv/mmvq warp-per-row layout (re-implemented; no vectorised loads or dp4a yet).
using ILGPU;

namespace Engine.Gpu.Kernels;

/// <summary>Matmul launch arguments.</summary>
public struct MatMulArgs
{
    public int Type, Rows, Cols, N;
    public long RowBytes;
}

public static class MatMulKernel
{
    /// <summary>Tokens sharing one read of a weight row.</summary>
    public const int TokenTile = 4;

    public static void Run(ArrayView<byte> w, ArrayView<float> x, ArrayView<float> y, MatMulArgs a)
    {
        int lanes = GpuMath.Lanes(), lane = GpuMath.Lane(lanes), unit = GpuMath.Unit(lanes);
        int tiles = (a.N + TokenTile - 1) / TokenTile;
        if (unit >= a.Rows * tiles) return;
        int row = unit % a.Rows, t0 = unit / a.Rows * TokenTile;
        int nt = a.N - t0 < TokenTile ? a.N - t0 : TokenTile;
        long rb = row * a.RowBytes;
        long x0 = (long)t0 * a.Cols;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (int c = lane; c < a.Cols; c += lanes)
        {
            float wv = DeviceDequant.At(w, rb, c, a.Type);
            s0 += wv * x[x0 + c];
            if (nt > 1) s1 += wv * x[x0 + a.Cols + c];
            if (nt > 2) s2 += wv * x[x0 + 2L * a.Cols + c];
            if (nt > 3) s3 += wv * x[x0 + 3L * a.Cols + c];
        }
        s0 = GpuMath.LaneSum(s0, lanes);
        s1 = GpuMath.LaneSum(s1, lanes);
        s2 = GpuMath.LaneSum(s2, lanes);
        s3 = GpuMath.LaneSum(s3, lanes);
        if (lane != 0) return;
        long yb = (long)t0 * a.Rows + row;
        y[yb] = s0;
        if (nt > 1) y[yb + a.Rows] = s1;
        if (nt > 2) y[yb + 2L * a.Rows] = s2;
        if (nt > 3) y[yb + 3L * a.Rows] = s3;
    }
}
