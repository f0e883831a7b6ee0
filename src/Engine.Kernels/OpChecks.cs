// Owns: argument validation shared by every backend, so bad shapes fail with the same clear message everywhere.
// Invariant: every public op validates before touching memory; the checks are O(1) (plus O(n) for positions).
namespace Engine.Kernels;

using Engine.Tensors;

internal static class OpChecks
{
    public static void MatMul(int xLength, int n, in TensorView w, int yLength)
    {
        if (n < 0) throw new ArgumentOutOfRangeException(nameof(n), n, "token count must be >= 0");
        if (w.Shape is null || w.Shape.Length < 1) throw new ArgumentException("weight view has no shape", nameof(w));
        if (!w.Type.IsSupportedWeight())
            throw new NotSupportedException($"MatMul: weight type {w.Type} of '{w.Name}' is not supported");
        long cols = w.RowLength, rows = w.RowCount;
        if (w.ByteLength < w.RowBytes * rows)
            throw new ArgumentException($"weight '{w.Name}' holds {w.ByteLength} bytes, needs {w.RowBytes * rows}", nameof(w));
        if ((long)xLength < n * cols)
            throw new ArgumentException($"MatMul '{w.Name}': x has {xLength} floats, needs n·cols = {n}·{cols}", "x");
        if ((long)yLength < n * rows)
            throw new ArgumentException($"MatMul '{w.Name}': y has {yLength} floats, needs n·rows = {n}·{rows}", "y");
    }

    public static void GetRows(in TensorView table, ReadOnlySpan<int> ids, int dstLength)
    {
        if (!table.Type.IsSupportedWeight())
            throw new NotSupportedException($"GetRows: type {table.Type} of '{table.Name}' is not supported");
        int dim = table.RowLength, rows = table.RowCount;
        if (table.ByteLength < table.RowBytes * rows)
            throw new ArgumentException($"table '{table.Name}' holds {table.ByteLength} bytes, needs {table.RowBytes * rows}", nameof(table));
        if ((long)dstLength < (long)ids.Length * dim)
            throw new ArgumentException($"GetRows '{table.Name}': dst has {dstLength} floats, needs {ids.Length}·{dim}", "dst");
        foreach (int id in ids)
            if ((uint)id >= (uint)rows)
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"row id outside [0, {rows}) of '{table.Name}'");
    }

    public static void RmsNorm(int xLength, int weightLength, int yLength)
    {
        if (weightLength <= 0) throw new ArgumentException("RmsNorm: weight is empty", "weight");
        if (xLength % weightLength != 0)
            throw new ArgumentException($"RmsNorm: x length {xLength} is not a multiple of dim {weightLength}", "x");
        if (yLength < xLength) throw new ArgumentException($"RmsNorm: y has {yLength} floats, needs {xLength}", "y");
    }

    public static void Rope(int xLength, int headCount, int headDim, int positionCount, RopeParams rope)
    {
        ArgumentNullException.ThrowIfNull(rope);
        if (headCount <= 0 || headDim <= 0) throw new ArgumentException($"Rope: bad head shape {headCount}×{headDim}");
        if (rope.Dimensions <= 0 || rope.Dimensions > headDim || (rope.Dimensions & 1) != 0)
            throw new ArgumentException($"Rope: dimensions {rope.Dimensions} must be even and in (0, headDim={headDim}]", nameof(rope));
        if ((long)xLength < (long)positionCount * headCount * headDim)
            throw new ArgumentException($"Rope: x has {xLength} floats, needs {positionCount}·{headCount}·{headDim}", "x");
        if (rope.FreqFactors is { } ff && ff.Length < rope.Dimensions / 2)
            throw new ArgumentException($"Rope: FreqFactors has {ff.Length} entries, needs {rope.Dimensions / 2}", nameof(rope));
    }

    public static void SameLength(string op, int a, int b, int dst)
    {
        if (a != b) throw new ArgumentException($"{op}: inputs differ in length ({a} vs {b})");
        if (dst < a) throw new ArgumentException($"{op}: destination has {dst} floats, needs {a}", "dst");
    }

    public static void AttentionMass(ReadOnlySpan<KvPage> pages, AttentionParams p, int massLength)
    {
        long total = 0;
        foreach (var pg in pages) total += pg.TokenCount;
        if (massLength < total * p.KvHeadCount)
            throw new ArgumentException($"Attention: tokenMass has {massLength} floats, needs kvHeadCount·tokens = {p.KvHeadCount}·{total}", "tokenMass");
    }

    public static void Attention(int qLength, ReadOnlySpan<int> qPositions, ReadOnlySpan<KvPage> pages, AttentionParams p, int outLength)
    {
        if (p.HeadCount <= 0 || p.KvHeadCount <= 0 || p.HeadDim <= 0)
            throw new ArgumentException($"Attention: bad shape heads={p.HeadCount} kvHeads={p.KvHeadCount} headDim={p.HeadDim}");
        if (p.HeadCount % p.KvHeadCount != 0)
            throw new ArgumentException($"Attention: headCount {p.HeadCount} is not a multiple of kvHeadCount {p.KvHeadCount}");
        long rowQ = (long)p.HeadCount * p.HeadDim;
        if (qLength < qPositions.Length * rowQ)
            throw new ArgumentException($"Attention: q has {qLength} floats, needs {qPositions.Length}·{rowQ}", "q");
        if (outLength < qPositions.Length * rowQ)
            throw new ArgumentException($"Attention: output has {outLength} floats, needs {qPositions.Length}·{rowQ}", "output");
        int kvWidth = p.KvHeadCount * p.HeadDim;
        foreach (var page in pages)
        {
            if (page.TokenCount < 0) throw new ArgumentException("Attention: page with negative token count");
            if (page.TokenCount == 0) continue;
            if (page.K == 0 || page.V == 0) throw new ArgumentException("Attention: page with null K/V pointer");
            if (page.RowStride < kvWidth)
                throw new ArgumentException($"Attention: page row stride {page.RowStride} < kvHeadCount·headDim = {kvWidth}");
            switch (page.Type)
            {
                case KvElementType.F32 or KvElementType.F16: break;
                case KvElementType.Int8 or KvElementType.Int4:
                    if (page.KScale == 0 || page.VScale == 0) throw new ArgumentException($"Attention: {page.Type} page without scales");
                    if (page.GroupSize <= 0 || page.RowStride % page.GroupSize != 0)
                        throw new ArgumentException($"Attention: {page.Type} group size {page.GroupSize} must divide the row stride {page.RowStride}");
                    if (page.Type == KvElementType.Int4 && (page.RowStride & 1) != 0)
                        throw new ArgumentException($"Attention: Int4 page row stride {page.RowStride} must be even");
                    break;
                case KvElementType.Kivi:
                    if (page.KScale == 0 || page.VScale == 0) throw new ArgumentException("Attention: Kivi page without params");
                    if (page.Bits is < 2 or > 4) throw new ArgumentException($"Attention: Kivi page with {page.Bits} bits (2, 3 or 4)");
                    if (page.GroupSize <= 0 || page.RowStride % page.GroupSize != 0)
                        throw new ArgumentException($"Attention: Kivi value group {page.GroupSize} must divide the row stride {page.RowStride}");
                    break;
                default: throw new NotSupportedException($"Attention: KV element type {page.Type} is not supported");
            }
        }
    }
}
