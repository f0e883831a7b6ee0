// Owns: parsing rwkv.cpp model files ("ggmf" magic, versions 100/101) into a ModelFile with GGUF-style metadata and
// zero-copy tensor views.
// Format (rwkv.cpp docs/FILE_FORMAT.md): int32 magic 0x67676d66, int32 version (100 or 101), int32 n_vocab, n_embed,
// n_layer, data_type; then, until EOF, parameters: int32 dim_count, int32 key_length, int32 data_type,
// int32[dim_count] shape (already in ggml order: shape[0] = contiguous row length), key bytes (UTF-8), raw data.
// rwkv.cpp's data type ids differ from GGML's: 0 FP32, 1 FP16, 2 Q4_0, 3 Q4_1, 4..6 unused (old Q4_1_O/Q4_2/Q4_3),
// 7 Q5_0, 8 Q5_1, 9 Q8_0. Version 100 stores quantized blocks in a layout ggml dropped in 2023 (only FP32/FP16 of a
// version-100 file are accepted). There is no alignment padding: data follows the key directly.
// Naming (mechanical, so the model code can find every tensor): emb.weight → token_embd.weight,
// blocks.0.ln0.* → token_embd_norm.*, ln_out.* → output_norm.*, head.weight → output.weight,
// blocks.N.ln1.* → blk.N.attn_norm.*, blocks.N.ln2.* → blk.N.attn_norm_2.*, blocks.N.att.S → blk.N.time_mix_S,
// blocks.N.ffn.S → blk.N.channel_mix_S (S unchanged, e.g. blk.3.time_mix_key.weight, blk.0.time_mix_time_maa_x).
// Architecture (as rwkv.cpp detects it): blocks.0.att.r_k → rwkv7; blocks.0.att.time_maa_x → rwkv6;
// blocks.0.att.ln_x.weight → rwkv5 (v5.2 with att.gate.weight, else v5.1); otherwise rwkv4.
// Invariants: every count, dimension, type and length is checked against the remaining bytes before use; every
// violation is a ModelFormatException naming the file and offset.
using Engine.Tensors;

namespace Engine.Formats.Rwkv;

/// <summary>Header of an rwkv.cpp file.</summary>
public sealed record RwkvHeader(int Version, int VocabSize, int EmbeddingLength, int LayerCount, int DataType);

public static unsafe class RwkvReader
{
    public const uint Magic = 0x67676d66;
    public const int HeaderBytes = 24;
    private const int MaxDims = 4;
    private const int MaxKeyLength = 1024;

    /// <summary>Maps rwkv.cpp's type id to Engine's DType; null for ids rwkv.cpp marks unused/unsupported.</summary>
    public static DType? TypeFromRwkvId(int id) => id switch
    {
        0 => DType.F32,
        1 => DType.F16,
        2 => DType.Q4_0,
        3 => DType.Q4_1,
        7 => DType.Q5_0,
        8 => DType.Q5_1,
        9 => DType.Q8_0,
        _ => null,
    };

    /// <summary>Memory-maps and parses an rwkv.cpp file. The returned ModelFile owns the mapping.</summary>
    public static ModelFile Read(string path)
    {
        MappedFile map;
        try { map = MappedFile.Open(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException(path, -1, $"cannot open: {e.Message}", e);
        }
        try
        {
            var (md, tensors) = Parse(path, map.Pointer, map.Length);
            return new ModelFile(path, ModelFileFormat.Rwkv, md, tensors, map);
        }
        catch
        {
            map.Dispose();
            throw;
        }
    }

    /// <summary>Parses an rwkv.cpp image held in memory (copied to unmanaged memory owned by the result).</summary>
    public static ModelFile Read(ReadOnlySpan<byte> bytes, string name)
    {
        var copy = new NativeBytes(bytes);
        try
        {
            var (md, tensors) = Parse(name, copy.Pointer, copy.Length);
            return new ModelFile(name, ModelFileFormat.Rwkv, md, tensors, copy);
        }
        catch
        {
            copy.Dispose();
            throw;
        }
    }

    /// <summary>Header only (validated).</summary>
    public static RwkvHeader ParseHeader(string file, byte* p, long length)
    {
        var c = new ByteCursor(file, p, length);
        if (length < HeaderBytes) throw c.Error($"file is {length} bytes, shorter than the {HeaderBytes}-byte rwkv.cpp header", 0);
        uint magic = c.U32("magic");
        if (magic != Magic) throw c.Error($"magic 0x{magic:x8} is not rwkv.cpp's 'ggmf' (0x{Magic:x8})", 0);
        int version = c.I32("version");
        if (version is not (100 or 101)) throw c.Error($"unknown rwkv.cpp file version {version} (supported: 100, 101)", 4);
        int vocab = c.I32("n_vocab"), embed = c.I32("n_embed"), layers = c.I32("n_layer"), type = c.I32("data_type");
        if (vocab <= 0 || vocab > 1 << 24) throw c.Error($"n_vocab {vocab} is out of range", 8);
        if (embed <= 0 || embed > 1 << 20) throw c.Error($"n_embed {embed} is out of range", 12);
        if (layers <= 0 || layers > 4096) throw c.Error($"n_layer {layers} is out of range", 16);
        if (type < 0 || type > 9 || TypeFromRwkvId(type) is null && type is not (4 or 5 or 6))
            throw c.Error($"unknown rwkv.cpp data type {type}", 20);
        return new RwkvHeader(version, vocab, embed, layers, type);
    }

    internal static (Dictionary<string, object>, List<TensorView>) Parse(string file, byte* p, long length)
    {
        var header = ParseHeader(file, p, length);
        var c = new ByteCursor(file, p, length) { Position = HeaderBytes };
        var tensors = new List<TensorView>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        var rawNames = new HashSet<string>(StringComparer.Ordinal);
        while (c.Remaining > 0)
        {
            long at = c.Position;
            int dims = c.I32("parameter dim_count");
            int keyLength = c.I32("parameter key_length");
            long typeAt = c.Position;
            int typeId = c.I32("parameter data_type");
            if (dims < 1 || dims > MaxDims) throw c.Error($"parameter dim_count {dims} is out of range 1..{MaxDims}", at);
            if (keyLength <= 0 || keyLength > MaxKeyLength) throw c.Error($"parameter key_length {keyLength} is out of range 1..{MaxKeyLength}", at + 4);
            var type = TypeFromRwkvId(typeId) ?? throw c.Error($"unknown or unsupported rwkv.cpp tensor data type {typeId}", typeAt);
            if (header.Version == 100 && type is not (DType.F32 or DType.F16))
                throw c.Error($"version 100 file holds a {type} tensor in the pre-2023 quantization layout, which is not supported; re-quantize with a current rwkv.cpp", typeAt);
            var shape = new long[dims];
            long count = 1;
            for (int i = 0; i < dims; i++)
            {
                long dimAt = c.Position;
                int d = c.I32("parameter shape");
                if (d <= 0 || d > 1 << 24) throw c.Error($"dimension {i} is {d}, expected 1..{1 << 24}", dimAt);
                shape[i] = d;
                count *= d;
            }
            string raw = c.Utf8String(keyLength, "parameter key");
            if (count % type.BlockSize() != 0)
                throw c.Error($"tensor '{raw}' has {count} elements, not a multiple of the {type} block size {type.BlockSize()}", at);
            long bytes = type.ByteCount(count);
            c.Require(bytes, $"data of tensor '{raw}'");
            if (!rawNames.Add(raw)) throw c.Error($"tensor '{raw}' appears twice", at);
            string name = MapName(raw);
            if (!names.Add(name)) throw c.Error($"tensor '{raw}' maps to the name '{name}' of another tensor", at);
            tensors.Add(new TensorView(name, type, shape, (nint)(p + c.Position), bytes));
            c.Position += bytes;
        }
        if (tensors.Count == 0) throw c.Error("the file holds no parameters after the header", HeaderBytes);
        return (BuildMetadata(file, header, rawNames, tensors), tensors);
    }

    /// <summary>rwkv.cpp parameter key → GGUF-style tensor name (see the file header for the rule).</summary>
    public static string MapName(string raw)
    {
        switch (raw)
        {
            case "emb.weight": return "token_embd.weight";
            case "head.weight": return "output.weight";
            case "ln_out.weight": return "output_norm.weight";
            case "ln_out.bias": return "output_norm.bias";
            case "blocks.0.ln0.weight": return "token_embd_norm.weight";
            case "blocks.0.ln0.bias": return "token_embd_norm.bias";
        }
        if (!raw.StartsWith("blocks.", StringComparison.Ordinal)) return raw;
        int dot = raw.IndexOf('.', 7);
        if (dot < 0) return raw;
        var layer = raw.AsSpan(7, dot - 7);
        if (!int.TryParse(layer, out _)) return raw;
        string rest = raw[(dot + 1)..];
        string mapped = rest switch
        {
            "ln1.weight" => "attn_norm.weight",
            "ln1.bias" => "attn_norm.bias",
            "ln2.weight" => "attn_norm_2.weight",
            "ln2.bias" => "attn_norm_2.bias",
            _ when rest.StartsWith("att.", StringComparison.Ordinal) => "time_mix_" + rest[4..],
            _ when rest.StartsWith("ffn.", StringComparison.Ordinal) => "channel_mix_" + rest[4..],
            _ => rest,
        };
        return $"blk.{layer}.{mapped}";
    }

    private static Dictionary<string, object> BuildMetadata(string file, RwkvHeader h, HashSet<string> raw, List<TensorView> tensors)
    {
        string arch; int minor = 0;
        if (raw.Contains("blocks.0.att.r_k")) arch = "rwkv7";
        else if (raw.Contains("blocks.0.att.time_maa_x")) arch = "rwkv6";
        else if (raw.Contains("blocks.0.att.ln_x.weight")) { arch = "rwkv5"; minor = raw.Contains("blocks.0.att.gate.weight") ? 2 : 1; }
        else arch = "rwkv4";

        // Head count as rwkv.cpp derives it: v7 from r_k [N, H], v5/v6 from time_decay / time_faaaa [1, N, H].
        int headSize = 0, headCount = 0;
        TensorView? probe = arch switch
        {
            "rwkv7" => Find(tensors, "blk.0.time_mix_r_k"),
            "rwkv6" => Find(tensors, "blk.0.time_mix_time_faaaa"),
            "rwkv5" => Find(tensors, "blk.0.time_mix_time_decay"),
            _ => null,
        };
        if (probe is { } t)
        {
            headCount = checked((int)t.Shape[^1]);
            if (headCount <= 0 || h.EmbeddingLength % headCount != 0)
                throw new ModelFormatException(file, -1, $"{t.Name} gives {headCount} heads, which does not divide n_embed {h.EmbeddingLength}");
            headSize = h.EmbeddingLength / headCount;
        }
        else if (arch != "rwkv4")
            throw new ModelFormatException(file, -1, $"{arch} file lacks the tensor that gives its head count");

        var md = new Dictionary<string, object>(StringComparer.Ordinal)
        {
            ["general.architecture"] = arch,
            ["general.name"] = Path.GetFileNameWithoutExtension(file),
            // llama.cpp ftype of the main data type (ALL_F32 0, MOSTLY_F16 1, Q4_0 2, Q4_1 3, Q8_0 7, Q5_0 8, Q5_1 9).
            ["general.file_type"] = h.DataType switch { 7 => 8u, 8 => 9u, 9 => 7u, var d => (uint)d },
            ["rwkv.data_type"] = (uint)h.DataType,
            ["rwkv.file_version"] = (uint)h.Version,
            [$"{arch}.version_minor"] = (uint)minor,
            [$"{arch}.embedding_length"] = (uint)h.EmbeddingLength,
            [$"{arch}.block_count"] = (uint)h.LayerCount,
            [$"{arch}.vocab_size"] = (uint)h.VocabSize,
            [$"{arch}.context_length"] = 1u << 20, // a recurrent model has no positional limit
        };
        if (headSize > 0)
        {
            md[$"{arch}.wkv.head_size"] = (uint)headSize;
            md[$"{arch}.attention.head_count"] = (uint)headCount;
        }
        return md;
    }

    private static TensorView? Find(List<TensorView> tensors, string name)
    {
        foreach (var t in tensors) if (t.Name == name) return t;
        return null;
    }
}
