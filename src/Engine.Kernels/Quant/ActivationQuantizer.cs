// Owns: quantization of float32 activation rows to Q8_0 / Q8_1 / Q8_K for the quantized dot products.
// Invariants: output is bit-identical to the reference Quantize.Row for the same type (the tests rely on the
// reference dequantization of these blocks); no allocation.
// Source: ggml's quantize_row_q8_0 / q8_1 / q8_K reference rules (see Engine.Tensors.Quants.Quantize).
using Engine.Tensors;
using Engine.Tensors.Quants;

namespace Engine.Kernels.Quant;

internal static class ActivationQuantizer
{
    public static void Row(DType activationType, ReadOnlySpan<float> x, Span<byte> dst) => Quantize.Row(activationType, x, dst);
}
