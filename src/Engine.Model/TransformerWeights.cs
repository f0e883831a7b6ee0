// Owns: the weight set of a Llama-family decoder and the shared loading helpers the per-architecture files use.
// Invariants: matrices stay zero-copy TensorViews into the mapped file (GGUF ne = [in, out]); small 1-D tensors
// (norm weights, biases, RoPE frequency factors) are converted to float[] once at load. Every shape is checked
// against the ModelConfig at load, so a forward pass never meets a mismatched tensor.
using Engine.Formats;
using Engine.Tensors;

namespace Engine.Model;

/// <summary>Weights of one decoder block. Optional parts are null when the architecture has none.</summary>
public sealed record LayerWeights(
    float[] AttentionNorm,          // [dim]
    TensorView Query,               // ne [dim, headCount·headDim]
    TensorView Key,                 // ne [dim, kvHeadCount·headDim]
    TensorView Value,               // ne [dim, kvHeadCount·headDim]
    TensorView Output,              // ne [headCount·headDim, dim]
    float[]? QueryBias,             // [headCount·headDim] (qwen2)
    float[]? KeyBias,               // [kvHeadCount·headDim] (qwen2)
    float[]? ValueBias,             // [kvHeadCount·headDim] (qwen2)
    float[]? QueryNorm,             // [headDim] per-head RMSNorm (qwen3)
    float[]? KeyNorm,               // [headDim] per-head RMSNorm (qwen3)
    float[] FeedForwardNorm,        // [dim]
    TensorView Gate,                // ne [dim, ff]
    TensorView Up,                  // ne [dim, ff]
    TensorView Down);               // ne [ff, dim]

/// <summary>All weights of a decoder. <see cref="Output"/> is token_embd when the file has no output.weight (tied).</summary>
public sealed record TransformerWeights(
    TensorView TokenEmbedding,      // ne [dim, vocab]
    LayerWeights[] Layers,
    float[] OutputNorm,             // [dim]
    TensorView Output,              // ne [dim, vocab]
    float[]? RopeFreqFactors);      // [ropeDims / 2] (Llama 3 rope_freqs)

/// <summary>Loading helpers shared by the architecture files.</summary>
internal static class WeightLoader
{
    /// <summary>Tensor <paramref name="name"/> with exactly the GGUF shape <paramref name="shape"/> (ne order).</summary>
    public static TensorView Matrix(ModelFile file, string name, params long[] shape)
    {
        var t = file.GetTensor(name);
        CheckShape(file, t, shape);
        if (!t.Type.IsSupportedWeight())
            throw new ModelFormatException(file.Path, -1, $"tensor '{name}' has type {t.Type}, which the kernels cannot compute with");
        return t;
    }

    /// <summary>A 1-D tensor of <paramref name="length"/> elements as float[] (F32, F16 or BF16).</summary>
    public static float[] Vector(ModelFile file, string name, int length)
    {
        var t = file.GetTensor(name);
        if (t.ElementCount != length)
            throw new ModelFormatException(file.Path, -1, $"tensor '{name}' has {t.ElementCount} elements, expected {length}");
        return ToFloats(file, t);
    }

    public static float[]? OptionalVector(ModelFile file, string name, int length) =>
        file.TryGetTensor(name, out _) ? Vector(file, name, length) : null;

    public static unsafe float[] ToFloats(ModelFile file, TensorView t)
    {
        int n = checked((int)t.ElementCount);
        var dst = new float[n];
        switch (t.Type)
        {
            case DType.F32:
                new ReadOnlySpan<float>((void*)t.Data, n).CopyTo(dst);
                break;
            case DType.F16:
                var h = new ReadOnlySpan<Half>((void*)t.Data, n);
                for (int i = 0; i < n; i++) dst[i] = (float)h[i];
                break;
            case DType.BF16:
                var b = new ReadOnlySpan<ushort>((void*)t.Data, n);
                for (int i = 0; i < n; i++) dst[i] = BitConverter.Int32BitsToSingle(b[i] << 16);
                break;
            default:
                throw new ModelFormatException(file.Path, -1, $"tensor '{t.Name}' is {t.Type}; 1-D tensors must be F32, F16 or BF16");
        }
        return dst;
    }

    private static void CheckShape(ModelFile file, TensorView t, long[] shape)
    {
        // Trailing 1-dimensions are insignificant in GGUF.
        int rank = t.Shape.Length;
        while (rank > shape.Length && t.Shape[rank - 1] == 1) rank--;
        bool ok = rank == shape.Length;
        for (int i = 0; ok && i < shape.Length; i++) ok = t.Shape[i] == shape[i];
        if (!ok)
            throw new ModelFormatException(file.Path, -1,
                $"tensor '{t.Name}' has shape [{string.Join(", ", t.Shape)}], expected [{string.Join(", ", shape)}]");
    }

    /// <summary>Reads the standard Llama-family tensor set; <paramref name="biases"/> / <paramref name="qkNorm"/> select the optional parts.</summary>
    public static TransformerWeights LoadDecoder(ModelFile file, ModelConfig c, bool biases, bool qkNorm)
    {
        long dim = c.EmbeddingLength, ff = c.FeedForwardLength, vocab = c.VocabSize;
        var layers = new LayerWeights[c.LayerCount];
        for (int i = 0; i < layers.Length; i++)
        {
            string p = $"blk.{i}.";
            layers[i] = new LayerWeights(
                Vector(file, p + "attn_norm.weight", c.EmbeddingLength),
                Matrix(file, p + "attn_q.weight", dim, c.QueryDim),
                Matrix(file, p + "attn_k.weight", dim, c.KvDim),
                Matrix(file, p + "attn_v.weight", dim, c.ValueDim),
                Matrix(file, p + "attn_output.weight", c.QueryDim, dim),
                biases ? Vector(file, p + "attn_q.bias", c.QueryDim) : null,
                biases ? Vector(file, p + "attn_k.bias", c.KvDim) : null,
                biases ? Vector(file, p + "attn_v.bias", c.ValueDim) : null,
                qkNorm ? Vector(file, p + "attn_q_norm.weight", c.HeadDim) : null,
                qkNorm ? Vector(file, p + "attn_k_norm.weight", c.HeadDim) : null,
                Vector(file, p + "ffn_norm.weight", c.EmbeddingLength),
                Matrix(file, p + "ffn_gate.weight", dim, ff),
                Matrix(file, p + "ffn_up.weight", dim, ff),
                Matrix(file, p + "ffn_down.weight", ff, dim));
        }
        var embd = Matrix(file, "token_embd.weight", dim, vocab);
        var output = file.TryGetTensor("output.weight", out _) ? Matrix(file, "output.weight", dim, vocab) : embd;
        return new TransformerWeights(embd, layers, Vector(file, "output_norm.weight", c.EmbeddingLength), output,
            OptionalVector(file, "rope_freqs.weight", c.RopeDimensions / 2));
    }
}
