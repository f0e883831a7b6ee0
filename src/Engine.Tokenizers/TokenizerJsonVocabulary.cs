// Owns: mapping a Hugging Face tokenizer.json (+ the tokenizer_config.json beside it) to a Vocabulary.
// Supported: model.type "BPE" with a ByteLevel pre-tokenizer or decoder (GPT-2, Llama 3, Qwen, ...);
// pre_tokenizer Split(Regex, Isolated) / Digits / ByteLevel(use_regex) steps become the split regex sequence.
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
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { MaxDepth = 256 }); }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException(path, -1, $"cannot read tokenizer.json: {e.Message}", e);
        }
        using (doc)
        {
            try { return FromJson(path, doc.RootElement, ReadConfig(path)); }
            catch (Exception e) when (e is InvalidOperationException or KeyNotFoundException or FormatException)
            {
                throw new ModelFormatException(path, -1, $"malformed tokenizer.json: {e.Message}", e);
            }
        }
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

    private static Vocabulary FromJson(string path, JsonElement root, Config? config)
    {
        var model = root.GetProperty("model");
        string type = model.TryGetProperty("type", out var tp) ? tp.GetString() ?? "" : "BPE";
        if (type != "BPE") throw new ModelFormatException(path, -1, $"tokenizer.json model type '{type}' is not supported (only byte-level BPE)");

        var pre = root.TryGetProperty("pre_tokenizer", out var p) ? p : default;
        var dec = root.TryGetProperty("decoder", out var d) ? d : default;
        if (!MentionsByteLevel(pre) && !MentionsByteLevel(dec))
            throw new ModelFormatException(path, -1, "tokenizer.json BPE without a ByteLevel pre-tokenizer (SentencePiece-style BPE) is not supported; use the GGUF");

        // Vocabulary: model.vocab (text → id) plus added_tokens (id, content, special, lstrip, rstrip).
        var byId = new Dictionary<int, string>();
        foreach (var kv in model.GetProperty("vocab").EnumerateObject()) byId[kv.Value.GetInt32()] = kv.Name;
        var added = new Dictionary<int, (bool Special, bool L, bool R)>();
        if (root.TryGetProperty("added_tokens", out var at) && at.ValueKind == JsonValueKind.Array)
            foreach (var a in at.EnumerateArray())
            {
                int id = a.GetProperty("id").GetInt32();
                byId[id] = a.GetProperty("content").GetString() ?? "";
                added[id] = (Flag(a, "special"), Flag(a, "lstrip"), Flag(a, "rstrip"));
            }
        if (byId.Count == 0) throw new ModelFormatException(path, -1, "tokenizer.json has an empty vocabulary");
        int count = byId.Keys.Max() + 1;
        if (byId.Keys.Min() < 0 || count > 10_000_000) throw new ModelFormatException(path, -1, "token ids out of range");
        var tokens = new string[count];
        var types = new TokenType[count];
        for (int i = 0; i < count; i++)
        {
            if (!byId.TryGetValue(i, out var text)) { tokens[i] = $"[PAD{i}]"; types[i] = TokenType.Unused; continue; }
            tokens[i] = text;
            types[i] = added.TryGetValue(i, out var f) ? (f.Special ? TokenType.Control : TokenType.UserDefined) : TokenType.Normal;
        }
        var lstrip = added.Where(kv => kv.Value.L).Select(kv => kv.Key).ToHashSet();
        var rstrip = added.Where(kv => kv.Value.R).Select(kv => kv.Key).ToHashSet();

        var mergesEl = model.GetProperty("merges");
        var merges = new string[mergesEl.GetArrayLength()];
        int mi = 0;
        foreach (var m in mergesEl.EnumerateArray())
            merges[mi++] = m.ValueKind == JsonValueKind.Array ? $"{m[0].GetString()} {m[1].GetString()}" : m.GetString() ?? "";

        var patterns = new List<string>();
        CollectPatterns(path, pre, patterns);
        if (patterns.Count == 0) patterns.Add(Gpt2Pattern); // ByteLevel only in the decoder: GPT-2 split

        int? Find(string? text)
        {
            if (text == null) return null;
            for (int i = 0; i < tokens.Length; i++) if (tokens[i] == text) return i;
            return null;
        }
        int? bos = Find(config?.Bos), eos = Find(config?.Eos);
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
            IgnoreMerges = model.TryGetProperty("ignore_merges", out var im) && im.ValueKind == JsonValueKind.True,
            PreTokenizerPatterns = patterns,
            LStrip = lstrip,
            RStrip = rstrip,
            ChatTemplate = config?.ChatTemplate,
            Source = path,
        };
    }

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
