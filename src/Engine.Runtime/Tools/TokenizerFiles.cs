// Owns: loading a tokenizer from any file the engine reads (GGUF, tokenizer.json, llama2.c tokenizer/checkpoint,
// GPT-2 encoder.json / vocab.bpe, SentencePiece .model, rwkv.cpp model) for front ends (`engine tokenize`), without
// exposing Engine.Tokenizers' types.
namespace Engine.Runtime.Tools;

using Engine.Tokenizers;

/// <summary>A tokenizer loaded from a file: encode text, show a token's piece.</summary>
public sealed class FileTokenizer
{
    private readonly Tokenizer _tokenizer;

    private FileTokenizer(Tokenizer tokenizer) => _tokenizer = tokenizer;

    /// <summary>Loads the tokenizer of <paramref name="path"/> (throws on a bad or unsupported file).</summary>
    public static FileTokenizer Load(string path) => new(Tokenizer.Load(path));

    /// <summary>Token ids of <paramref name="text"/>.</summary>
    public int[] Encode(string text, bool addSpecial, bool parseSpecial) => _tokenizer.Encode(text, addSpecial, parseSpecial);

    /// <summary>The text piece token <paramref name="id"/> stands for (bytes decoded).</summary>
    public string TokenPiece(int id) => _tokenizer.TokenPiece(id);
}
