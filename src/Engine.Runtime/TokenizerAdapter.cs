// Owns: plugging Engine.Tokenizers.Tokenizer into the runtime's ITextTokenizer (encode, streaming decode, EOG ids,
// chat formatting via ChatFormats).
using Engine.Formats;
using Engine.Tokenizers;

namespace Engine.Runtime;

public sealed class TokenizerAdapter : ITextTokenizer
{
    public TokenizerAdapter(Tokenizer tokenizer)
    {
        Tokenizer = tokenizer;
        EndOfGenerationIds = new HashSet<int>(tokenizer.EogIds);
    }

    /// <summary>The tokenizer described by <paramref name="file"/>'s metadata, or null when it has none.</summary>
    public static ITextTokenizer? FromModelFile(ModelFile file)
    {
        if (!file.Metadata.ContainsKey(TokenizerKeys.Tokens) && file.GetString(TokenizerKeys.TokenizerJsonPath) == null)
            return file.Architecture is { } a && a.StartsWith("rwkv", StringComparison.Ordinal)
                && file.GetInteger($"{a}.vocab_size") == 256 ? new ByteTokenizer() : null; // rwkv.cpp files: byte-level vocabulary
        return new TokenizerAdapter(Tokenizer.FromModelFile(file));
    }

    public Tokenizer Tokenizer { get; }
    public int VocabSize => Tokenizer.VocabSize;
    public int? BosId => Tokenizer.Bos;
    public IReadOnlySet<int> EndOfGenerationIds { get; }

    public int[] Encode(string text, bool addSpecial, bool parseSpecial) => Tokenizer.Encode(text, addSpecial, parseSpecial);

    public IStreamingTextDecoder CreateStreamingDecoder(bool atTextStart) => new Decoder(Tokenizer.CreateDecoder(renderSpecial: false, atTextStart));

    public string? ApplyChatTemplate(IReadOnlyList<ChatMessage> messages) =>
        ChatFormats.Apply(Tokenizer.Vocabulary.ChatTemplate, messages, Tokenizer.Bos is int b ? Tokenizer.TokenText(b) : null);

    private sealed class Decoder(StreamingDecoder inner) : IStreamingTextDecoder
    {
        public string Push(int tokenId) => inner.Append(tokenId);
        public string Flush() => inner.Flush();
    }
}
