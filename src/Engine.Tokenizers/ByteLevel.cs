// Owns: GPT-2's reversible byte ↔ unicode mapping used by byte-level BPE vocabularies.
// Invariant: bytes '!'..'~', '¡'..'¬', '®'..'ÿ' map to the same code point; the other 68 bytes map, in byte
// order, to U+0100, U+0101, ... (so ' ' → 'Ġ', '\n' → 'Ċ'). Every mapped char is in the BMP.
namespace Engine.Tokenizers;

public static class ByteLevel
{
    private static readonly char[] ByteToChar = BuildByteToChar();       // [256]
    private static readonly Dictionary<char, byte> CharToByte = BuildCharToByte();

    private static char[] BuildByteToChar()
    {
        var map = new char[256];
        int extra = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            map[b] = printable ? (char)b : (char)(256 + extra++);
        }
        return map;
    }

    private static Dictionary<char, byte> BuildCharToByte()
    {
        var d = new Dictionary<char, byte>(256);
        for (int b = 0; b < 256; b++) d[ByteToChar[b]] = (byte)b;
        return d;
    }

    public static char Encode(byte b) => ByteToChar[b];

    /// <summary>Mapped char → byte; false for chars outside the mapping.</summary>
    public static bool TryDecode(char c, out byte b) => CharToByte.TryGetValue(c, out b);

    /// <summary>Bytes → mapped text (one char per byte).</summary>
    public static void Encode(ReadOnlySpan<byte> bytes, Span<char> destination)
    {
        for (int i = 0; i < bytes.Length; i++) destination[i] = ByteToChar[bytes[i]];
    }
}
