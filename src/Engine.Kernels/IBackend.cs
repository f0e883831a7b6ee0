// Owns: the op contract every compute backend implements (reference, CPU SIMD, later CUDA).
// Invariants: ops never allocate per call on the hot path; parameter order is sources, arguments, destination;
// all activations are float32, row-major; weights are TensorViews of any supported DType (the backend dispatches).
// Source: the op set mirrors llama.cpp's ggml ops used by Llama-family forwards.
using Engine.Tensors;

namespace Engine.Kernels;

/// <summary>RoPE layout: adjacent pairs (2i, 2i+1) = llama "normal"; half split (i, i + d/2) = NEOX (qwen2/3).</summary>
public enum RopeStyle { Normal, Neox }

/// <summary>Rotary embedding parameters. <see cref="FreqFactors"/> (Llama-3 rope_freqs) divides each θ_i when present.</summary>
public sealed record RopeParams(RopeStyle Style, int Dimensions, float FreqBase, float FreqScale = 1f, float[]? FreqFactors = null);

/// <summary>Element type of a KV page (the page's tier). F32 is the default so positional KvPage construction is unchanged.</summary>
public enum KvElementType : byte
{
    /// <summary>float32 rows.</summary>
    F32 = 0,
    /// <summary>IEEE half rows (ushort bits).</summary>
    F16,
    /// <summary>Symmetric int8 (sbyte) rows; one float scale per (token, group of GroupSize channels): x = q · s.</summary>
    Int8,
    /// <summary>KIVI-style asymmetric 4-bit: keys per channel over groups of GroupSize tokens, values per token over groups of
    /// GroupSize channels; x = q · scale + min with q in 0..15; two nibbles per byte, the even channel in the low nibble.</summary>
    Int4,
    /// <summary>Low-bit KIVI (2, 3 or 4 bits, <see cref="KvPage.Bits"/>; Engine.Tensors.Quants.KiviLowBit): bit-packed rows;
    /// the page lies inside one key group, <see cref="KvPage.KScale"/> = half <c>[RowStride, 2]</c> (scale, min) per channel of
    /// that group, <see cref="KvPage.VScale"/> = half <c>[TokenCount, RowStride / GroupSize, 2]</c> per (token, channel group).</summary>
    Kivi,
}

/// <summary>
/// A run of consecutive cached tokens of one sequence. K and V rows are <c>[TokenCount, kvHeadCount * headDim]</c>
/// with row stride <see cref="RowStride"/> elements. Token i of the page sits at absolute position <see cref="StartPosition"/> + i.
/// A contiguous KV store is one page; a paged store passes its block table as a list of pages.
/// Element layouts by <see cref="Type"/> (RowStride counts elements; G = <see cref="GroupSize"/>):
/// <list type="bullet">
/// <item>F32: float K/V rows. F16: ushort (half) rows.</item>
/// <item>Int8: sbyte rows; <see cref="KScale"/>/<see cref="VScale"/> are float <c>[TokenCount, RowStride / G]</c>.</item>
/// <item>Int4: byte rows of RowStride / 2 bytes. <see cref="KScale"/> is float <c>[ceil(TokenCount / G), RowStride, 2]</c>
/// (scale, min) per (token group, channel) — the page must start at a token-group boundary; <see cref="VScale"/> is
/// float <c>[TokenCount, RowStride / G, 2]</c> (scale, min) per (token, channel group).</item>
/// </list>
/// </summary>
public readonly record struct KvPage(nint K, nint V, int TokenCount, int StartPosition, int RowStride)
{
    /// <summary>Element type (tier) of the rows; default F32.</summary>
    public KvElementType Type { get; init; }

    /// <summary>Key quantization parameters (Int8 / Int4 only).</summary>
    public nint KScale { get; init; }

    /// <summary>Value quantization parameters (Int8 / Int4 only).</summary>
    public nint VScale { get; init; }

    /// <summary>Quantization group size (Int8 / Int4 / Kivi only): channels per scale (Int8, Int4 and Kivi values), tokens per key group (Int4).</summary>
    public int GroupSize { get; init; }

    /// <summary>Bits per element of a <see cref="KvElementType.Kivi"/> page (2, 3 or 4).</summary>
    public int Bits { get; init; }
}

/// <summary>Causal attention over KV pages with grouped-query heads.</summary>
public readonly record struct AttentionParams(int HeadCount, int KvHeadCount, int HeadDim, float Scale);

/// <summary>The compute contract. Implementations: <c>ReferenceBackend</c> (scalar, float64 accumulation, never optimised) and <c>CpuBackend</c> (SIMD, multi-threaded).</summary>
public interface IBackend : IDisposable
{
    string Name { get; }

    /// <summary>y[t, r] = Σ_c x[t, c] · W[r, c] for t &lt; n. W is a GGUF matrix ne = [cols, rows] of any supported type.
    /// x: [n, cols], y: [n, rows].</summary>
    void MatMul(ReadOnlySpan<float> x, int n, TensorView w, Span<float> y);

    /// <summary>Called once with a model's weight matrices after loading: the backend may keep its own layout of them
    /// for MatMul (the CPU backend repacks Q4_0/Q8_0 into interleaved 8-row blocks and releases the mapped pages it
    /// copied). MatMul results for a prepared matrix may differ from an unprepared one's by float rounding. Default: nothing.</summary>
    void PrepareWeights(IReadOnlyList<TensorView> matrices) { }

    /// <summary>Frees what <see cref="PrepareWeights"/> made for these matrices (their model is being disposed). Default: nothing.</summary>
    void ReleaseWeights(IReadOnlyList<TensorView> matrices) { }

    /// <summary>dst[i, :] = dequantized row ids[i] of <paramref name="table"/> (ne = [dim, vocab]). dst: [ids.Length, dim].</summary>
    void GetRows(TensorView table, ReadOnlySpan<int> ids, Span<float> dst);

    /// <summary>y[t] = x[t] / sqrt(mean(x[t]²) + eps) · weight, per row of length weight.Length. x, y: [n, dim]; may alias.</summary>
    void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> y);

    /// <summary>Rotates x in place: x is [positions.Length, headCount, headDim]; positions per row.</summary>
    void Rope(Span<float> x, int headCount, int headDim, ReadOnlySpan<int> positions, RopeParams rope);

    /// <summary>In-place softmax over one vector.</summary>
    void Softmax(Span<float> x);

    /// <summary>dst = silu(gate) · up, element-wise. May alias gate.</summary>
    void SiluMul(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> dst);

    /// <summary>dst = a + b, element-wise. May alias.</summary>
    void Add(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> dst);

    /// <summary>
    /// Causal attention for n query rows q: [n, headCount, headDim] at absolute positions qPositions;
    /// each query attends to every cached token whose position ≤ its own. Query head h reads KV head h / (headCount / kvHeadCount).
    /// output: [n, headCount * headDim].
    /// </summary>
    void Attention(ReadOnlySpan<float> q, ReadOnlySpan<int> qPositions, ReadOnlySpan<KvPage> pages, AttentionParams p, Span<float> output);

    /// <summary>
    /// <see cref="Attention(ReadOnlySpan{float}, ReadOnlySpan{int}, ReadOnlySpan{KvPage}, AttentionParams, Span{float})"/> that also
    /// reports attention mass: tokenMass[kvHead, i] += Σ over query rows and the query heads of that KV head of the softmax
    /// weight given to cached token i (i = logical index over the pages in order). tokenMass: [kvHeadCount, Σ TokenCount].
    /// Used by heavy-hitter policies (H2O, SnapKV, ARKV); the plain overload pays nothing for it.
    /// </summary>
    void Attention(ReadOnlySpan<float> q, ReadOnlySpan<int> qPositions, ReadOnlySpan<KvPage> pages, AttentionParams p, Span<float> output,
        Span<float> tokenMass) => throw new NotSupportedException($"backend {Name} does not report attention mass");
}
