// Owns: the byte-level tokenizer of models whose vocabulary is exactly the 256 byte values (rwkv.cpp files carry
// no tokenizer metadata): token id = UTF-8 byte value; no special tokens, no BOS/EOS, no merges.
// Token text: printable ASCII (0x20..0x7E) as itself (type NORMAL), every other byte as "<0xNN>" (type BYTE), so
// TokenPiece shows a lone non-ASCII byte as "<0xNN>". Invariant: Encode(text) == UTF8(text); Decode inverts it
// (an invalid byte sequence decodes to U+FFFD via the shared StreamingDecoder).
using System.Text;
using Engine.Formats;

namespace Engine.Tokenizers;

public sealed class ByteTokenizer : Tokenizer
{
    public ByteTokenizer(string source = "<bytes>") : base(CreateVocabulary(source)) { }

    /// <summary>The 256-entry byte vocabulary.</summary>
    public static Vocabulary CreateVocabulary(string source = "<bytes>")
    {
        var tokens = new string[256];
        var types = new TokenType[256];
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= 0x20 and <= 0x7E;
            tokens[b] = printable ? ((char)b).ToString() : $"<0x{b:X2}>";
            types[b] = printable ? TokenType.Normal : TokenType.Byte;
        }
        return new Vocabulary
        {
            Model = TokenizerModel.Bytes, Tokens = tokens, Types = types, AddBos = false, AddSpacePrefix = false, Source = source,
        };
    }

    protected override void EncodeText(ReadOnlySpan<char> text, bool afterSpecial, List<int> output)
    {
        int n = Encoding.UTF8.GetByteCount(text);
        Span<byte> bytes = n <= 1024 ? stackalloc byte[n] : new byte[n];
        Encoding.UTF8.GetBytes(text, bytes);
        foreach (var b in bytes) output.Add(b);
    }

    protected override byte[] TokenBytes(int id) => [(byte)id];
}
