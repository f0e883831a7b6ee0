// Owns: the hyper-parameters of a decoder-only transformer, read from GGUF-style metadata ({arch}.* keys).
// Invariants: HeadCount % KvHeadCount == 0; HeadDim is the per-head width of Q/K (GGUF `attention.key_length`, else
// EmbeddingLength / HeadCount); RopeDimensions ≤ HeadDim; VocabSize comes from token_embd's row count.
// Source: GGUF key names as written by llama.cpp's convert scripts (gguf-py constants).
using Engine.Formats;
using Engine.Kernels;

namespace Engine.Model;

/// <summary>Hyper-parameters of a Llama-family decoder.</summary>
public sealed record ModelConfig
{
    public required string Architecture { get; init; }
    public required int EmbeddingLength { get; init; }
    public required int LayerCount { get; init; }
    public required int FeedForwardLength { get; init; }
    public required int HeadCount { get; init; }
    public required int KvHeadCount { get; init; }
    public required int HeadDim { get; init; }
    public required int ValueHeadDim { get; init; }
    public required float RmsEpsilon { get; init; }
    public required int ContextLength { get; init; }
    public required int VocabSize { get; init; }
    public required RopeStyle RopeStyle { get; init; }
    public required int RopeDimensions { get; init; }
    public required float RopeFreqBase { get; init; }
    /// <summary>Position scale for linear RoPE scaling (1 / factor); 1 when unscaled.</summary>
    public float RopeFreqScale { get; init; } = 1f;

    /// <summary>Width of the query projection: HeadCount · HeadDim.</summary>
    public int QueryDim => HeadCount * HeadDim;
    /// <summary>Width of one K row: KvHeadCount · HeadDim.</summary>
    public int KvDim => KvHeadCount * HeadDim;
    /// <summary>Width of one V row: KvHeadCount · ValueHeadDim.</summary>
    public int ValueDim => KvHeadCount * ValueHeadDim;

    /// <summary>Reads the config of <paramref name="file"/> for its architecture, with that architecture's RoPE style.</summary>
    public static ModelConfig FromFile(ModelFile file, RopeStyle ropeStyle)
    {
        string arch = file.Architecture ?? throw new ModelFormatException(file.Path, -1, "metadata 'general.architecture' is missing");
        int Req(string key) => checked((int)(file.GetInteger($"{arch}.{key}")
            ?? throw new ModelFormatException(file.Path, -1, $"required metadata '{arch}.{key}' is missing")));
        int? Opt(string key) => file.GetInteger($"{arch}.{key}") is long v ? checked((int)v) : null;

        int dim = Req("embedding_length");
        int heads = Req("attention.head_count");
        int kvHeads = Opt("attention.head_count_kv") ?? heads;
        if (heads <= 0 || kvHeads <= 0 || heads % kvHeads != 0)
            throw new ModelFormatException(file.Path, -1, $"head counts {heads}/{kvHeads} are invalid (head_count must be a positive multiple of head_count_kv)");
        int headDim = Opt("attention.key_length") ?? (dim % heads == 0 ? dim / heads
            : throw new ModelFormatException(file.Path, -1, $"embedding_length {dim} is not a multiple of head_count {heads}"));
        int valueHeadDim = Opt("attention.value_length") ?? headDim;
        if (valueHeadDim != headDim)
            throw new ModelFormatException(file.Path, -1, $"value_length {valueHeadDim} ≠ key_length {headDim} is not supported");
        int ropeDims = Opt("rope.dimension_count") ?? headDim;
        if (ropeDims <= 0 || ropeDims > headDim || ropeDims % 2 != 0)
            throw new ModelFormatException(file.Path, -1, $"rope.dimension_count {ropeDims} is invalid for head dim {headDim}");

        float scale = 1f;
        string? scalingType = file.GetString($"{arch}.rope.scaling.type");
        double? factor = file.GetNumber($"{arch}.rope.scaling.factor");
        double? legacyScale = file.GetNumber($"{arch}.rope.scale_linear");
        if (scalingType is "linear" && factor is > 0) scale = (float)(1.0 / factor.Value);
        else if (scalingType is null && legacyScale is > 0) scale = (float)(1.0 / legacyScale.Value);
        else if (scalingType is not null and not "none" and not "linear" and not "llama3")
            throw new ModelFormatException(file.Path, -1, $"RoPE scaling type '{scalingType}' is not supported");

        var embd = file.GetTensor("token_embd.weight");
        int vocab = embd.Shape.Length >= 2 ? checked((int)embd.Shape[1]) : throw new ModelFormatException(file.Path, -1, "token_embd.weight is not a matrix");
        if (embd.Shape[0] != dim)
            throw new ModelFormatException(file.Path, -1, $"token_embd.weight rows have {embd.Shape[0]} elements, expected embedding_length {dim}");

        var cfg = new ModelConfig
        {
            Architecture = arch,
            EmbeddingLength = dim,
            LayerCount = Req("block_count"),
            FeedForwardLength = Req("feed_forward_length"),
            HeadCount = heads,
            KvHeadCount = kvHeads,
            HeadDim = headDim,
            ValueHeadDim = valueHeadDim,
            RmsEpsilon = (float)(file.GetNumber($"{arch}.attention.layer_norm_rms_epsilon") ?? 1e-5),
            ContextLength = Opt("context_length") ?? 2048,
            VocabSize = vocab,
            RopeStyle = ropeStyle,
            RopeDimensions = ropeDims,
            RopeFreqBase = (float)(file.GetNumber($"{arch}.rope.freq_base") ?? 10000.0),
            RopeFreqScale = scale,
        };
        if (cfg.LayerCount <= 0 || cfg.FeedForwardLength <= 0 || cfg.ContextLength <= 0)
            throw new ModelFormatException(file.Path, -1, $"block_count/feed_forward_length/context_length must be positive");
        return cfg;
    }
}
