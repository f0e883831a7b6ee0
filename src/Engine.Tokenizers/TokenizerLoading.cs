// Owns: building a Tokenizer from any source — a Vocabulary, a ModelFile's tokenizer metadata, a Hugging Face
// tokenizer.json, or a path (GGUF, llama2.c tokenizer.bin / checkpoint, tokenizer.json, or a folder holding one,
// GPT-2 encoder.json / vocab.bpe, SentencePiece tokenizer.model, rwkv.cpp model → byte tokenizer).
// Invariant: bad or unsupported files raise ModelFormatException naming the file and the problem.
using Engine.Formats;

namespace Engine.Tokenizers;

public abstract partial class Tokenizer
{
    /// <summary>The tokenizer for a vocabulary description (SPM or byte-level BPE by <see cref="Vocabulary.Model"/>).</summary>
    public static Tokenizer FromVocabulary(Vocabulary vocabulary) => vocabulary.Model switch
    {
        TokenizerModel.SentencePiece => new SentencePieceTokenizer(vocabulary),
        TokenizerModel.ByteLevelBpe => new ByteLevelBpeTokenizer(vocabulary),
        TokenizerModel.Bytes => new ByteTokenizer(vocabulary.Source),
        _ => throw new ArgumentOutOfRangeException(nameof(vocabulary)),
    };

    /// <summary>The tokenizer described by a model file's `tokenizer.ggml.*` metadata (or the tokenizer.json it points to).</summary>
    public static Tokenizer FromModelFile(ModelFile file)
    {
        if (file.GetString(TokenizerKeys.Model) == null && file.GetString(TokenizerKeys.TokenizerJsonPath) is string json)
            return FromTokenizerJson(json);
        if (file.GetString(TokenizerKeys.Model) == null && !file.Metadata.ContainsKey(TokenizerKeys.Tokens)
            && file.Architecture is { } arch && arch.StartsWith("rwkv", StringComparison.Ordinal)
            && file.GetInteger($"{arch}.vocab_size") is null or 256)
            return new ByteTokenizer(file.Path); // rwkv.cpp files: byte-level vocabulary, no tokenizer metadata
        return Build(GgufVocabulary.FromModelFile(file), file.Path);
    }

    /// <summary>The tokenizer of a Hugging Face tokenizer.json (tokenizer_config.json beside it is read too).</summary>
    public static Tokenizer FromTokenizerJson(string path) => Build(TokenizerJsonVocabulary.Load(path), path);

    /// <summary>Loads a tokenizer from a GGUF, a tokenizer.json, a llama2.c tokenizer or checkpoint, a folder with a tokenizer.json,
    /// GPT-2 encoder.json or vocab.bpe, a SentencePiece .model, or an rwkv.cpp model (byte vocabulary).</summary>
    public static Tokenizer Load(string path)
    {
        if (Directory.Exists(path))
        {
            var json = Path.Combine(path, "tokenizer.json");
            if (File.Exists(json)) return FromTokenizerJson(json);
            throw new ModelFormatException(path, -1, "folder holds no tokenizer.json");
        }
        if (!File.Exists(path)) throw new ModelFormatException(path, -1, "file not found");
        if (string.Equals(Path.GetFileName(path), "tokenizer_config.json", StringComparison.OrdinalIgnoreCase)
            && Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".", "tokenizer.json") is var beside && File.Exists(beside))
            return FromTokenizerJson(beside); // the config alone describes no vocabulary; use the tokenizer.json it belongs to
        if (LooksLikeJson(path))
            return Gpt2EncoderVocabulary.LooksLikeEncoderJson(path) ? Build(Gpt2EncoderVocabulary.Load(path), path) : FromTokenizerJson(path);
        if (Gpt2EncoderVocabulary.StartsWithVersionLine(path)) return Build(Gpt2EncoderVocabulary.Load(path), path);
        if (ModelFiles.DetectKind(path) == "sentencepiece-model") return Build(SentencePieceModelVocabulary.Load(path), path);
        using var file = ModelFiles.Open(path);
        return FromModelFile(file);
    }

    private static Tokenizer Build(Vocabulary vocabulary, string path)
    {
        try { return FromVocabulary(vocabulary); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException)
        {
            throw new ModelFormatException(path, -1, e.Message, e);
        }
    }

    private static bool LooksLikeJson(string path)
    {
        using var s = File.OpenRead(path);
        Span<byte> head = stackalloc byte[16];
        int n = s.Read(head);
        foreach (var b in head[..n])
        {
            if (b is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n' or 0xEF or 0xBB or 0xBF) continue;
            return b == (byte)'{';
        }
        return false;
    }
}
