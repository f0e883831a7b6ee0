// Owns: the byte-level tokenizer of the tiny RWKV models (and any model whose vocabulary is exactly the 256 byte
// values): token id = UTF-8 byte value, no special tokens, no BOS/EOS, no chat template.
// Invariant: Encode(text) is the UTF-8 bytes of text; the streaming decoder emits only complete UTF-8 sequences
// (an invalid byte sequence decodes to U+FFFD, as Encoding.UTF8 does).
using System.Text;

namespace Engine.Runtime;

/// <summary>Token id = byte value (vocabulary of 256).</summary>
public sealed class ByteTokenizer : ITextTokenizer
{
    public int VocabSize => 256;
    public int? BosId => null;
    public IReadOnlySet<int> EndOfGenerationIds { get; } = new HashSet<int>();

    public int[] Encode(string text, bool addSpecial, bool parseSpecial)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var ids = new int[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) ids[i] = bytes[i];
        return ids;
    }

    public IStreamingTextDecoder CreateStreamingDecoder(bool atTextStart) => new Decoder();

    public string? ApplyChatTemplate(IReadOnlyList<ChatMessage> messages) => null;

    private sealed class Decoder : IStreamingTextDecoder
    {
        private readonly System.Text.Decoder _utf8 = new UTF8Encoding(false, false).GetDecoder();
        private readonly char[] _chars = new char[4];

        public string Push(int tokenId)
        {
            if ((uint)tokenId > 255) throw new ArgumentOutOfRangeException(nameof(tokenId), $"byte token id {tokenId} is outside 0..255");
            ReadOnlySpan<byte> one = [(byte)tokenId];
            int n = _utf8.GetChars(one, _chars, flush: false);
            return n == 0 ? "" : new string(_chars, 0, n);
        }

        public string Flush()
        {
            int n = _utf8.GetChars(ReadOnlySpan<byte>.Empty, _chars, flush: true);
            return n == 0 ? "" : new string(_chars, 0, n);
        }
    }
}
