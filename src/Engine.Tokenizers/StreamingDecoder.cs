// Owns: incremental detokenization for streaming output.
// Invariants: the concatenation of every Append(...) result followed by Flush() equals Tokenizer.Decode of the
// same ids, for any way of splitting the id sequence; a UTF-8 character whose bytes arrive in several tokens
// (SPM byte tokens "<0xE2>", byte-level BPE pieces) is emitted only once whole; invalid bytes become U+FFFD
// exactly where a whole-text UTF-8 decode would put them (System.Text.Decoder keeps the partial sequence).
using System.Text;

namespace Engine.Tokenizers;

public sealed class StreamingDecoder
{
    private readonly Tokenizer _tokenizer;
    private readonly bool _renderSpecial;
    private readonly Decoder _utf8 = new UTF8Encoding(false, false).GetDecoder();
    private bool _stripLeadingSpace;
    private char[] _chars = new char[64];

    internal StreamingDecoder(Tokenizer tokenizer, bool renderSpecial, bool stripLeadingSpace)
    {
        _tokenizer = tokenizer; _renderSpecial = renderSpecial; _stripLeadingSpace = stripLeadingSpace;
    }

    /// <summary>Adds one token; returns the text that is now complete (possibly empty).</summary>
    public string Append(int id)
    {
        var bytes = _tokenizer.PieceBytes(id, _renderSpecial);
        if (bytes.Length == 0) return "";
        if (_stripLeadingSpace)
        {
            _stripLeadingSpace = false;
            if (bytes[0] == (byte)' ') bytes = bytes[1..];
        }
        return DecodeBytes(bytes, flush: false);
    }

    /// <summary>Adds several tokens; returns the text that is now complete.</summary>
    public string Append(ReadOnlySpan<int> ids)
    {
        var sb = new StringBuilder();
        foreach (var id in ids) sb.Append(Append(id));
        return sb.ToString();
    }

    /// <summary>Ends the stream: bytes of an unfinished character come out as U+FFFD.</summary>
    public string Flush() => DecodeBytes([], flush: true);

    private string DecodeBytes(ReadOnlySpan<byte> bytes, bool flush)
    {
        int need = _utf8.GetCharCount(bytes, flush: false) + 4;
        if (_chars.Length < need) _chars = new char[Math.Max(need, _chars.Length * 2)];
        int n = _utf8.GetChars(bytes, _chars, flush);
        return n == 0 ? "" : new string(_chars, 0, n);
    }
}
