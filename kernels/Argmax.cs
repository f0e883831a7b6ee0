// Owns: greedy sampling on the device — the index of the largest logit per row, so only one int per row crosses
// back to the host. One lane group per row; ties go to the lowest index (as the CPU sampler's first-max rule).
using ILGPU;

namespace Engine.Gpu.Kernels;

public static class ArgmaxKernel
{
    public static void Run(ArrayView<float> logits, ArrayView<int> result, int len, int rows)
    {
        int lanes = GpuMath.Lanes(), lane = GpuMath.Lane(lanes), row = GpuMath.Unit(lanes);
        if (row >= rows) return;
        long b = (long)row * len;
        float best = float.NegativeInfinity;
        int idx = int.MaxValue;
        for (int c = lane; c < len; c += lanes)
        {
            float v = logits[b + c];
            if (v > best) { best = v; idx = c; }
        }
        for (int o = lanes / 2; o > 0; o >>= 1)
        {
            float ob = Warp.ShuffleXor(best, o);
            int oi = Warp.ShuffleXor(idx, o);
            if (ob > best || (ob == best && oi < idx)) { best = ob; idx = oi; }
        }
        if (lane == 0) result[row] = idx == int.MaxValue ? 0 : idx;
    }
}
