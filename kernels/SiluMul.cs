// Owns: dst = silu(gate) · up element-wise on the device (SwiGLU), one thread per element.
// Invariants: dst may alias gate. Source: Shazeer 2020 (GLU variants).
using ILGPU;

namespace Engine.Gpu.Kernels;

public static class SiluMulKernel
{
    public static void Run(Index1D i, ArrayView<float> gate, ArrayView<float> up, ArrayView<float> dst)
    {
        float g = gate[i];
        dst[i] = g / (1f + (float)System.Math.Exp(-g)) * up[i];
    }
}
