// Owns: the scalar reference for the quantized dot products, used only by tests: dequantize the weight row and the
// quantized activation row with the reference Dequant and multiply in float64.
// Invariants: never optimised; independent of the integer kernels (shares only the block layouts via Dequant).
using Engine.Tensors;
using Engine.Tensors.Quants;

namespace Engine.Kernels.Quant;

/// <summary>Reference dot: dequant(w) · dequant(qx) in float64.</summary>
public static class QuantDotReference
{
    public static double Dot(DType weightType, ReadOnlySpan<byte> wRow, ReadOnlySpan<byte> qx, int cols)
    {
        var w = new float[cols];
        var x = new float[cols];
        Dequant.Row(weightType, wRow, w);
        Dequant.Row(QuantDot.ActivationType(weightType), qx, x);
        double s = 0;
        for (int i = 0; i < cols; i++) s += (double)w[i] * x[i];
        return s;
    }

    /// <summary>Σ |w_i · x_i| in float64: the scale against which float rounding of a dot is judged.</summary>
    public static double AbsDot(DType weightType, ReadOnlySpan<byte> wRow, ReadOnlySpan<byte> qx, int cols)
    {
        var w = new float[cols];
        var x = new float[cols];
        Dequant.Row(weightType, wRow, w);
        Dequant.Row(QuantDot.ActivationType(weightType), qx, x);
        double s = 0;
        for (int i = 0; i < cols; i++) s += Math.Abs((double)w[i] * x[i]);
        return s;
    }
}
