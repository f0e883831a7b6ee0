// A stand-in tokenizer for runtime tests that must not depend on Engine.Tokenizers: decodes id i to "<i>",
// encodes only strings of that form. EOS = 2, BOS = 1 (the tok512 convention).
namespace Engine.Runtime.Tests;

public sealed class TestTokenizer : ITextTokenizer
{
    public int VocabSize => 512;
    public int? BosId => 1;
    public IReadOnlySet<int> EndOfGenerationIds { get; } = new HashSet<int> { 2 };

    public int[] Encode(string text, bool addSpecial, bool parseSpecial)
    {
        var ids = new List<int>();
        if (addSpecial) ids.Add(1);
        foreach (var part in text.Split('<', StringSplitOptions.RemoveEmptyEntries))
            ids.Add(int.Parse(part.TrimEnd('>')));
        return ids.ToArray();
    }

    public IStreamingTextDecoder CreateStreamingDecoder(bool atTextStart) => new Decoder();

    public string? ApplyChatTemplate(IReadOnlyList<ChatMessage> messages) =>
        string.Concat(messages.Select(m => m.Content));   // contents are "<id>" strings in the tests

    private sealed class Decoder : IStreamingTextDecoder
    {
        public string Push(int tokenId) => $"<{tokenId}>";
        public string Flush() => "";
    }
}
