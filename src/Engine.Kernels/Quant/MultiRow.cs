// Owns: multi-row GEMV kernels (several weight rows per pass over one quantized activation row).
// Invariants: results equal the single-row kernels' block sums (same per-block float scaling).
namespace Engine.Kernels.Quant;

internal static unsafe class MultiRow
{
    /// <summary>Runs a multi-row kernel when one exists for the type; false means "use the single-row loop".</summary>
    public static bool TryDotRows(Engine.Tensors.DType t, byte* w, long rowBytes, int rowStart, int rowEnd, byte* qx, int nb, float* y) => false;
}
