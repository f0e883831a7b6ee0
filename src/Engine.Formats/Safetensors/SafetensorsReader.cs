// Owns: parsing one .safetensors file into zero-copy tensor views (names and shapes as stored).
// Format (huggingface/safetensors): uint64 little-endian header length N, N bytes of UTF-8 JSON
// {"name": {"dtype": "F32"|"F16"|"BF16"|..., "shape": [outer, ..., inner], "data_offsets": [begin, end]}, "__metadata__": {...}},
// then the data buffer; offsets are relative to byte 8 + N.
// Invariants: the header length, every offset pair, every shape and dtype are checked (ModelFormatException);
// tensors may not overlap; shapes are returned reversed into GGUF order (ne[0] = innermost); __metadata__ is ignored.
using System.Text.Json;
using Engine.Tensors;

namespace Engine.Formats.Safetensors;

public static unsafe class SafetensorsReader
{
    /// <summary>Largest JSON header accepted (the format's own limit is 100 MB).</summary>
    public const long MaxHeaderBytes = 100L << 20;

    /// <summary>True when the bytes start like a safetensors file (header length fits and JSON begins with '{').</summary>
    public static bool LooksLikeSafetensors(byte* p, long length)
    {
        if (length < 10) return false;
        ulong n = *(ulong*)p;
        return n >= 2 && n <= (ulong)(length - 8) && n <= MaxHeaderBytes && p[8] == (byte)'{';
    }

    /// <summary>Maps a .safetensors file; the ModelFile has the stored tensor names and no metadata.</summary>
    public static ModelFile Read(string path)
    {
        var map = Llama2c.Llama2cTokenizerReader.OpenMapped(path);
        try
        {
            return new ModelFile(path, ModelFileFormat.Safetensors, new Dictionary<string, object>(),
                ParseTensors(path, map.Pointer, map.Length), map);
        }
        catch
        {
            map.Dispose();
            throw;
        }
    }

    /// <summary>Parses safetensors bytes in memory (copied; the result owns the copy).</summary>
    public static ModelFile Read(ReadOnlySpan<byte> bytes, string name = "<memory>")
    {
        var copy = new NativeBytes(bytes);
        try
        {
            return new ModelFile(name, ModelFileFormat.Safetensors, new Dictionary<string, object>(),
                ParseTensors(name, copy.Pointer, copy.Length), copy);
        }
        catch
        {
            copy.Dispose();
            throw;
        }
    }

    /// <summary>Tensor views of a safetensors image at <paramref name="p"/> (GGUF-order shapes, file order of data).</summary>
    internal static List<TensorView> ParseTensors(string file, byte* p, long length)
    {
        if (length < 8) throw new ModelFormatException(file, 0, $"file is {length} bytes, too short for a safetensors header");
        ulong n = *(ulong*)p;
        if (n > (ulong)(length - 8)) throw new ModelFormatException(file, 0, $"header length {n} runs past the end of the {length}-byte file");
        if (n > MaxHeaderBytes) throw new ModelFormatException(file, 0, $"header length {n} exceeds {MaxHeaderBytes} bytes");
        long dataStart = 8 + (long)n;
        long dataLength = length - dataStart;
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(new ReadOnlyMemory<byte>(new ReadOnlySpan<byte>(p + 8, (int)n).ToArray()),
                new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(file, 8, $"header is not valid JSON: {e.Message}", e);
        }
        using (doc)
        {
            try
            {
                return Entries(file, doc, p, dataStart, dataLength);
            }
            catch (InvalidOperationException e) // e.g. invalid UTF-8 inside a JSON string
            {
                throw new ModelFormatException(file, 8, $"bad header JSON: {e.Message}", e);
            }
        }
    }

    private static List<TensorView> Entries(string file, JsonDocument doc, byte* p, long dataStart, long dataLength)
    {
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException(file, 8, "header JSON is not an object");
        var list = new List<(TensorView View, long Begin)>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var prop in doc.RootElement.EnumerateObject())
        {
            if (prop.Name == "__metadata__") continue;
            if (!names.Add(prop.Name)) throw new ModelFormatException(file, 8, $"tensor '{prop.Name}' appears twice in the header");
            list.Add(ParseEntry(file, prop, p + dataStart, dataLength, dataStart));
        }
        var sorted = list.Where(t => t.View.ByteLength > 0).OrderBy(t => t.Begin).ToList();
        for (int i = 1; i < sorted.Count; i++)
            if (sorted[i - 1].Begin + sorted[i - 1].View.ByteLength > sorted[i].Begin)
                throw new ModelFormatException(file, dataStart + sorted[i].Begin,
                    $"tensor '{sorted[i].View.Name}' overlaps '{sorted[i - 1].View.Name}'");
        return list.OrderBy(t => t.Begin).Select(t => t.View).ToList();
    }

    private static (TensorView, long) ParseEntry(string file, JsonProperty prop, byte* data, long dataLength, long dataStart)
    {
        string name = prop.Name;
        ModelFormatException Bad(string problem) => new(file, 8, $"tensor '{name}': {problem}");
        var e = prop.Value;
        if (e.ValueKind != JsonValueKind.Object) throw Bad("entry is not an object");
        if (!e.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String) throw Bad("missing dtype");
        var type = dt.GetString() switch
        {
            "F32" => DType.F32,
            "F16" => DType.F16,
            "BF16" => DType.BF16,
            "F64" => DType.F64,
            "I8" => DType.I8,
            "I16" => DType.I16,
            "I32" => DType.I32,
            "I64" => DType.I64,
            var s => throw Bad($"dtype {s} is not supported (F32, F16, BF16, F64, I8..I64)"),
        };
        if (!e.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array) throw Bad("missing shape");
        int rank = sh.GetArrayLength();
        if (rank > 4) throw Bad($"{rank} dimensions (at most 4)");
        var shape = new long[Math.Max(rank, 1)];
        shape[0] = 1; // a scalar is stored as shape [1]
        long elements = 1;
        int d = rank - 1;
        foreach (var dim in sh.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out long v) || v < 0) throw Bad("shape holds a non-integer or negative value");
            if (v != 0 && elements > long.MaxValue / v) throw Bad("element count overflows");
            elements *= v;
            shape[d--] = v; // reverse: safetensors is outermost-first, GGUF ne[0] is innermost
        }
        if (!e.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw Bad("data_offsets must be [begin, end]");
        if (off[0].ValueKind != JsonValueKind.Number || off[1].ValueKind != JsonValueKind.Number
            || !off[0].TryGetInt64(out long begin) || !off[1].TryGetInt64(out long end) || begin < 0 || end < begin)
            throw Bad("data_offsets are not a valid [begin, end] pair");
        if (end > dataLength) throw Bad($"data [{begin}, {end}) runs past the {dataLength}-byte data buffer");
        int size = type.BytesPerBlock();
        if (elements > long.MaxValue / size || end - begin != elements * size)
            throw Bad($"data_offsets span {end - begin} bytes but shape × dtype needs {elements} × {size}");
        return (new TensorView(name, type, shape, (nint)(data + begin), end - begin), begin);
    }
}
