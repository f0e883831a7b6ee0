// Owns: a typed, non-owning view of tensor bytes (usually inside a memory-mapped model file).
// Invariant: Data points at ByteLength readable bytes that outlive the view (the owner keeps them mapped).
// Shape is in GGUF order: Shape[0] is the innermost (contiguous) dimension.
namespace Engine.Tensors;

/// <summary>A zero-copy view of a tensor's bytes. Shape uses GGUF order (ne[0] = row length).</summary>
public readonly unsafe struct TensorView
{
    public TensorView(string name, DType type, long[] shape, nint data, long byteLength)
    {
        Name = name; Type = type; Shape = shape; Data = data; ByteLength = byteLength;
    }

    public string Name { get; }
    public DType Type { get; }
    /// <summary>GGUF order: Shape[0] = elements per row (contiguous), Shape[1] = rows, ...</summary>
    public long[] Shape { get; }
    public nint Data { get; }
    public long ByteLength { get; }

    public long ElementCount { get { long n = 1; foreach (var d in Shape) n *= d; return n; } }
    /// <summary>Elements per row (ne[0]).</summary>
    public int RowLength => checked((int)Shape[0]);
    /// <summary>Number of rows (product of ne[1..]).</summary>
    public int RowCount { get { long n = 1; for (int i = 1; i < Shape.Length; i++) n *= Shape[i]; return checked((int)n); } }
    public long RowBytes => Type.ByteCount(Shape[0]);

    public ReadOnlySpan<byte> Bytes => new((void*)Data, checked((int)ByteLength));
    /// <summary>Bytes of row <paramref name="row"/>.</summary>
    public ReadOnlySpan<byte> Row(int row) => new((byte*)Data + row * RowBytes, checked((int)RowBytes));

    public override string ToString() => $"{Name} {Type} [{string.Join(", ", Shape)}]";
}
