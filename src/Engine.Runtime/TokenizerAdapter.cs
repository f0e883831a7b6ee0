// Owns: plugging Engine.Tokenizers.Tokenizer into the runtime's ITextTokenizer (encode, streaming decode, EOG ids,
// chat formatting via Engine.Tokenizers.ChatTemplate, which executes the model's Jinja template). A model without a
// template gets the tokenizer's Plain format (contents concatenated, so a base model continues the text); a template
// that can be neither executed nor recognised yields null and the runtime falls back to its "role: text" transcript
// (the reason is kept in ChatTemplateProblem).
using Engine.Formats;
using Engine.Tokenizers;

namespace Engine.Runtime;

public sealed class TokenizerAdapter : ITextTokenizer
{
    public TokenizerAdapter(Tokenizer tokenizer)
    {
        Tokenizer = tokenizer;
        EndOfGenerationIds = new HashSet<int>(tokenizer.EogIds);
        if (tokenizer.Vocabulary.Model == TokenizerModel.Bytes && tokenizer.Vocabulary.ChatTemplate == null)
            ChatTemplateProblem = "a byte-level vocabulary has no chat template";   // rwkv.cpp files: the "role: text" transcript
        else
            try { ChatTemplate = Engine.Tokenizers.ChatTemplate.FromTokenizer(tokenizer); }
            catch (ModelFormatException e) { ChatTemplateProblem = e.Message; }
    }

    /// <summary>The model's chat template (executed Jinja, or its family's built-in format); null when unusable.</summary>
    public ChatTemplate? ChatTemplate { get; }
    public string? ChatTemplateProblem { get; }

    /// <summary>The tokenizer described by <paramref name="file"/>'s metadata, or null when it has none.</summary>
    public static ITextTokenizer? FromModelFile(ModelFile file)
    {
        if (!file.Metadata.ContainsKey(TokenizerKeys.Tokens) && file.GetString(TokenizerKeys.TokenizerJsonPath) == null)
            return file.Architecture is { } a && a.StartsWith("rwkv", StringComparison.Ordinal)
                && file.GetInteger($"{a}.vocab_size") == 256 ? new TokenizerAdapter(new ByteTokenizer(file.Path)) : null; // rwkv.cpp files: byte-level vocabulary
        return new TokenizerAdapter(Tokenizer.FromModelFile(file));
    }

    public Tokenizer Tokenizer { get; }
    public int VocabSize => Tokenizer.VocabSize;
    public int? BosId => Tokenizer.Bos;
    public IReadOnlySet<int> EndOfGenerationIds { get; }

    public int[] Encode(string text, bool addSpecial, bool parseSpecial) => Tokenizer.Encode(text, addSpecial, parseSpecial);

    public IStreamingTextDecoder CreateStreamingDecoder(bool atTextStart) => new Decoder(Tokenizer.CreateDecoder(renderSpecial: false, atTextStart));

    public string? ApplyChatTemplate(IReadOnlyList<ChatMessage> messages) => ApplyChatTemplate(messages, new ChatRenderOptions());

    public string? ApplyChatTemplate(IReadOnlyList<ChatMessage> messages, ChatRenderOptions options) =>
        ChatTemplate == null
            ? (options.Tools is { Count: > 0 } ? throw new ChatTemplateException($"this model has no chat template that can present tools ({ChatTemplateProblem})") : null)
            : ChatTemplate.Render(messages.Select(m => new ChatTurn(m.Role, m.Content)
            { ToolCalls = m.ToolCalls, ToolCallId = m.ToolCallId, Name = m.Name }).ToList(), options);

    private sealed class Decoder(StreamingDecoder inner) : IStreamingTextDecoder
    {
        public string Push(int tokenId) => inner.Append(tokenId);
        public string Flush() => inner.Flush();
    }
}
