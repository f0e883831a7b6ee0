// Owns: y[t] = x[t] / sqrt(mean(x[t]²) + eps) · weight on the device, one lane group per row of length dim.
// Invariants: x and y may alias (each lane reads its elements before the group writes them back, after the sum);
// rows = x.Length / dim. Also used per head (dim = headDim) for Qwen3's q/k norms.
// Source: Zhang & Sennrich 2019 (RMSNorm); llama.cpp rms_norm.
using ILGPU;

namespace Engine.Gpu.Kernels;

public static class RmsNormKernel
{
    public static void Run(ArrayView<float> x, ArrayView<float> weight, ArrayView<float> y, int dim, int rows, float eps)
    {
        int lanes = GpuMath.Lanes(), lane = GpuMath.Lane(lanes), row = GpuMath.Unit(lanes);
        if (row >= rows) return;
        long b = (long)row * dim;
        float ss = 0;
        for (int c = lane; c < dim; c += lanes) { float v = x[b + c]; ss += v * v; }
        ss = GpuMath.LaneSum(ss, lanes);
        float scale = 1f / (float)System.Math.Sqrt(ss / dim + eps);
        for (int c = lane; c < dim; c += lanes) y[b + c] = x[b + c] * scale * weight[c];
    }
}
