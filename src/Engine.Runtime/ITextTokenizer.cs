// Owns: what the runtime needs from a tokenizer — encode, streaming decode, special ids and chat formatting — so any
// tokenizer implementation plugs into InferenceEngine through one small adapter.
// Invariant: a streaming decoder never emits a partial UTF-8 sequence; Flush returns whatever is still buffered.
namespace Engine.Runtime;

/// <summary>Tokenizer as seen by the runtime.</summary>
public interface ITextTokenizer
{
    int VocabSize { get; }
    int? BosId { get; }
    /// <summary>Ids that end a generation (EOS, end-of-turn tokens).</summary>
    IReadOnlySet<int> EndOfGenerationIds { get; }

    /// <summary>Encodes text; <paramref name="addSpecial"/> adds the BOS the model expects; <paramref name="parseSpecial"/>
    /// turns special-token text (e.g. "&lt;|im_start|&gt;" from a chat template) into their ids.</summary>
    int[] Encode(string text, bool addSpecial, bool parseSpecial);

    /// <summary>A fresh incremental detokenizer for one generation stream. <paramref name="atTextStart"/>: the first
    /// token begins the text (no prompt text before it), so an SPM dummy-prefix space is dropped.</summary>
    IStreamingTextDecoder CreateStreamingDecoder(bool atTextStart);

    /// <summary>The model's chat template applied to <paramref name="messages"/> (with the assistant prompt opened);
    /// null when the model has no template the tokenizer understands.</summary>
    string? ApplyChatTemplate(IReadOnlyList<ChatMessage> messages);

    /// <summary>As <see cref="ApplyChatTemplate(IReadOnlyList{ChatMessage})"/> with tool definitions, the generation
    /// prompt switch and extra template variables. A template that refuses the conversation (or cannot show tools)
    /// throws Engine.Tokenizers.ChatTemplateException (an ArgumentException: the request is at fault).</summary>
    string? ApplyChatTemplate(IReadOnlyList<ChatMessage> messages, Engine.Tokenizers.ChatRenderOptions options) =>
        options.Tools is { Count: > 0 } || !options.AddGenerationPrompt || options.Variables is { Count: > 0 }
            ? throw new Engine.Tokenizers.ChatTemplateException("this tokenizer has no chat template that takes tools or options")
            : ApplyChatTemplate(messages);
}

/// <summary>Incremental detokenizer: returns only complete UTF-8 text.</summary>
public interface IStreamingTextDecoder
{
    string Push(int tokenId);
    string Flush();
}
