// Owns: reading llama2.c tokenizer files (tok512.bin, tokenizer.bin) as GGUF-style SPM tokenizer metadata.
// Format (llama2.c tokenizer.py export): int32 max_token_length, then until EOF per token: float32 score,
// int32 byte length, UTF-8 bytes. SentencePiece's "▁" was exported as an ASCII space and BOS/EOS as "\n<s>\n",
// "\n</s>\n"; byte tokens are stored as the text "<0xNN>" (both tok512.bin and the Llama 2 tokenizer.bin); a file that
// stores them as raw bytes (detected by id 3 being the single byte 0x00; id 3 + b holds byte b) is mapped to "<0xNN>" too.
// Output (as llama.cpp's converters write it, reference README section A): spaces → U+2581, "<s>"/"</s>" CONTROL,
// "<unk>" UNKNOWN, "<0xNN>" BYTE, the rest NORMAL; scores as-is; bos 1, eos 2, unk 0; add_bos true, add_eos false.
// Invariants: every length is checked before use (ModelFormatException on any violation); the vocabulary is copied
// into managed arrays, so the ModelFile owns no native memory.
using Engine.Tensors;

namespace Engine.Formats.Llama2c;

public static unsafe class Llama2cTokenizerReader
{
    /// <summary>Largest max_token_length accepted (real files: 7 for tok512, 27 for Llama 2).</summary>
    public const int MaxTokenLengthLimit = 1 << 16;

    /// <summary>Reads a llama2.c tokenizer file into a ModelFile with tokenizer metadata only (no tensors).</summary>
    public static ModelFile Read(string path)
    {
        using var map = OpenMapped(path);
        return new ModelFile(path, ModelFileFormat.Llama2c, ReadMetadata(path, map.Pointer, map.Length), [], null);
    }

    /// <summary>Reads tokenizer bytes held in memory.</summary>
    public static ModelFile Read(ReadOnlySpan<byte> bytes, string name = "<memory>")
    {
        fixed (byte* p = bytes)
            return new ModelFile(name, ModelFileFormat.Llama2c, ReadMetadata(name, p, bytes.Length), [], null);
    }

    /// <summary>The GGUF tokenizer metadata of a llama2.c tokenizer file.</summary>
    public static Dictionary<string, object> ReadMetadata(string path)
    {
        using var map = OpenMapped(path);
        return ReadMetadata(path, map.Pointer, map.Length);
    }

    internal static MappedFile OpenMapped(string path)
    {
        try { return MappedFile.Open(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException(path, -1, $"cannot open: {e.Message}", e);
        }
    }

    /// <summary>True when the bytes walk exactly as a llama2.c tokenizer file (used for format detection).</summary>
    internal static bool LooksLikeTokenizer(byte* p, long length)
    {
        try
        {
            ReadMetadata("<probe>", p, length);
            return true;
        }
        catch (ModelFormatException)
        {
            return false;
        }
    }

    internal static Dictionary<string, object> ReadMetadata(string file, byte* p, long length)
    {
        var c = new ByteCursor(file, p, length);
        int maxLen = c.I32("max_token_length");
        if (maxLen <= 0 || maxLen > MaxTokenLengthLimit)
            throw c.Error($"max_token_length is {maxLen}, expected 1..{MaxTokenLengthLimit}", 0);
        var tokens = new List<string>();
        var scores = new List<float>();
        bool rawBytes = false; // token 3 is the single byte 0x00: ids 3..258 hold raw bytes
        while (c.Remaining > 0)
        {
            long at = c.Position;
            float score = c.F32($"score of token {tokens.Count}");
            if (!float.IsFinite(score)) throw c.Error($"token {tokens.Count} has a non-finite score {score}", at);
            long lenAt = c.Position;
            int len = c.I32($"length of token {tokens.Count}");
            if (len < 0 || len > maxLen)
                throw c.Error($"token {tokens.Count} has length {len}, expected 0..{maxLen} (max_token_length)", lenAt);
            // Some exports store byte-fallback tokens 3..258 as the raw byte itself instead of the text "<0xNN>".
            int id = tokens.Count;
            if (id == 3) rawBytes = len == 1 && c.Base[c.Position] == 0;
            if (rawBytes && len == 1 && id is >= 3 and <= 258 && c.Base[c.Position] == id - 3)
            {
                tokens.Add($"<0x{id - 3:X2}>");
                c.Position += 1;
            }
            else tokens.Add(c.Utf8String(len, $"token {id}"));
            scores.Add(score);
        }
        // Ids 0, 1, 2 are unk, BOS and EOS in the metadata below, so a vocabulary needs at least three tokens.
        if (tokens.Count < 3) throw c.Error($"the tokenizer holds {tokens.Count} tokens; at least 3 (<unk>, <s>, </s>) are required");
        return BuildMetadata(tokens, scores);
    }

    /// <summary>Maps llama2.c token texts and scores to GGUF SPM tokenizer metadata (reference README section A).</summary>
    public static Dictionary<string, object> BuildMetadata(IReadOnlyList<string> rawTokens, IReadOnlyList<float> scores)
    {
        int n = rawTokens.Count;
        var tokens = new string[n];
        var types = new int[n];
        for (int i = 0; i < n; i++)
        {
            string t = rawTokens[i] switch { "\n<s>\n" => "<s>", "\n</s>\n" => "</s>", var s => s };
            tokens[i] = t.Replace(' ', '\u2581');
            types[i] = (int)(tokens[i] switch
            {
                "<unk>" => TokenType.Unknown,
                "<s>" or "</s>" => TokenType.Control,
                _ when IsByteToken(tokens[i]) => TokenType.Byte,
                _ => TokenType.Normal,
            });
        }
        return new Dictionary<string, object>(StringComparer.Ordinal)
        {
            [TokenizerKeys.Model] = "llama",
            [TokenizerKeys.Tokens] = tokens,
            [TokenizerKeys.Scores] = scores.ToArray(),
            [TokenizerKeys.TokenType] = types,
            [TokenizerKeys.BosId] = 1u,
            [TokenizerKeys.EosId] = 2u,
            [TokenizerKeys.UnkId] = 0u,
            [TokenizerKeys.AddBos] = true,
            [TokenizerKeys.AddEos] = false,
        };
    }

    /// <summary>"&lt;0xNN&gt;" with two upper-case hex digits, as SentencePiece names its byte-fallback pieces.</summary>
    public static bool IsByteToken(string t) =>
        t.Length == 6 && t.StartsWith("<0x", StringComparison.Ordinal) && t[5] == '>' && IsHex(t[3]) && IsHex(t[4]);

    private static bool IsHex(char ch) => ch is >= '0' and <= '9' or >= 'A' and <= 'F';
}
