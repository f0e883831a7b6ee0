// Owns: bounds-checked little-endian reading from a byte range (a mapped file or an unmanaged copy).
// Invariants: every read checks the remaining bytes first and throws ModelFormatException(file, offset, problem)
// naming the offset where the read started; nothing is ever allocated from an unchecked length
// (string/array lengths are compared with the remaining bytes before any allocation).
using System.Buffers.Binary;
using System.Text;

namespace Engine.Formats;

internal sealed unsafe class ByteCursor
{
    private static readonly UTF8Encoding Utf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false);
    private readonly byte* _base;

    public ByteCursor(string file, byte* basePointer, long length)
    {
        File = file; _base = basePointer; Length = length;
    }

    public string File { get; }
    public long Length { get; }
    public long Position { get; set; }
    public long Remaining => Length - Position;
    public byte* Base => _base;

    public ModelFormatException Error(string problem, long offset = -2) =>
        new(File, offset == -2 ? Position : offset, problem);

    /// <summary>Throws unless <paramref name="count"/> more bytes exist at the current position.</summary>
    public void Require(long count, string what)
    {
        if (count < 0 || count > Remaining)
            throw Error($"{what} needs {count} bytes but only {Remaining} remain (file is {Length} bytes)");
    }

    private ReadOnlySpan<byte> Take(int count, string what)
    {
        Require(count, what);
        var span = new ReadOnlySpan<byte>(_base + Position, count);
        Position += count;
        return span;
    }

    public byte U8(string what) => Take(1, what)[0];
    public sbyte I8(string what) => (sbyte)Take(1, what)[0];
    public ushort U16(string what) => BinaryPrimitives.ReadUInt16LittleEndian(Take(2, what));
    public short I16(string what) => BinaryPrimitives.ReadInt16LittleEndian(Take(2, what));
    public uint U32(string what) => BinaryPrimitives.ReadUInt32LittleEndian(Take(4, what));
    public int I32(string what) => BinaryPrimitives.ReadInt32LittleEndian(Take(4, what));
    public ulong U64(string what) => BinaryPrimitives.ReadUInt64LittleEndian(Take(8, what));
    public long I64(string what) => BinaryPrimitives.ReadInt64LittleEndian(Take(8, what));
    public float F32(string what) => BinaryPrimitives.ReadSingleLittleEndian(Take(4, what));
    public double F64(string what) => BinaryPrimitives.ReadDoubleLittleEndian(Take(8, what));

    public bool Bool(string what)
    {
        long at = Position;
        byte b = U8(what);
        if (b > 1) throw Error($"{what}: bool byte is {b}, expected 0 or 1", at);
        return b == 1;
    }

    /// <summary>UTF-8 text of <paramref name="byteCount"/> bytes (length already read by the caller).</summary>
    public string Utf8String(long byteCount, string what)
    {
        if (byteCount < 0 || byteCount > Remaining || byteCount > int.MaxValue)
            throw Error($"{what}: string length {byteCount} exceeds the {Remaining} remaining bytes");
        return Utf8.GetString(Take((int)byteCount, what));
    }

    /// <summary>A GGUF string: uint64 byte length, then UTF-8 bytes (no terminator).</summary>
    public string GgufString(string what)
    {
        long at = Position;
        ulong n = U64(what + " length");
        if (n > (ulong)Remaining)
            throw Error($"{what}: string length {n} exceeds the {Remaining} remaining bytes", at);
        return Utf8String((long)n, what);
    }
}
