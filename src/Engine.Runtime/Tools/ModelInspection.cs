// Owns: what a model / tokenizer file holds, as data for front ends (`engine inspect`): format, architecture,
// hyper-parameters, tokenizer kind and size, the tensor table (name, type, shape, bytes) and totals; a tokenizer.json /
// tokenizer_config.json / JSON vocabulary as one descriptive line.
// Invariants: opening reads metadata and the tensor table only (mmap, no tensor data copied); a bad or unsupported file
// throws ModelFormatException / IOException / JsonException (EngineErrors.IsInputError).
namespace Engine.Runtime.Tools;

using System.Text.Json;
using Engine.Formats;
using Engine.Tokenizers;

/// <summary>One row of the tensor table.</summary>
public sealed record TensorSummary(string Name, string Type, string Shape, long Bytes);

/// <summary>What a file holds: either one <see cref="Line"/> (JSON tokenizer files) or a titled key/value table, the
/// tensors, and a totals line (<see cref="Footer"/>, null for tokenizer-only files).</summary>
public sealed record ModelReport(string? Line, string Title, IReadOnlyList<KeyValuePair<string, string>> Info, IReadOnlyList<TensorSummary> Tensors, string? Footer);

public static class ModelInspection
{
    /// <summary>Describes <paramref name="path"/> (with <paramref name="tokenizerPath"/>'s metadata replacing the model's).</summary>
    public static ModelReport Inspect(string path, string? tokenizerPath)
    {
        if (File.Exists(path) && ModelFiles.DetectKind(path) == "json")
            return new ModelReport(DescribeJson(path), Path.GetFileName(path), [], [], null);
        if (File.Exists(path) && tokenizerPath == null && IsTokenizerOnlyFile(path))
            return TokenizerReport(path, Tokenizer.Load(path));
        using var m = ModelFiles.Open(path, tokenizerPath);
        return Report(m);
    }

    private static string DescribeJson(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        var root = doc.RootElement;
        if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("model", out var model) && model.ValueKind == JsonValueKind.Object
            && model.TryGetProperty("vocab", out var vocab))
        {
            int n = vocab.ValueKind switch { JsonValueKind.Object => vocab.EnumerateObject().Count(), JsonValueKind.Array => vocab.GetArrayLength(), _ => 0 };
            int added = root.TryGetProperty("added_tokens", out var at) && at.ValueKind == JsonValueKind.Array ? at.GetArrayLength() : 0;
            string type = model.TryGetProperty("type", out var t) ? t.GetString() ?? "?" : "?";
            int merges = model.TryGetProperty("merges", out var mg) && mg.ValueKind == JsonValueKind.Array ? mg.GetArrayLength() : 0;
            return $"tokenizer.json: {n} tokens ({type}, {merges} merges) + {added} added tokens";
        }
        if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("architectures", out _))
            throw new ModelFormatException(path, -1, "this is a Hugging Face config.json; inspect its folder instead");
        if (root.ValueKind == JsonValueKind.Object && (root.TryGetProperty("tokenizer_class", out _) || root.TryGetProperty("added_tokens_decoder", out _)))
        {
            string Str(string key) => root.TryGetProperty(key, out var v) ? v.ValueKind switch
            {
                JsonValueKind.String => v.GetString() ?? "",
                JsonValueKind.Null => "(none)",
                JsonValueKind.Object when v.TryGetProperty("content", out var c) => c.GetString() ?? "",
                _ => v.ToString(),
            } : "(none)";
            int template = root.TryGetProperty("chat_template", out var ct) && ct.ValueKind == JsonValueKind.String ? ct.GetString()!.Length : 0;
            return $"tokenizer_config.json: class {Str("tokenizer_class")}, bos {Str("bos_token")}, eos {Str("eos_token")}, "
                + (template > 0 ? $"chat template {template} chars" : "no chat template");
        }
        if (root.ValueKind == JsonValueKind.Object && root.EnumerateObject().All(p => p.Value.ValueKind == JsonValueKind.Number))
            return $"JSON vocabulary (token → id): {root.EnumerateObject().Count()} tokens";
        throw new ModelFormatException(path, -1, "JSON file not recognised (expected tokenizer.json)");
    }

    /// <summary>Tokenizer files ModelFiles does not open: a SentencePiece .model or a GPT-2 vocab.bpe.</summary>
    private static bool IsTokenizerOnlyFile(string path) =>
        Gpt2EncoderVocabulary.StartsWithVersionLine(path) || ModelFiles.DetectKind(path) == "sentencepiece-model";

    private static ModelReport TokenizerReport(string path, Tokenizer tok)
    {
        var v = tok.Vocabulary;
        var info = new List<KeyValuePair<string, string>>();
        void Row(string k, string val) => info.Add(new(k, val));
        Row("path", path);
        Row("format", ModelFiles.DetectKind(path) == "sentencepiece-model" ? "SentencePiece model (protobuf)" : "GPT-2 encoder.json + vocab.bpe");
        Row("file size", Bytes(new FileInfo(path).Length));
        string kind = tok.Model switch { TokenizerModel.SentencePiece => "SentencePiece BPE", TokenizerModel.ByteLevelBpe => "byte-level BPE", _ => tok.Model.ToString() };
        string pre = v.PreTokenizer is { } p ? $", pre {p}" : "";
        int merges = v.Merges?.Length ?? 0;
        Row("tokenizer", $"{kind}{pre}, {tok.VocabSize} tokens{(merges > 0 ? $", {merges} merges" : "")}");
        string Id(int? id) => id is int i ? $"{i} {tok.TokenText(i)}" : "(none)";
        Row("bos", Id(tok.Bos));
        Row("eos", Id(tok.Eos));
        Row("unk", Id(v.Unk));
        Row("add bos", tok.AddBos.ToString());
        return new ModelReport(null, Path.GetFileName(path), info, [], null);
    }

    private static ModelReport Report(ModelFile m)
    {
        string arch = m.Architecture ?? "(none)";
        var info = new List<KeyValuePair<string, string>>();
        void Row(string k, string val) => info.Add(new(k, val));
        Row("path", m.Path);
        Row("format", m.Format.ToString());
        if (File.Exists(m.Path)) Row("file size", Bytes(new FileInfo(m.Path).Length));
        Row("architecture", arch);
        foreach (var (k, v) in m.Metadata)
        {
            if (k.StartsWith("tokenizer.", StringComparison.Ordinal) || k == "general.architecture") continue;
            Row(k, Show(v));
        }
        var tokens = m.GetArray<string>(TokenizerKeys.Tokens);
        string? json = m.GetString(TokenizerKeys.TokenizerJsonPath);
        if (tokens != null || m.GetString(TokenizerKeys.Model) != null)
        {
            string model = m.GetString(TokenizerKeys.Model) ?? "?";
            string kind = model switch { "llama" => "SentencePiece BPE", "gpt2" => "byte-level BPE", _ => model };
            string pre = m.GetString(TokenizerKeys.Pre) is { } p ? $", pre {p}" : "";
            int merges = m.GetArray<string>(TokenizerKeys.Merges)?.Length ?? 0;
            Row("tokenizer", $"{model} ({kind}{pre}), {tokens?.Length ?? 0} tokens{(merges > 0 ? $", {merges} merges" : "")}");
            foreach (var key in new[] { TokenizerKeys.BosId, TokenizerKeys.EosId, TokenizerKeys.UnkId, TokenizerKeys.PadId, TokenizerKeys.AddBos, TokenizerKeys.AddEos })
                if (m.Metadata.TryGetValue(key, out var v)) Row(key, Show(v));
            if (m.GetString(TokenizerKeys.ChatTemplate) is { } ct) Row("chat template", $"{ct.Length} chars");
        }
        else if (json != null) Row("tokenizer", $"tokenizer.json at {json}");
        else if (arch.StartsWith("rwkv", StringComparison.Ordinal))
            Row("tokenizer", "bytes (token id = byte value, 256 tokens; no tokenizer metadata)");
        else Row("tokenizer", "(none)");

        long totalBytes = 0, totalElements = 0;
        foreach (var t in m.Tensors) { totalBytes += t.ByteLength; totalElements += t.ElementCount; }
        var tensors = m.Tensors.Select(t => new TensorSummary(t.Name, t.Type.ToString(), $"[{string.Join(", ", t.Shape)}]", t.ByteLength)).ToList();
        var byType = m.Tensors.GroupBy(t => t.Type).Select(g => $"{g.Key}: {g.Count()}");
        string footer = $"{m.Tensors.Count} tensors, {totalElements:N0} parameters, {Bytes(totalBytes)} of tensor data"
            + (m.Tensors.Count > 0 ? $" ({string.Join(", ", byType)})" : "");
        return new ModelReport(null, Path.GetFileName(m.Path.TrimEnd('/')), info, tensors, footer);
    }

    private static string Show(object v) => v switch
    {
        string s => s.Length > 80 ? s[..77] + "..." : s,
        Array a => $"{a.GetType().GetElementType()!.Name}[{a.Length}]",
        float f => f.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
        double d => d.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
        _ => Convert.ToString(v, System.Globalization.CultureInfo.InvariantCulture) ?? "",
    };

    private static string Bytes(long n) => n switch
    {
        >= 1L << 30 => $"{n / (double)(1L << 30):F2} GiB",
        >= 1L << 20 => $"{n / (double)(1L << 20):F2} MiB",
        >= 1L << 10 => $"{n / 1024.0:F1} KiB",
        _ => $"{n} B",
    } + $" ({n:N0} bytes)";
}
