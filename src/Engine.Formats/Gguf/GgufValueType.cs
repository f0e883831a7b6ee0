// Owns: the GGUF metadata value type ids and their boxed .NET representations.
// Invariant: ids are the GGUF spec's `gguf_metadata_value_type` values (ggml/docs/gguf.md).
// Boxed forms (see ModelFile): uint8→byte, int8→sbyte, uint16→ushort, int16→short, uint32→uint, int32→int,
// float32→float, bool→bool, string→string, uint64→ulong, int64→long, float64→double,
// array→typed .NET array of the element form (byte[], string[], ...; object[] for arrays of arrays).
namespace Engine.Formats.Gguf;

public enum GgufValueType : uint
{
    UInt8 = 0,
    Int8 = 1,
    UInt16 = 2,
    Int16 = 3,
    UInt32 = 4,
    Int32 = 5,
    Float32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    UInt64 = 10,
    Int64 = 11,
    Float64 = 12,
}

public static class GgufValueTypes
{
    /// <summary>Smallest number of bytes one value of this type occupies in a file (string: its length field; array: type + count).</summary>
    public static int MinEncodedSize(GgufValueType t) => t switch
    {
        GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
        GgufValueType.UInt16 or GgufValueType.Int16 => 2,
        GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
        GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 or GgufValueType.String => 8,
        GgufValueType.Array => 12,
        _ => throw new ArgumentOutOfRangeException(nameof(t), $"unknown GGUF value type {(uint)t}"),
    };

    public static bool IsDefined(uint id) => id <= (uint)GgufValueType.Float64;

    /// <summary>The GGUF type of a boxed metadata value (inverse of the reader's boxing); throws for other .NET types.</summary>
    public static GgufValueType Of(object value) => value switch
    {
        byte => GgufValueType.UInt8,
        sbyte => GgufValueType.Int8,
        ushort => GgufValueType.UInt16,
        short => GgufValueType.Int16,
        uint => GgufValueType.UInt32,
        int => GgufValueType.Int32,
        float => GgufValueType.Float32,
        bool => GgufValueType.Bool,
        string => GgufValueType.String,
        ulong => GgufValueType.UInt64,
        long => GgufValueType.Int64,
        double => GgufValueType.Float64,
        Array => GgufValueType.Array,
        _ => throw new ArgumentException($"{value.GetType().Name} is not a GGUF metadata value type"),
    };

    /// <summary>The GGUF element type of a boxed array value.</summary>
    // Exact type tests: the CLR lets `(object)new int[0] is uint[]` succeed (array covariance between same-size
    // primitives), so pattern matching on array types would confuse signed and unsigned arrays.
    public static GgufValueType ElementOf(Array array)
    {
        var t = array.GetType();
        if (t == typeof(byte[])) return GgufValueType.UInt8;
        if (t == typeof(sbyte[])) return GgufValueType.Int8;
        if (t == typeof(ushort[])) return GgufValueType.UInt16;
        if (t == typeof(short[])) return GgufValueType.Int16;
        if (t == typeof(uint[])) return GgufValueType.UInt32;
        if (t == typeof(int[])) return GgufValueType.Int32;
        if (t == typeof(float[])) return GgufValueType.Float32;
        if (t == typeof(bool[])) return GgufValueType.Bool;
        if (t == typeof(string[])) return GgufValueType.String;
        if (t == typeof(ulong[])) return GgufValueType.UInt64;
        if (t == typeof(long[])) return GgufValueType.Int64;
        if (t == typeof(double[])) return GgufValueType.Float64;
        if (t == typeof(object[])) return GgufValueType.Array;
        throw new ArgumentException($"{t.Name} is not a GGUF metadata array type");
    }
}
