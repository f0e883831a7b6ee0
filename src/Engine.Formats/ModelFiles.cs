// Owns: the one entry point that opens any supported model/tokenizer file by its content (not its extension).
// Detection order: directory (Hugging Face: config.json + *.safetensors, see HfModelLoader) → "GGUF" magic → rwkv.cpp magic →
// safetensors (uint64 header length + '{') → JSON → llama2.c checkpoint (7-int32 header whose sizes add up to
// the file length) → llama2.c tokenizer (the whole file walks as score/length/bytes records).
// Invariant: every failure is a ModelFormatException naming the file.
using Engine.Formats.Gguf;
using Engine.Formats.Llama2c;
using Engine.Formats.Rwkv;
using Engine.Formats.Safetensors;
using Engine.Tensors;

namespace Engine.Formats;

public static unsafe class ModelFiles
{
    /// <summary>rwkv.cpp / legacy ggml magic "ggmf" read as little-endian uint32.</summary>
    public const uint RwkvMagic = 0x67676d66;

    /// <summary>
    /// Opens <paramref name="path"/> (GGUF, rwkv.cpp, llama2.c checkpoint or tokenizer, safetensors file or Hugging Face folder).
    /// <paramref name="tokenizerPath"/> (a llama2.c tokenizer .bin, or a GGUF whose tokenizer.* keys are used)
    /// replaces/adds the tokenizer metadata.
    /// </summary>
    public static ModelFile Open(string path, string? tokenizerPath = null)
    {
        var model = OpenModel(path, tokenizerPath);
        if (tokenizerPath == null || model.Format == ModelFileFormat.Llama2c) return model;
        try
        {
            var tok = ReadTokenizerMetadata(tokenizerPath);
            int n = tok.TryGetValue(TokenizerKeys.Tokens, out var t) && t is string[] s ? s.Length : -1;
            if (model.TryGetTensor("token_embd.weight", out var embd) && embd.Shape.Length == 2 && n >= 0 && embd.Shape[1] != n)
                throw new ModelFormatException(tokenizerPath, -1,
                    $"tokenizer has {n} tokens but {System.IO.Path.GetFileName(path)} has an embedding for {embd.Shape[1]}");
            return MergeTokenizer(model, tok);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>What kind of file <paramref name="path"/> is, by content.</summary>
    public static string DetectKind(string path)
    {
        if (Directory.Exists(path)) return "safetensors-folder";
        using var map = Llama2cTokenizerReader.OpenMapped(path);
        return Detect(map.Pointer, map.Length);
    }

    private static string Detect(byte* p, long length)
    {
        var head = new ReadOnlySpan<byte>(p, (int)Math.Min(length, 16));
        if (GgufReader.HasMagic(head)) return "gguf";
        if (length >= 4 && *(uint*)p == RwkvMagic) return "rwkv";
        if (SafetensorsReader.LooksLikeSafetensors(p, length)) return "safetensors";
        int i = 0;
        while (i < head.Length && head[i] is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n' or 0xEF or 0xBB or 0xBF) i++;
        if (i < head.Length && head[i] is (byte)'{' or (byte)'[') return "json";
        if (Llama2cCheckpoint.LooksLikeCheckpoint(p, length)) return "llama2c-checkpoint";
        if (Llama2cTokenizerReader.LooksLikeTokenizer(p, length)) return "llama2c-tokenizer";
        // SentencePiece .model files are protobuf: field 1 (pieces), wire type 2 → first byte 0x0A.
        if (length > 2 && p[0] == 0x0A) return "sentencepiece-model";
        return "unknown";
    }

    private static ModelFile OpenModel(string path, string? tokenizerPath)
    {
        if (Directory.Exists(path)) return HfModelLoader.Open(path);
        if (!File.Exists(path)) throw new ModelFormatException(path, -1, "file not found");
        string kind = DetectKind(path);
        return kind switch
        {
            "gguf" => GgufReader.Read(path),
            "rwkv" => RwkvReader.Read(path),
            "safetensors" => File.Exists(Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".", "config.json"))
                ? HfModelLoader.Open(path) : SafetensorsReader.Read(path),
            "json" => throw new ModelFormatException(path, 0,
                "this is a JSON file (tokenizer.json or config.json?), not a model; pass the model file or its folder"),
            "llama2c-checkpoint" => Llama2cCheckpoint.Read(path, tokenizerPath),
            "llama2c-tokenizer" => Llama2cTokenizerReader.Read(path),
            "sentencepiece-model" => throw new ModelFormatException(path, 0,
                "a SentencePiece tokenizer.model (protobuf) holds only a tokenizer, no model; `engine tokenize` / `engine inspect` read it (Engine.Tokenizers.Tokenizer.Load)"),
            _ => throw new ModelFormatException(path, 0,
                "unrecognised format (expected GGUF, rwkv.cpp, safetensors, a llama2.c checkpoint or a llama2.c tokenizer)"),
        };
    }

    /// <summary>Detects and parses a file image in memory (no tokenizer lookup; used by tests and fuzzing).
    /// The result does not own <paramref name="p"/>: keep it alive while the ModelFile is used.</summary>
    internal static ModelFile Parse(string name, byte* p, long length)
    {
        string kind = Detect(p, length);
        switch (kind)
        {
            case "gguf": return GgufReader.Parse(name, p, length, null, out _);
            case "rwkv":
                var (rmd, rtensors) = RwkvReader.Parse(name, p, length);
                return new ModelFile(name, ModelFileFormat.Rwkv, rmd, rtensors, null);
            case "safetensors":
                return new ModelFile(name, ModelFileFormat.Safetensors, new Dictionary<string, object>(),
                    SafetensorsReader.ParseTensors(name, p, length), null);
            case "llama2c-checkpoint":
                var (_, md, tensors) = Llama2cCheckpoint.Parse(name, p, length);
                return new ModelFile(name, ModelFileFormat.Llama2c, md, tensors, null);
            case "llama2c-tokenizer":
                return new ModelFile(name, ModelFileFormat.Llama2c, Llama2cTokenizerReader.ReadMetadata(name, p, length), [], null);
            default:
                throw new ModelFormatException(name, 0, $"unsupported or unrecognised format ({kind})");
        }
    }

    /// <summary>The tokenizer.* metadata of a tokenizer file (llama2.c .bin or any GGUF).</summary>
    public static IReadOnlyDictionary<string, object> ReadTokenizerMetadata(string tokenizerPath)
    {
        string kind = DetectKind(tokenizerPath);
        if (kind == "llama2c-tokenizer") return Llama2cTokenizerReader.ReadMetadata(tokenizerPath);
        if (kind == "gguf")
        {
            using var g = GgufReader.Read(tokenizerPath);
            var d = new Dictionary<string, object>(StringComparer.Ordinal);
            foreach (var (k, v) in g.Metadata) if (k.StartsWith("tokenizer.", StringComparison.Ordinal)) d[k] = v;
            if (d.Count == 0) throw new ModelFormatException(tokenizerPath, -1, "this GGUF has no tokenizer metadata");
            return d;
        }
        throw new ModelFormatException(tokenizerPath, -1, $"not a tokenizer file (detected: {kind})");
    }

    /// <summary>A new ModelFile sharing <paramref name="model"/>'s tensors and owner, with tokenizer.* keys replaced.</summary>
    public static ModelFile MergeTokenizer(ModelFile model, IReadOnlyDictionary<string, object> tokenizer)
    {
        var d = new Dictionary<string, object>(StringComparer.Ordinal);
        foreach (var (k, v) in model.Metadata) if (!k.StartsWith("tokenizer.", StringComparison.Ordinal)) d[k] = v;
        foreach (var (k, v) in tokenizer) d[k] = v;
        return new ModelFile(model.Path, model.Format, d, model.Tensors, new OwnerOf(model));
    }

    private sealed class OwnerOf(ModelFile inner) : IDisposable
    {
        public void Dispose() => inner.Dispose();
    }
}
