// Owns: mapping a Hugging Face tokenizer.json (+ the tokenizer_config.json beside it) to a Vocabulary.
// Supported: model.type "BPE" with a ByteLevel pre-tokenizer or decoder (GPT-2, Llama 3, Qwen, ...);
// pre_tokenizer Split(Regex, Isolated) / Digits / ByteLevel(use_regex) steps become the split regex sequence.
// SentencePiece-style BPE (Llama 2 / Mistral / TinyLlama: Metaspace or Prepend+Replace "▁", byte_fallback) maps to
// the SPM tokenizer: a token's score is minus the lowest rank of a merge producing it (HF's converter orders
// merges by SentencePiece score, so the order is preserved); "<0xNN>" tokens are BYTE; a "▁" prefix is added
// when the normalizer prepends "▁" or the Metaspace pre-tokenizer's prepend_scheme is not "never".
// added_tokens: special → CONTROL, otherwise USER_DEFINED, with their lstrip/rstrip flags.
// Not supported (clear error): other model types, SentencePiece-style BPE (Metaspace + byte_fallback).
// The NFC normalizer (Qwen) is not applied, as llama.cpp does not apply it.
// BOS/EOS/add_bos_token/chat_template come from tokenizer_config.json when present; add_bos defaults to
// "has a BOS token".
using System.Text.Json;
using Engine.Formats;

namespace Engine.Tokenizers;

public static class TokenizerJsonVocabulary
{
    private const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    public static Vocabulary Load(string path)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException(path, -1, $"cannot read tokenizer.json: {e.Message}", e);
        }
        RawJson raw;
        try { raw = ReadRaw(bytes); }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            throw new ModelFormatException(path, -1, $"malformed tokenizer.json: {e.Message}", e);
        }
        try { return FromRaw(path, raw, ReadConfig(path)); }
        catch (Exception e) when (e is InvalidOperationException or KeyNotFoundException or FormatException)
        {
            throw new ModelFormatException(path, -1, $"malformed tokenizer.json: {e.Message}", e);
        }
        finally { raw.Dispose(); }
    }

    /// <summary>The parts of tokenizer.json we use. The large vocab/merges are streamed (no DOM); the small
    /// sections are kept as JSON elements.</summary>
    private sealed class RawJson : IDisposable
    {
        public string ModelType = "BPE";
        public bool IgnoreMerges;
        public bool VocabIsNotAnObject;
        public bool ByteFallback;
        public string? UnkToken;
        public List<(string Text, int Id)> Vocab = new();
        public List<string> Merges = new();
        public JsonDocument? AddedTokens, PreTokenizer, Decoder, Normalizer;
        public void Dispose() { AddedTokens?.Dispose(); PreTokenizer?.Dispose(); Decoder?.Dispose(); Normalizer?.Dispose(); }
    }

    private static RawJson ReadRaw(byte[] bytes)
    {
        var raw = new RawJson();
        var r = new Utf8JsonReader(bytes, new JsonReaderOptions { MaxDepth = 256, CommentHandling = JsonCommentHandling.Skip });
        Expect(ref r, JsonTokenType.StartObject);
        while (Next(ref r) == JsonTokenType.PropertyName)
        {
            string name = r.GetString()!;
            r.Read();
            switch (name)
            {
                case "model": ReadModel(ref r, raw); break;
                case "added_tokens": raw.AddedTokens = JsonDocument.ParseValue(ref r); break;
                case "pre_tokenizer": raw.PreTokenizer = JsonDocument.ParseValue(ref r); break;
                case "decoder": raw.Decoder = JsonDocument.ParseValue(ref r); break;
                case "normalizer": raw.Normalizer = JsonDocument.ParseValue(ref r); break;
                default: r.Skip(); break;
            }
        }
        return raw;
    }

    private static void ReadModel(ref Utf8JsonReader r, RawJson raw)
    {
        if (r.TokenType != JsonTokenType.StartObject) throw new FormatException("'model' is not an object");
        while (Next(ref r) == JsonTokenType.PropertyName)
        {
            string name = r.GetString()!;
            r.Read();
            switch (name)
            {
                case "type": raw.ModelType = r.GetString() ?? ""; break;
                case "ignore_merges": raw.IgnoreMerges = r.TokenType == JsonTokenType.True; break;
                case "byte_fallback": raw.ByteFallback = r.TokenType == JsonTokenType.True; break;
                case "unk_token": raw.UnkToken = r.TokenType == JsonTokenType.String ? r.GetString() : null; break;
                case "vocab":
                    if (r.TokenType != JsonTokenType.StartObject) { raw.VocabIsNotAnObject = true; r.Skip(); break; }
                    while (Next(ref r) == JsonTokenType.PropertyName)
                    {
                        string text = r.GetString()!;
                        r.Read();
                        raw.Vocab.Add((text, r.GetInt32()));
                    }
                    break;
                case "merges":
                    if (r.TokenType != JsonTokenType.StartArray) throw new FormatException("'model.merges' is not an array");
                    while (Next(ref r) != JsonTokenType.EndArray)
                    {
                        if (r.TokenType == JsonTokenType.String) { raw.Merges.Add(r.GetString()!); continue; }
                        if (r.TokenType != JsonTokenType.StartArray) throw new FormatException("a merge is neither \"a b\" nor [a, b]");
                        Next(ref r); string left = r.GetString()!;
                        Next(ref r); string right = r.GetString()!;
                        if (Next(ref r) != JsonTokenType.EndArray) throw new FormatException("a merge pair has more than two parts");
                        raw.Merges.Add(left + " " + right);
                    }
                    break;
                default: r.Skip(); break;
            }
        }
    }

    private static JsonTokenType Next(ref Utf8JsonReader r)
    {
        if (!r.Read()) throw new FormatException("unexpected end of JSON");
        return r.TokenType;
    }

    private static void Expect(ref Utf8JsonReader r, JsonTokenType type)
    {
        if (Next(ref r) != type) throw new FormatException($"expected {type}, found {r.TokenType}");
    }

    private sealed record Config(string? Bos, string? Eos, bool? AddBos, bool? AddEos, string? ChatTemplate);

    private static Config? ReadConfig(string tokenizerJsonPath)
    {
        var p = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(tokenizerJsonPath)) ?? ".", "tokenizer_config.json");
        if (!File.Exists(p)) return null;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(p));
            var r = doc.RootElement;
            static string? TokenText(JsonElement r, string name) => r.TryGetProperty(name, out var v) ? v.ValueKind switch
            {
                JsonValueKind.String => v.GetString(),
                JsonValueKind.Object when v.TryGetProperty("content", out var c) => c.GetString(),
                _ => null,
            } : null;
            static bool? Bool(JsonElement r, string name) => r.TryGetProperty(name, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : null;
            string? template = null;
            if (r.TryGetProperty("chat_template", out var ct))
            {
                if (ct.ValueKind == JsonValueKind.String) template = ct.GetString();
                else if (ct.ValueKind == JsonValueKind.Array)
                    foreach (var e in ct.EnumerateArray())
                        if (e.TryGetProperty("name", out var n) && n.GetString() == "default") template = e.GetProperty("template").GetString();
            }
            return new Config(TokenText(r, "bos_token"), TokenText(r, "eos_token"), Bool(r, "add_bos_token"), Bool(r, "add_eos_token"), template);
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(p, -1, $"malformed tokenizer_config.json: {e.Message}", e);
        }
    }

    private static Vocabulary FromRaw(string path, RawJson raw, Config? config)
    {
        if (raw.ModelType != "BPE") throw new ModelFormatException(path, -1, $"tokenizer.json model type '{raw.ModelType}' is not supported (only BPE: byte-level or SentencePiece-style)");
        if (raw.VocabIsNotAnObject) throw new ModelFormatException(path, -1, "'model.vocab' is not an object");
        var pre = raw.PreTokenizer?.RootElement ?? default;
        var dec = raw.Decoder?.RootElement ?? default;
        var norm = raw.Normalizer?.RootElement ?? default;
        bool byteLevel = MentionsByteLevel(pre) || MentionsByteLevel(dec);
        bool sentencePiece = !byteLevel && (raw.ByteFallback || Mentions(pre, "Metaspace") || Mentions(norm, "\u2581") || Mentions(norm, "▁"));
        if (!byteLevel && !sentencePiece)
            throw new ModelFormatException(path, -1, "tokenizer.json BPE is neither byte-level (ByteLevel) nor SentencePiece-style (Metaspace / byte_fallback); not supported");

        // Vocabulary: model.vocab (text → id) plus added_tokens (id, content, special, lstrip, rstrip).
        var added = new List<(int Id, string Text, bool Special, bool L, bool R)>();
        if (raw.AddedTokens?.RootElement is { ValueKind: JsonValueKind.Array } at)
            foreach (var a in at.EnumerateArray())
                added.Add((a.GetProperty("id").GetInt32(), a.GetProperty("content").GetString() ?? "", Flag(a, "special"), Flag(a, "lstrip"), Flag(a, "rstrip")));
        if (raw.Vocab.Count + added.Count == 0) throw new ModelFormatException(path, -1, "tokenizer.json has an empty vocabulary");
        int count = 0, minId = 0;
        foreach (var (_, id) in raw.Vocab) { count = Math.Max(count, id + 1); minId = Math.Min(minId, id); }
        foreach (var a in added) { count = Math.Max(count, a.Id + 1); minId = Math.Min(minId, a.Id); }
        if (minId < 0 || count > 10_000_000) throw new ModelFormatException(path, -1, "token ids out of range");
        var tokens = new string[count];
        var types = new TokenType[count];
        foreach (var (text, id) in raw.Vocab) { tokens[id] = text; types[id] = TokenType.Normal; }
        foreach (var a in added) { tokens[a.Id] = a.Text; types[a.Id] = a.Special ? TokenType.Control : TokenType.UserDefined; }
        for (int i = 0; i < count; i++)
            if (tokens[i] == null) { tokens[i] = $"[PAD{i}]"; types[i] = TokenType.Unused; }
        var lstrip = added.Where(a => a.L).Select(a => a.Id).ToHashSet();
        var rstrip = added.Where(a => a.R).Select(a => a.Id).ToHashSet();
        var merges = raw.Merges.ToArray();

        int? Find(string? text)
        {
            if (text == null) return null;
            for (int i = 0; i < tokens.Length; i++) if (tokens[i] == text) return i;
            return null;
        }
        int? bos = Find(config?.Bos), eos = Find(config?.Eos);
        if (sentencePiece)
        {
            int? unk = Find(raw.UnkToken);
            if (unk is int u) types[u] = TokenType.Unknown;
            return new Vocabulary
            {
                Model = TokenizerModel.SentencePiece,
                Tokens = tokens,
                Types = types.Select((t, i) => t == TokenType.Normal && SentencePieceTokenizer.TryParseByteToken(tokens[i], out _) ? TokenType.Byte : t).ToArray(),
                Scores = ScoresFromMerges(tokens, merges),
                Bos = bos,
                Eos = eos,
                Unk = unk,
                AddBos = bos != null && (config?.AddBos ?? true),
                AddEos = eos != null && (config?.AddEos ?? false),
                AddSpacePrefix = AddsSpacePrefix(pre, norm),
                LStrip = lstrip,
                RStrip = rstrip,
                ChatTemplate = config?.ChatTemplate,
                Source = path,
            };
        }

        var patterns = new List<string>();
        CollectPatterns(path, pre, patterns);
        if (patterns.Count == 0) patterns.Add(Gpt2Pattern); // ByteLevel only in the decoder: GPT-2 split
        return new Vocabulary
        {
            Model = TokenizerModel.ByteLevelBpe,
            Tokens = tokens,
            Types = types,
            Merges = merges,
            Bos = bos,
            Eos = eos,
            AddBos = bos != null && (config?.AddBos ?? true),
            AddEos = eos != null && (config?.AddEos ?? false),
            AddSpacePrefix = false,
            IgnoreMerges = raw.IgnoreMerges,
            PreTokenizerPatterns = patterns,
            LStrip = lstrip,
            RStrip = rstrip,
            ChatTemplate = config?.ChatTemplate,
            Source = path,
        };
    }

    /// <summary>SPM scores from BPE merge ranks: score(token) = −(lowest rank of a merge whose result is the token);
    /// tokens no merge produces get −1e9 (single characters, specials — never a merge candidate anyway).</summary>
    private static float[] ScoresFromMerges(string[] tokens, string[] merges)
    {
        var ids = new Dictionary<string, int>(tokens.Length, StringComparer.Ordinal);
        for (int i = 0; i < tokens.Length; i++) ids[tokens[i]] = i;
        var scores = new float[tokens.Length];
        Array.Fill(scores, -1e9f);
        for (int rank = merges.Length - 1; rank >= 0; rank--)
        {
            int space = merges[rank].IndexOf(' ', 1);
            if (space < 0) continue;
            if (ids.TryGetValue(string.Concat(merges[rank].AsSpan(0, space), merges[rank].AsSpan(space + 1)), out var id)) scores[id] = -rank;
        }
        return scores;
    }

    /// <summary>True when the normalizer prepends "▁" or a Metaspace pre-tokenizer adds a prefix space.</summary>
    private static bool AddsSpacePrefix(JsonElement pre, JsonElement norm)
    {
        if (Mentions(norm, "\"Prepend\"")) return true;
        if (!Mentions(pre, "\"Metaspace\"")) return false;
        var text = pre.GetRawText();
        return !text.Contains("\"never\"", StringComparison.Ordinal) && !text.Contains("\"add_prefix_space\":false", StringComparison.Ordinal)
            && !text.Contains("\"add_prefix_space\": false", StringComparison.Ordinal);
    }

    private static bool Mentions(JsonElement e, string text) => e.ValueKind == JsonValueKind.Object && e.GetRawText().Contains(text, StringComparison.Ordinal);

    private static bool Flag(JsonElement e, string name) => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.True;

    private static bool MentionsByteLevel(JsonElement e) => e.ValueKind == JsonValueKind.Object && e.GetRawText().Contains("\"ByteLevel\"", StringComparison.Ordinal);

    private static void CollectPatterns(string path, JsonElement pre, List<string> patterns)
    {
        if (pre.ValueKind != JsonValueKind.Object) return;
        string type = pre.GetProperty("type").GetString() ?? "";
        switch (type)
        {
            case "Sequence":
                foreach (var step in pre.GetProperty("pretokenizers").EnumerateArray()) CollectPatterns(path, step, patterns);
                break;
            case "Split":
                var pattern = pre.GetProperty("pattern");
                string behavior = pre.TryGetProperty("behavior", out var b) ? b.GetString() ?? "" : "Isolated";
                if (behavior != "Isolated" || Flag(pre, "invert"))
                    throw new ModelFormatException(path, -1, $"Split pre-tokenizer with behavior '{behavior}'/invert is not supported (only Isolated)");
                if (pattern.TryGetProperty("Regex", out var rx)) patterns.Add(rx.GetString() ?? "");
                else if (pattern.TryGetProperty("String", out var s)) patterns.Add(System.Text.RegularExpressions.Regex.Escape(s.GetString() ?? ""));
                break;
            case "Digits":
                patterns.Add(Flag(pre, "individual_digits") ? @"\p{N}" : @"\p{N}+");
                break;
            case "ByteLevel":
                if (!pre.TryGetProperty("use_regex", out var ur) || ur.ValueKind == JsonValueKind.True) patterns.Add(Gpt2Pattern);
                break;
            default:
                throw new ModelFormatException(path, -1, $"pre-tokenizer '{type}' is not supported");
        }
    }
}
