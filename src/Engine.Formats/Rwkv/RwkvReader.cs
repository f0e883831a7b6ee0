// Owns: reading rwkv.cpp model files (RWKV v4 … v7) into a ModelFile with zero-copy tensor views.
// Format (rwkv.cpp docs/FILE_FORMAT.md): int32 magic 0x67676d66 ("ggmf"), int32 version (100 or 101), int32 n_vocab,
// n_embed, n_layer, data_type; then until EOF per parameter: int32 dim_count, key_length, data_type,
// int32[dim_count] shape (already in GGUF order: shape[0] innermost), key bytes, data bytes (packed, no alignment).
// rwkv.cpp data types: 0 F32, 1 F16, 2 Q4_0, 3 Q4_1, 7 Q5_0, 8 Q5_1, 9 Q8_0 (4..6 unused). Version 100 quantized
// tensors use a pre-2023-05 ggml block layout and are rejected.
// Output: tensor names as rwkv.cpp stores them ("emb.weight", "blocks.N.att.key.weight", ...); metadata
// general.architecture = rwkv4 | rwkv5 | rwkv6 | rwkv7 (from the tensor set), {arch}.vocab_size, .embedding_length,
// .block_count, .feed_forward_length (from blocks.0.ffn.key.weight), rwkv.file_version, general.file_type (rwkv id).
// Views may be unaligned (the format packs tensors). Invariants: every field is bounds-checked (ModelFormatException).
using Engine.Tensors;

namespace Engine.Formats.Rwkv;

public static unsafe class RwkvReader
{
    public const uint Magic = 0x67676d66;

    public static ModelFile Read(string path)
    {
        var map = Llama2c.Llama2cTokenizerReader.OpenMapped(path);
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

    /// <summary>The GGML type of an rwkv.cpp data type id, or null for ids the format does not define.</summary>
    public static DType? TypeOf(int rwkvType) => rwkvType switch
    {
        0 => DType.F32, 1 => DType.F16, 2 => DType.Q4_0, 3 => DType.Q4_1, 7 => DType.Q5_0, 8 => DType.Q5_1, 9 => DType.Q8_0,
        _ => null,
    };

    internal static (Dictionary<string, object>, List<TensorView>) Parse(string file, byte* p, long length)
    {
        var c = new ByteCursor(file, p, length);
        if (length < 24) throw c.Error($"file is {length} bytes, shorter than the 24-byte rwkv.cpp header", 0);
        if (c.U32("magic") != Magic) throw c.Error("not an rwkv.cpp file (bad magic)", 0);
        int version = c.I32("version");
        if (version is not (100 or 101)) throw c.Error($"unsupported rwkv.cpp file version {version} (100, 101)", 4);
        int vocab = c.I32("n_vocab"), embed = c.I32("n_embed"), layers = c.I32("n_layer"), fileType = c.I32("data_type");
        if (vocab <= 0 || embed <= 0 || layers <= 0 || layers > 4096)
            throw c.Error($"implausible header: n_vocab {vocab}, n_embed {embed}, n_layer {layers}", 8);

        var tensors = new List<TensorView>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        while (c.Remaining > 0)
        {
            long at = c.Position;
            int dims = c.I32("dim_count"), keyLength = c.I32("key_length"), typeId = c.I32("data_type");
            if (dims is < 1 or > 4) throw c.Error($"parameter has {dims} dimensions (1..4)", at);
            if (keyLength is < 1 or > 1024) throw c.Error($"parameter key length {keyLength} (1..1024)", at + 4);
            var type = TypeOf(typeId) ?? throw c.Error($"unknown rwkv.cpp data type {typeId}", at + 8);
            if (version == 100 && type is not (DType.F32 or DType.F16))
                throw c.Error($"version 100 quantized ({type}) tensors use an obsolete block layout; re-quantize with rwkv.cpp", at + 8);
            var shape = new long[dims];
            long elements = 1;
            for (int d = 0; d < dims; d++)
            {
                int n = c.I32("shape");
                if (n < 0) throw c.Error($"negative dimension {n}", at);
                shape[d] = n;
                elements = n == 0 || elements <= long.MaxValue / n ? elements * n : throw c.Error("element count overflows", at);
            }
            string name = c.Utf8String(keyLength, "parameter key");
            if (!names.Add(name)) throw c.Error($"duplicate parameter '{name}'", at);
            if (shape[0] % type.BlockSize() != 0)
                throw c.Error($"'{name}' row length {shape[0]} is not a multiple of the {type} block size", at);
            long blocks = elements / type.BlockSize();
            if (blocks > long.MaxValue / type.BytesPerBlock()) throw c.Error($"'{name}' byte size overflows", at);
            long bytes = blocks * type.BytesPerBlock();
            c.Require(bytes, $"data of '{name}'");
            tensors.Add(new TensorView(name, type, shape, (nint)(p + c.Position), bytes));
            c.Position += bytes;
        }

        bool Has(string n) => names.Contains(n);
        string arch = Has("blocks.0.att.x_rwkvag") || Has("blocks.0.att.w0") ? "rwkv7"
            : Has("blocks.0.att.time_maa_x") ? "rwkv6"
            : Has("blocks.0.att.ln_x.weight") ? "rwkv5" : "rwkv4";
        var md = new Dictionary<string, object>(StringComparer.Ordinal)
        {
            ["general.architecture"] = arch,
            ["general.name"] = Path.GetFileNameWithoutExtension(file),
            ["general.file_type"] = (uint)Math.Max(0, fileType),
            ["rwkv.file_version"] = (uint)version,
            [$"{arch}.vocab_size"] = (uint)vocab,
            [$"{arch}.embedding_length"] = (uint)embed,
            [$"{arch}.block_count"] = (uint)layers,
        };
        var ffn = tensors.FirstOrDefault(t => t.Name == "blocks.0.ffn.key.weight");
        if (ffn.Name != null && ffn.Shape.Length == 2) md[$"{arch}.feed_forward_length"] = (uint)ffn.Shape[1];
        var emb = tensors.FirstOrDefault(t => t.Name == "emb.weight");
        if (emb.Name == null) throw c.Error("no 'emb.weight' parameter", -1);
        if (emb.Shape.Length != 2 || emb.Shape[0] != embed || emb.Shape[1] != vocab)
            throw c.Error($"emb.weight has shape [{string.Join(", ", emb.Shape)}], header says [{embed}, {vocab}]", -1);
        return (md, tensors);
    }
}
