// Owns: rotary position embedding in place on the device, "normal" (adjacent pairs 2i, 2i+1: llama) or NEOX
// (pairs i, i + dims/2: qwen2/3), with Llama-3 frequency factors folded into invFreq on the host.
// Invariants: one thread per (row, head, pair i < dims/2); x is [rows, heads, headDim]; invFreq[i] =
// freqScale · base^(-2i/dims) / factor[i] in double (as the CPU backend); the angle and its cos/sin are computed in double (positions up to
// the context length keep full float precision).
// Source: Su et al. 2021 (RoFormer); llama.cpp rope (normal / neox).
using ILGPU;

namespace Engine.Gpu.Kernels;

public static class RopeKernel
{
    public static void Run(Index1D i, ArrayView<float> x, ArrayView<int> positions, ArrayView<double> invFreq, int heads, int headDim, int dims, int neox)
    {
        int half = dims / 2;
        int p = i % half, rh = i / half;           // rh = row · heads + head
        int row = rh / heads;
        double theta = positions[row] * invFreq[p];
        double c = System.Math.Cos(theta), s = System.Math.Sin(theta);
        long b = (long)rh * headDim;
        long ia = b + (neox != 0 ? p : 2 * p), ib = b + (neox != 0 ? p + half : 2 * p + 1);
        double x0 = x[ia], x1 = x[ib];
        x[ia] = (float)(x0 * c - x1 * s);
        x[ib] = (float)(x0 * s + x1 * c);
    }
}
