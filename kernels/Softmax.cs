// Owns: in-place softmax over rows of length len on the device, one lane group per row (max, exp-sum, scale).
// Invariants: rows = x.Length / len; subtracting the row max keeps exp finite.
using ILGPU;

namespace Engine.Gpu.Kernels;

public static class SoftmaxKernel
{
    public static void Run(ArrayView<float> x, int len, int rows)
    {
        int lanes = GpuMath.Lanes(), lane = GpuMath.Lane(lanes), row = GpuMath.Unit(lanes);
        if (row >= rows) return;
        long b = (long)row * len;
        float m = float.NegativeInfinity;
        for (int c = lane; c < len; c += lanes) { float v = x[b + c]; m = v > m ? v : m; }
        m = GpuMath.LaneMax(m, lanes);
        float s = 0;
        for (int c = lane; c < len; c += lanes) { float e = (float)System.Math.Exp(x[b + c] - m); x[b + c] = e; s += e; }
        s = GpuMath.LaneSum(s, lanes);
        float inv = 1f / s;
        for (int c = lane; c < len; c += lanes) x[b + c] *= inv;
    }
}
