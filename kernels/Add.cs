// Owns: dst = a + b element-wise on the device, with b broadcast over rows when shorter (bias add: b has
// bLength elements and is repeated). One thread per element; dst may alias a or b.
using ILGPU;

namespace Engine.Gpu.Kernels;

public static class AddKernel
{
    public static void Run(Index1D i, ArrayView<float> a, ArrayView<float> b, ArrayView<float> dst, int bLength)
    {
        dst[i] = a[i] + b[i % bLength];
    }
}
