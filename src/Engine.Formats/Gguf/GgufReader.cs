// Owns: parsing GGUF v2/v3 files into a ModelFile (metadata boxed per GgufValueType, tensors as zero-copy views).
// Invariants: every length, count, dimension, type id and offset is checked against the file before use;
// any violation throws ModelFormatException(file, offset, problem); nothing is allocated from an unchecked length;
// nested arrays are limited to MaxArrayDepth so hostile input cannot exhaust the stack.
// Source: the GGUF specification (ggml/docs/gguf.md): magic "GGUF", uint32 version, uint64 tensor count,
// uint64 metadata count, key/value pairs, tensor infos, padding to general.alignment (default 32), tensor data.
using Engine.Tensors;

namespace Engine.Formats.Gguf;

/// <summary>Where the parts of a GGUF file lie (for inspect and tests).</summary>
public sealed record GgufLayout(uint Version, uint Alignment, long MetadataStart, long TensorInfoStart,
    long TensorInfoEnd, long DataOffset, IReadOnlyList<long> TensorOffsets);

public static unsafe class GgufReader
{
    /// <summary>"GGUF" read as a little-endian uint32.</summary>
    public const uint Magic = 0x46554747;
    public const uint DefaultAlignment = 32;
    public const int MaxDims = 4;
    public const int MaxArrayDepth = 8;
    public const string AlignmentKey = "general.alignment";

    /// <summary>True when the first four bytes are "GGUF".</summary>
    public static bool HasMagic(ReadOnlySpan<byte> head) =>
        head.Length >= 4 && head[0] == (byte)'G' && head[1] == (byte)'G' && head[2] == (byte)'U' && head[3] == (byte)'F';

    /// <summary>Memory-maps and parses a GGUF file. The returned ModelFile owns the mapping.</summary>
    public static ModelFile Read(string path) => Read(path, out _);

    public static ModelFile Read(string path, out GgufLayout layout)
    {
        MappedFile map;
        try { map = MappedFile.Open(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException(path, -1, $"cannot open: {e.Message}", e);
        }
        try
        {
            return Parse(path, map.Pointer, map.Length, map, out layout);
        }
        catch
        {
            map.Dispose();
            throw;
        }
    }

    /// <summary>Parses GGUF bytes held in memory (copied to unmanaged memory owned by the result).</summary>
    public static ModelFile Read(ReadOnlySpan<byte> bytes, string name, out GgufLayout layout)
    {
        var copy = new NativeBytes(bytes);
        try
        {
            return Parse(name, copy.Pointer, copy.Length, copy, out layout);
        }
        catch
        {
            copy.Dispose();
            throw;
        }
    }

    public static ModelFile Read(ReadOnlySpan<byte> bytes, string name = "<memory>") => Read(bytes, name, out _);

    internal static ModelFile Parse(string file, byte* basePointer, long length, IDisposable? owner, out GgufLayout layout)
    {
        var c = new ByteCursor(file, basePointer, length);
        if (length < 4) throw c.Error($"file is {length} bytes, too short for the GGUF magic", 0);
        uint magic = c.U32("magic");
        if (magic != Magic) throw c.Error($"not a GGUF file (magic 0x{magic:X8}, expected \"GGUF\")", 0);

        uint version = c.U32("version");
        if (version == 1)
            throw c.Error("GGUF version 1 is not supported (it uses 32-bit counts); re-convert the model with a current tool", 4);
        if (version is 0x02000000 or 0x03000000)
            throw c.Error("big-endian GGUF is not supported", 4);
        if (version is not (2 or 3))
            throw c.Error($"unsupported GGUF version {version} (supported: 2, 3)", 4);

        long at = c.Position;
        ulong tensorCount = c.U64("tensor count");
        // Each tensor info takes at least name length (8) + n_dims (4) + one dim (8) + type (4) + offset (8).
        if (tensorCount > (ulong)(c.Remaining / 32))
            throw c.Error($"tensor count {tensorCount} cannot fit in the {c.Remaining} remaining bytes", at);
        if (tensorCount > int.MaxValue / 4) throw c.Error($"tensor count {tensorCount} is too large", at);
        at = c.Position;
        ulong kvCount = c.U64("metadata count");
        // Each key/value takes at least key length (8) + value type (4) + one value byte.
        if (kvCount > (ulong)(c.Remaining / 13))
            throw c.Error($"metadata count {kvCount} cannot fit in the {c.Remaining} remaining bytes", at);

        long metadataStart = c.Position;
        var metadata = new Dictionary<string, object>((int)Math.Min(kvCount, 4096), StringComparer.Ordinal);
        for (ulong i = 0; i < kvCount; i++)
        {
            long keyAt = c.Position;
            string key = c.GgufString($"metadata key #{i}");
            if (metadata.ContainsKey(key)) throw c.Error($"duplicate metadata key {ErrorText.Quote(key)}", keyAt);
            long typeAt = c.Position;
            uint type = c.U32($"type of {ErrorText.Quote(key)}");
            if (!GgufValueTypes.IsDefined(type)) throw c.Error($"metadata {ErrorText.Quote(key)} has unknown value type {type}", typeAt);
            metadata.Add(key, ReadValue(c, (GgufValueType)type, key, 0));
        }

        uint alignment = DefaultAlignment;
        if (metadata.TryGetValue(AlignmentKey, out var alignValue))
        {
            if (alignValue is not uint a) throw c.Error($"'{AlignmentKey}' is {alignValue.GetType().Name}, expected uint32", -1);
            if (a == 0 || (a & (a - 1)) != 0) throw c.Error($"'{AlignmentKey}' is {a}, expected a power of two", -1);
            alignment = a;
        }

        long tensorInfoStart = c.Position;
        var infos = new (string Name, DType Type, long[] Shape, long Bytes, long Offset, long At)[(int)tensorCount];
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < infos.Length; i++)
        {
            long infoAt = c.Position;
            string name = c.GgufString($"name of tensor #{i}");
            if (!names.Add(name)) throw c.Error($"duplicate tensor name {ErrorText.Quote(name)}", infoAt);
            long dimsAt = c.Position;
            uint nDims = c.U32($"n_dims of {ErrorText.Quote(name)}");
            if (nDims is 0 or > MaxDims) throw c.Error($"tensor {ErrorText.Quote(name)} has {nDims} dimensions (allowed 1..{MaxDims})", dimsAt);
            var shape = new long[nDims];
            long elements = 1;
            for (int d = 0; d < nDims; d++)
            {
                long dimAt = c.Position;
                ulong ne = c.U64($"dimension {d} of {ErrorText.Quote(name)}");
                if (ne > long.MaxValue) throw c.Error($"tensor {ErrorText.Quote(name)} dimension {d} = {ne} is too large", dimAt);
                shape[d] = (long)ne;
                if (ne != 0 && elements > long.MaxValue / (long)ne)
                    throw c.Error($"tensor {ErrorText.Quote(name)} element count overflows (shape [{string.Join(", ", shape[..(d + 1)])}])", dimAt);
                elements *= (long)ne;
            }
            long typeAt = c.Position;
            uint typeId = c.U32($"type of {ErrorText.Quote(name)}");
            if (!DTypeInfo.IsKnown(typeId)) throw c.Error($"tensor {ErrorText.Quote(name)} has unknown type id {typeId}", typeAt);
            var type = (DType)typeId;
            int blockSize = type.BlockSize();
            if (shape[0] % blockSize != 0)
                throw c.Error($"tensor {ErrorText.Quote(name)} row length {shape[0]} is not a multiple of the {type} block size {blockSize}", dimsAt);
            long blocks = elements / blockSize;
            if (blocks > long.MaxValue / type.BytesPerBlock())
                throw c.Error($"tensor {ErrorText.Quote(name)} byte size overflows", dimsAt);
            long bytes = blocks * type.BytesPerBlock();
            long offsetAt = c.Position;
            ulong offset = c.U64($"data offset of {ErrorText.Quote(name)}");
            if (offset > long.MaxValue) throw c.Error($"tensor {ErrorText.Quote(name)} data offset {offset} is too large", offsetAt);
            if (offset % alignment != 0)
                throw c.Error($"tensor {ErrorText.Quote(name)} data offset {offset} is not a multiple of the alignment {alignment}", offsetAt);
            infos[i] = (name, type, shape, bytes, (long)offset, offsetAt);
        }
        long tensorInfoEnd = c.Position;

        long dataOffset = AlignUp(tensorInfoEnd, alignment);
        var tensors = new TensorView[infos.Length];
        if (infos.Length > 0)
        {
            if (dataOffset > length)
                throw c.Error($"tensor data would start at {dataOffset}, past the end of the {length}-byte file", tensorInfoEnd);
            long dataLength = length - dataOffset;
            for (int i = 0; i < infos.Length; i++)
            {
                var t = infos[i];
                if (t.Offset > dataLength || t.Bytes > dataLength - t.Offset)
                    throw c.Error($"tensor {ErrorText.Quote(t.Name)} data [{dataOffset + t.Offset}, +{t.Bytes}) runs past the end of the {length}-byte file", t.At);
                tensors[i] = new TensorView(t.Name, t.Type, t.Shape, (nint)(basePointer + dataOffset + t.Offset), t.Bytes);
            }
            // Overlapping tensor data means a corrupt tensor table.
            var order = Enumerable.Range(0, infos.Length).Where(i => infos[i].Bytes > 0).OrderBy(i => infos[i].Offset).ToArray();
            for (int k = 1; k < order.Length; k++)
            {
                var prev = infos[order[k - 1]];
                var cur = infos[order[k]];
                if (prev.Offset + prev.Bytes > cur.Offset)
                    throw c.Error($"tensor {ErrorText.Quote(cur.Name)} data overlaps tensor {ErrorText.Quote(prev.Name)}", cur.At);
            }
        }

        layout = new GgufLayout(version, alignment, metadataStart, tensorInfoStart, tensorInfoEnd, dataOffset,
            infos.Select(t => t.Offset).ToArray());
        return new ModelFile(file, ModelFileFormat.Gguf, metadata, tensors, owner);
    }

    internal static long AlignUp(long value, long alignment) => (value + alignment - 1) / alignment * alignment;

    private static object ReadValue(ByteCursor c, GgufValueType type, string key, int depth) => type switch
    {
        GgufValueType.UInt8 => c.U8(key),
        GgufValueType.Int8 => c.I8(key),
        GgufValueType.UInt16 => c.U16(key),
        GgufValueType.Int16 => c.I16(key),
        GgufValueType.UInt32 => c.U32(key),
        GgufValueType.Int32 => c.I32(key),
        GgufValueType.Float32 => c.F32(key),
        GgufValueType.Bool => c.Bool(key),
        GgufValueType.String => c.GgufString(key),
        GgufValueType.UInt64 => c.U64(key),
        GgufValueType.Int64 => c.I64(key),
        GgufValueType.Float64 => c.F64(key),
        GgufValueType.Array => ReadArray(c, key, depth),
        _ => throw c.Error($"metadata {ErrorText.Quote(key)} has unknown value type {(uint)type}"),
    };

    private static Array ReadArray(ByteCursor c, string key, int depth)
    {
        long at = c.Position;
        if (depth >= MaxArrayDepth) throw c.Error($"metadata {ErrorText.Quote(key)} nests arrays deeper than {MaxArrayDepth}", at);
        uint elemId = c.U32($"element type of {ErrorText.Quote(key)}");
        if (!GgufValueTypes.IsDefined(elemId)) throw c.Error($"array {ErrorText.Quote(key)} has unknown element type {elemId}", at);
        var elem = (GgufValueType)elemId;
        long countAt = c.Position;
        ulong count = c.U64($"length of array {ErrorText.Quote(key)}");
        int min = GgufValueTypes.MinEncodedSize(elem);
        if (count > (ulong)(c.Remaining / min))
            throw c.Error($"array {ErrorText.Quote(key)} claims {count} {elem} elements but only {c.Remaining} bytes remain", countAt);
        if (count > int.MaxValue) throw c.Error($"array {ErrorText.Quote(key)} has {count} elements, more than supported", countAt);
        int n = (int)count;
        switch (elem)
        {
            case GgufValueType.UInt8: return Fixed<byte>(c, n, key);
            case GgufValueType.Int8: return Fixed<sbyte>(c, n, key);
            case GgufValueType.UInt16: return Fixed<ushort>(c, n, key);
            case GgufValueType.Int16: return Fixed<short>(c, n, key);
            case GgufValueType.UInt32: return Fixed<uint>(c, n, key);
            case GgufValueType.Int32: return Fixed<int>(c, n, key);
            case GgufValueType.Float32: return Fixed<float>(c, n, key);
            case GgufValueType.UInt64: return Fixed<ulong>(c, n, key);
            case GgufValueType.Int64: return Fixed<long>(c, n, key);
            case GgufValueType.Float64: return Fixed<double>(c, n, key);
            case GgufValueType.Bool:
            {
                var a = new bool[n];
                for (int i = 0; i < n; i++) a[i] = c.Bool(key);
                return a;
            }
            case GgufValueType.String:
            {
                var a = new string[n];
                for (int i = 0; i < n; i++) a[i] = c.GgufString(key);
                return a;
            }
            default:
            {
                // Arrays of arrays: each element is encoded as (element type, count, values) with no value-type tag.
                var a = new object[n];
                for (int i = 0; i < n; i++) a[i] = ReadArray(c, key, depth + 1);
                return a;
            }
        }
    }

    private static T[] Fixed<T>(ByteCursor c, int n, string key) where T : unmanaged
    {
        long bytes = (long)n * sizeof(T);
        c.Require(bytes, $"array {ErrorText.Quote(key)}");
        var a = new T[n];
        new ReadOnlySpan<T>(c.Base + c.Position, n).CopyTo(a); // little-endian host (x86-64/arm64) = file order
        c.Position += bytes;
        return a;
    }
}
