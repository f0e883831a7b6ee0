// Owns: writing GGUF v3 (or v2) files: metadata of every GGUF value type and aligned tensor data.
// Invariants: keys and tensor names are unique; every tensor's byte length equals DType.ByteCount(shape product);
// tensor data offsets are multiples of the alignment and tensors are laid out in insertion order with zero padding;
// a non-default alignment is recorded as general.alignment (uint32). Output reads back bit-identically with GgufReader.
// Source: the GGUF specification (ggml/docs/gguf.md).
using System.Text;
using Engine.Tensors;

namespace Engine.Formats.Gguf;

public sealed unsafe class GgufWriter
{
    private readonly List<KeyValuePair<string, object>> _metadata = [];
    private readonly HashSet<string> _keys = new(StringComparer.Ordinal);
    private readonly List<PendingTensor> _tensors = [];
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);

    private sealed record PendingTensor(string Name, DType Type, long[] Shape, long ByteLength, byte[]? Managed, nint Native,
        Action<Stream>? Producer = null);

    /// <param name="alignment">Data alignment (power of two); written as general.alignment when not 32.</param>
    /// <param name="version">GGUF version, 2 or 3 (identical layouts for little-endian files).</param>
    public GgufWriter(uint alignment = GgufReader.DefaultAlignment, uint version = 3)
    {
        if (alignment == 0 || (alignment & (alignment - 1)) != 0) throw new ArgumentException($"alignment {alignment} is not a power of two");
        if (version is not (2 or 3)) throw new ArgumentException($"GGUF version {version} cannot be written (2 or 3)");
        Alignment = alignment; Version = version;
        if (alignment != GgufReader.DefaultAlignment) AddMetadata(GgufReader.AlignmentKey, alignment);
    }

    public uint Alignment { get; }
    public uint Version { get; }

    /// <summary>Adds one key; the GGUF type follows the boxed .NET type (see GgufValueType).</summary>
    public GgufWriter AddMetadata(string key, object value)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (key == GgufReader.AlignmentKey && _keys.Contains(key))
        {
            if (value is not uint a || a != Alignment)
                throw new ArgumentException($"{key} = {value} conflicts with the writer's alignment {Alignment}");
            return this;
        }
        if (key == GgufReader.AlignmentKey && (value is not uint a2 || a2 != Alignment))
            throw new ArgumentException($"{key} = {value} conflicts with the writer's alignment {Alignment}");
        Validate(value, 0);
        if (!_keys.Add(key)) throw new ArgumentException($"duplicate metadata key '{key}'");
        _metadata.Add(new(key, value));
        return this;
    }

    /// <summary>Adds every key of <paramref name="metadata"/> (in its enumeration order).</summary>
    public GgufWriter AddMetadata(IEnumerable<KeyValuePair<string, object>> metadata)
    {
        foreach (var (k, v) in metadata) AddMetadata(k, v);
        return this;
    }

    /// <summary>Adds a tensor whose bytes are copied now. Shape is in GGUF order (ne[0] = row length).</summary>
    public GgufWriter AddTensor(string name, DType type, long[] shape, ReadOnlySpan<byte> data)
    {
        long bytes = CheckTensor(name, type, shape, data.Length);
        _names.Add(name);
        _tensors.Add(new PendingTensor(name, type, (long[])shape.Clone(), bytes, data.ToArray(), 0));
        return this;
    }

    /// <summary>Adds a float32 tensor.</summary>
    public GgufWriter AddTensor(string name, long[] shape, ReadOnlySpan<float> data) =>
        AddTensor(name, DType.F32, shape, System.Runtime.InteropServices.MemoryMarshal.AsBytes(data));

    /// <summary>Adds a tensor by reference: its bytes are read at Write time, so the view's owner must stay open until then.</summary>
    public GgufWriter AddTensor(TensorView view)
    {
        long bytes = CheckTensor(view.Name, view.Type, view.Shape, view.ByteLength);
        _names.Add(view.Name);
        _tensors.Add(new PendingTensor(view.Name, view.Type, (long[])view.Shape.Clone(), bytes, null, view.Data));
        return this;
    }

    /// <summary>
    /// Adds a tensor whose bytes <paramref name="writeData"/> writes to the output stream at Write time, in insertion
    /// order (streaming: nothing is held in memory). It must write exactly the shape's byte count; on a seekable stream
    /// a different count is an InvalidOperationException.
    /// </summary>
    public GgufWriter AddTensor(string name, DType type, long[] shape, Action<Stream> writeData)
    {
        ArgumentNullException.ThrowIfNull(writeData);
        long bytes = type.ByteCount(shape.Aggregate(1L, (a, d) => checked(a * d)));
        CheckTensor(name, type, shape, bytes);
        _names.Add(name);
        _tensors.Add(new PendingTensor(name, type, (long[])shape.Clone(), bytes, null, 0, writeData));
        return this;
    }

    /// <summary>Writes <paramref name="model"/>'s metadata and tensors as GGUF (the model must stay open during the call).</summary>
    public static void Write(ModelFile model, string path, uint alignment = GgufReader.DefaultAlignment)
    {
        if (model.Metadata.TryGetValue(GgufReader.AlignmentKey, out var a) && a is uint ua) alignment = ua;
        var w = new GgufWriter(alignment);
        foreach (var (k, v) in model.Metadata)
            if (k != GgufReader.AlignmentKey) w.AddMetadata(k, v);
        foreach (var t in model.Tensors) w.AddTensor(t);
        w.Write(path);
    }

    private long CheckTensor(string name, DType type, long[] shape, long byteLength)
    {
        if (_names.Contains(name)) throw new ArgumentException($"duplicate tensor name '{name}'");
        if (!DTypeInfo.IsKnown((uint)type)) throw new ArgumentException($"unknown tensor type {(uint)type}");
        if (shape.Length is 0 or > GgufReader.MaxDims) throw new ArgumentException($"tensor '{name}' has {shape.Length} dimensions (1..4)");
        long elements = 1;
        foreach (var d in shape)
        {
            if (d < 0) throw new ArgumentException($"tensor '{name}' has a negative dimension");
            elements = checked(elements * d);
        }
        if (shape[0] % type.BlockSize() != 0) throw new ArgumentException($"tensor '{name}' row length {shape[0]} is not a multiple of the {type} block size");
        long expected = type.ByteCount(elements);
        if (expected != byteLength) throw new ArgumentException($"tensor '{name}' has {byteLength} bytes, its shape needs {expected}");
        return expected;
    }

    private static void Validate(object value, int depth)
    {
        var t = GgufValueTypes.Of(value);
        if (t != GgufValueType.Array) return;
        if (depth >= GgufReader.MaxArrayDepth) throw new ArgumentException($"arrays nest deeper than {GgufReader.MaxArrayDepth}");
        var a = (Array)value;
        var et = GgufValueTypes.ElementOf(a);
        if (et == GgufValueType.String)
            foreach (var s in (string[])a) ArgumentNullException.ThrowIfNull(s);
        if (et == GgufValueType.Array)
            foreach (var inner in (object[])a)
            {
                if (inner is not Array) throw new ArgumentException("object[] metadata must hold arrays only (arrays of arrays)");
                Validate(inner, depth + 1);
            }
    }

    /// <summary>Writes the file (created or replaced).</summary>
    public void Write(string path)
    {
        using var fs = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        Write(fs);
    }

    /// <summary>The whole file in memory.</summary>
    public byte[] ToArray()
    {
        using var ms = new MemoryStream();
        Write(ms);
        return ms.ToArray();
    }

    public void Write(Stream stream)
    {
        var header = new MemoryStream();
        var w = new BinaryWriter(header, Encoding.UTF8, leaveOpen: true); // BinaryWriter is little-endian
        w.Write(GgufReader.Magic);
        w.Write(Version);
        w.Write((ulong)_tensors.Count);
        w.Write((ulong)_metadata.Count);
        foreach (var (k, v) in _metadata)
        {
            WriteString(w, k);
            var type = GgufValueTypes.Of(v);
            w.Write((uint)type);
            WriteValue(w, v, type);
        }
        long offset = 0;
        var offsets = new long[_tensors.Count];
        for (int i = 0; i < _tensors.Count; i++)
        {
            var t = _tensors[i];
            WriteString(w, t.Name);
            w.Write((uint)t.Shape.Length);
            foreach (var d in t.Shape) w.Write((ulong)d);
            w.Write((uint)t.Type);
            offsets[i] = offset;
            w.Write((ulong)offset);
            offset = GgufReader.AlignUp(offset + t.ByteLength, Alignment);
        }
        w.Flush();
        header.Position = header.Length;
        Pad(header, GgufReader.AlignUp(header.Length, Alignment) - header.Length);
        header.Position = 0;
        header.CopyTo(stream);

        long written = 0;
        for (int i = 0; i < _tensors.Count; i++)
        {
            var t = _tensors[i];
            Pad(stream, offsets[i] - written);
            written = offsets[i];
            if (t.Managed != null) stream.Write(t.Managed);
            else if (t.Producer != null)
            {
                long before = stream.CanSeek ? stream.Position : -1;
                t.Producer(stream);
                if (before >= 0 && stream.Position - before != t.ByteLength)
                    throw new InvalidOperationException($"tensor '{t.Name}': the producer wrote {stream.Position - before} bytes, its shape needs {t.ByteLength}");
            }
            else
            {
                for (long done = 0; done < t.ByteLength;)
                {
                    int chunk = (int)Math.Min(1 << 30, t.ByteLength - done);
                    stream.Write(new ReadOnlySpan<byte>((byte*)t.Native + done, chunk));
                    done += chunk;
                }
            }
            written += t.ByteLength;
        }
        if (_tensors.Count > 0) Pad(stream, GgufReader.AlignUp(written, Alignment) - written);
        stream.Flush();
    }

    private static void Pad(Stream s, long count)
    {
        Span<byte> zeros = stackalloc byte[256];
        zeros.Clear();
        while (count > 0)
        {
            int n = (int)Math.Min(count, zeros.Length);
            s.Write(zeros[..n]);
            count -= n;
        }
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static void WriteValue(BinaryWriter w, object v, GgufValueType type)
    {
        switch (v)
        {
            case byte x: w.Write(x); break;
            case sbyte x: w.Write(x); break;
            case ushort x: w.Write(x); break;
            case short x: w.Write(x); break;
            case uint x: w.Write(x); break;
            case int x: w.Write(x); break;
            case float x: w.Write(x); break;
            case bool x: w.Write((byte)(x ? 1 : 0)); break;
            case string x: WriteString(w, x); break;
            case ulong x: w.Write(x); break;
            case long x: w.Write(x); break;
            case double x: w.Write(x); break;
            case Array a: WriteArray(w, a); break;
            default: throw new ArgumentException($"{type} value of .NET type {v.GetType().Name} cannot be written");
        }
    }

    // An array (top-level or nested) is: element type (uint32), count (uint64), elements without type tags.
    private static void WriteArray(BinaryWriter w, Array a)
    {
        var et = GgufValueTypes.ElementOf(a);
        w.Write((uint)et);
        w.Write((ulong)a.Length);
        switch (et)
        {
            case GgufValueType.UInt8: w.Write((byte[])a); break;
            case GgufValueType.String: foreach (var s in (string[])a) WriteString(w, s); break;
            case GgufValueType.Array: foreach (var inner in (object[])a) WriteArray(w, (Array)inner); break;
            default:
                foreach (var e in a) WriteValue(w, e!, et);
                break;
        }
    }
}
