// Owns: reading OpenAI's original GPT-2 tokenizer files — encoder.json (byte-level token text → id) with vocab.bpe
// beside it (first line "#version: …", then one merge "left right" per line in rank order) — into a Vocabulary.
// Either file may be given; the other is looked up in the same folder.
// Invariants: ids are dense 0..n-1 (a gap or duplicate id is a ModelFormatException); "<|endoftext|>" is CONTROL
// and is BOS, EOS and end-of-generation (as in the GPT-2 GGUF conversion); pre-tokenizer "gpt-2"; no BOS added.
using System.Text;
using System.Text.Json;
using Engine.Formats;

namespace Engine.Tokenizers;

public static class Gpt2EncoderVocabulary
{
    public const string EncoderFileName = "encoder.json";
    public const string MergesFileName = "vocab.bpe";
    private const string EndOfText = "<|endoftext|>";

    /// <summary>The vocabulary of an encoder.json + vocab.bpe pair; <paramref name="path"/> is either of them.</summary>
    public static Vocabulary Load(string path)
    {
        string dir = Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".";
        bool isMerges = StartsWithVersionLine(path);
        string encoder = isMerges ? Path.Combine(dir, EncoderFileName) : path;
        string merges = isMerges ? path : Path.Combine(dir, MergesFileName);
        if (!File.Exists(encoder)) throw new ModelFormatException(path, -1, $"GPT-2 merges file without {EncoderFileName} beside it");
        if (!File.Exists(merges)) throw new ModelFormatException(path, -1, $"GPT-2 {EncoderFileName} without {MergesFileName} beside it");
        var tokens = ReadEncoder(encoder);
        var mergeList = ReadMerges(merges);

        var types = new TokenType[tokens.Length];
        Array.Fill(types, TokenType.Normal);
        int? eot = null;
        for (int i = 0; i < tokens.Length; i++)
            if (tokens[i] == EndOfText) { types[i] = TokenType.Control; eot = i; }
        return new Vocabulary
        {
            Model = TokenizerModel.ByteLevelBpe,
            Tokens = tokens,
            Types = types,
            Merges = mergeList,
            Bos = eot,
            Eos = eot,
            AddBos = false,
            AddSpacePrefix = false,
            PreTokenizer = "gpt-2",
            Source = encoder,
        };
    }

    /// <summary>Whether the file starts with "#version" (a vocab.bpe merges file).</summary>
    public static bool StartsWithVersionLine(string path)
    {
        using var s = File.OpenRead(path);
        Span<byte> head = stackalloc byte[11];
        int n = s.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        var h = head[..n];
        if (h.StartsWith("\uFEFF"u8)) h = h[3..];
        return h.StartsWith("#version"u8);
    }

    /// <summary>Whether a JSON file is a plain token → id object (no "model" key; the first value is a number).</summary>
    public static bool LooksLikeEncoderJson(string path)
    {
        using var s = File.OpenRead(path);
        var buffer = new byte[64 * 1024];
        int n = s.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false);
        try
        {
            var r = new Utf8JsonReader(buffer.AsSpan(0, n), isFinalBlock: n < buffer.Length, default);
            if (!r.Read() || r.TokenType != JsonTokenType.StartObject) return false;
            if (!r.Read() || r.TokenType != JsonTokenType.PropertyName || r.ValueTextEquals("model"u8)) return false;
            return r.Read() && r.TokenType == JsonTokenType.Number;
        }
        catch (JsonException) { return false; }
    }

    private static string[] ReadEncoder(string path)
    {
        try
        {
            var bytes = File.ReadAllBytes(path);
            var r = new Utf8JsonReader(bytes, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip });
            if (!r.Read() || r.TokenType != JsonTokenType.StartObject) throw new ModelFormatException(path, 0, "encoder.json is not a JSON object");
            var byId = new Dictionary<int, string>();
            while (r.Read() && r.TokenType == JsonTokenType.PropertyName)
            {
                string text = r.GetString()!;
                if (!r.Read() || r.TokenType != JsonTokenType.Number || !r.TryGetInt32(out int id) || id < 0)
                    throw new ModelFormatException(path, r.TokenStartIndex, $"encoder.json: the id of '{text}' is not a non-negative integer");
                if (!byId.TryAdd(id, text)) throw new ModelFormatException(path, r.TokenStartIndex, $"encoder.json: id {id} is used twice");
            }
            if (r.TokenType != JsonTokenType.EndObject) throw new ModelFormatException(path, r.TokenStartIndex, "encoder.json: expected token → id pairs");
            if (byId.Count == 0) throw new ModelFormatException(path, -1, "encoder.json is empty");
            var tokens = new string[byId.Count];
            foreach (var (id, text) in byId)
            {
                if (id >= tokens.Length) throw new ModelFormatException(path, -1, $"encoder.json: ids are not dense (id {id} with {tokens.Length} tokens)");
                tokens[id] = text;
            }
            return tokens;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new ModelFormatException(path, -1, $"malformed encoder.json: {e.Message}", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException(path, -1, $"cannot read encoder.json: {e.Message}", e);
        }
    }

    private static string[] ReadMerges(string path)
    {
        string text;
        try { text = new UTF8Encoding(false, true).GetString(File.ReadAllBytes(path)); }
        catch (DecoderFallbackException e) { throw new ModelFormatException(path, -1, "vocab.bpe is not valid UTF-8", e); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException(path, -1, $"cannot read vocab.bpe: {e.Message}", e);
        }
        var merges = new List<string>();
        var lines = text.TrimStart('\uFEFF').Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            var line = lines[i].TrimEnd('\r');
            if (i == 0 && line.StartsWith("#version", StringComparison.Ordinal)) continue;
            if (line.Length == 0) continue;
            int space = line.IndexOf(' ');
            if (space <= 0 || space == line.Length - 1 || line.IndexOf(' ', space + 1) >= 0)
                throw new ModelFormatException(path, -1, $"vocab.bpe line {i + 1} is not a merge \"left right\"");
            merges.Add(line);
        }
        return merges.ToArray();
    }
}
