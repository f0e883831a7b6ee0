// Owns: reading llama2.c legacy checkpoints (run.c "version 0") as a GGUF-named llama ModelFile.
// Format: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; vocab_size < 0 = untied
// classifier) then float32 arrays in this order: token_embedding [vocab][dim], rms_att [L][dim], wq [L][dim][dim],
// wk [L][kvDim][dim], wv [L][kvDim][dim], wo [L][dim][dim], rms_ffn [L][dim], w1 [L][hidden][dim],
// w2 [L][dim][hidden], w3 [L][hidden][dim], rms_final [dim], freq_cis_real/imag [seq][headDim/2], [wcls [vocab][dim]].
// Mapping (reference README section B): no permutation — llama2.c rotates adjacent pairs = GGUF llama "normal" RoPE;
// tensors are zero-copy F32 views with GGUF shapes ne = [in, out]; freq_cis tables are dropped; tied models have
// no output.weight. Invariants: header values are validated and the sizes must add up to the file length exactly.
using Engine.Tensors;

namespace Engine.Formats.Llama2c;

/// <summary>llama2.c checkpoint hyper-parameters (header).</summary>
public sealed record Llama2cConfig(int Dim, int HiddenDim, int LayerCount, int HeadCount, int KvHeadCount,
    int VocabSize, bool SharedClassifier, int SeqLen)
{
    public int HeadDim => Dim / HeadCount;
    public int KvDim => HeadDim * KvHeadCount;
}

public static unsafe class Llama2cCheckpoint
{
    public const int HeaderBytes = 7 * 4;
    private const int Limit = 1 << 24;

    /// <summary>Reads a checkpoint; tokenizer metadata comes from <paramref name="tokenizerPath"/> or a tokenizer beside it.</summary>
    public static ModelFile Read(string path, string? tokenizerPath = null)
    {
        var map = Llama2cTokenizerReader.OpenMapped(path);
        try
        {
            var (config, metadata, tensors) = Parse(path, map.Pointer, map.Length);
            tokenizerPath ??= FindTokenizerBeside(path, config.VocabSize);
            if (tokenizerPath != null)
            {
                var tok = ModelFiles.ReadTokenizerMetadata(tokenizerPath);
                int n = tok.TryGetValue(TokenizerKeys.Tokens, out var t) && t is string[] s ? s.Length : -1;
                if (n != config.VocabSize)
                    throw new ModelFormatException(tokenizerPath, -1,
                        $"tokenizer has {n} tokens but the checkpoint {Path.GetFileName(path)} has vocab_size {config.VocabSize}");
                foreach (var (k, v) in tok) metadata[k] = v;
            }
            return new ModelFile(path, ModelFileFormat.Llama2c, metadata, tensors, map);
        }
        catch
        {
            map.Dispose();
            throw;
        }
    }

    /// <summary>Header, metadata (no tokenizer) and zero-copy tensor views of a checkpoint image at <paramref name="p"/>.</summary>
    internal static (Llama2cConfig, Dictionary<string, object>, List<TensorView>) Parse(string file, byte* p, long length)
    {
        var config = ParseHeader(file, p, length);
        return (config, BuildMetadata(config, Path.GetFileNameWithoutExtension(file)), BuildTensors(config, p));
    }

    /// <summary>tok{vocab}.bin, then tokenizer.bin, in the checkpoint's folder, whichever has vocab_size tokens.</summary>
    public static string? FindTokenizerBeside(string checkpointPath, int vocabSize)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(checkpointPath)) ?? ".";
        foreach (var name in new[] { $"tok{vocabSize}.bin", "tokenizer.bin" })
        {
            var p = Path.Combine(dir, name);
            if (!File.Exists(p)) continue;
            try
            {
                var md = Llama2cTokenizerReader.ReadMetadata(p);
                if (md[TokenizerKeys.Tokens] is string[] s && s.Length == vocabSize) return p;
            }
            catch (ModelFormatException) { /* not a usable tokenizer: keep looking */ }
        }
        return null;
    }

    internal static bool LooksLikeCheckpoint(byte* p, long length)
    {
        try { ParseHeader("<probe>", p, length); return true; }
        catch (ModelFormatException) { return false; }
    }

    /// <summary>Validates the header and that the file holds exactly the weights it announces.</summary>
    public static Llama2cConfig ParseHeader(string file, byte* p, long length)
    {
        var c = new ByteCursor(file, p, length);
        if (length < HeaderBytes) throw c.Error($"file is {length} bytes, shorter than the 28-byte llama2.c header", 0);
        int dim = c.I32("dim"), hidden = c.I32("hidden_dim"), layers = c.I32("n_layers"), heads = c.I32("n_heads"),
            kvHeads = c.I32("n_kv_heads"), vocab = c.I32("vocab_size"), seq = c.I32("seq_len");
        bool shared = vocab > 0;
        if (vocab == int.MinValue) throw c.Error("vocab_size is out of range", 20);
        vocab = Math.Abs(vocab);
        void Check(int v, string name, long at)
        {
            if (v <= 0 || v > Limit) throw c.Error($"{name} is {v}, expected 1..{Limit}", at);
        }
        Check(dim, "dim", 0); Check(hidden, "hidden_dim", 4); Check(layers, "n_layers", 8); Check(heads, "n_heads", 12);
        Check(kvHeads, "n_kv_heads", 16); Check(vocab, "vocab_size", 20); Check(seq, "seq_len", 24);
        if (dim % heads != 0) throw c.Error($"dim {dim} is not a multiple of n_heads {heads}", 0);
        if (kvHeads > heads || heads % kvHeads != 0) throw c.Error($"n_heads {heads} is not a multiple of n_kv_heads {kvHeads}", 16);
        if (dim / heads % 2 != 0) throw c.Error($"head dimension {dim / heads} is odd", 12);
        var config = new Llama2cConfig(dim, hidden, layers, heads, kvHeads, vocab, shared, seq);
        long expected = HeaderBytes + 4 * FloatCount(config);
        if (expected != length)
            throw c.Error($"the header announces {expected} bytes of checkpoint but the file is {length} bytes", 0);
        return config;
    }

    private static long FloatCount(Llama2cConfig c)
    {
        long d = c.Dim, h = c.HiddenDim, l = c.LayerCount, kv = c.KvDim, v = c.VocabSize;
        long n = v * d + l * d + l * d * d + 2 * l * kv * d + l * d * d + l * d + 3 * l * h * d + d
               + 2L * c.SeqLen * (c.HeadDim / 2);
        if (!c.SharedClassifier) n += v * d;
        return n; // every factor ≤ 2^24, so no term overflows a long
    }

    /// <summary>GGUF llama metadata for the checkpoint (reference README section B).</summary>
    public static Dictionary<string, object> BuildMetadata(Llama2cConfig c, string name) => new(StringComparer.Ordinal)
    {
        // Key order as llama.cpp's llama2.c converter writes it, so a converted file matches the reference byte for byte.
        ["general.architecture"] = "llama",
        ["general.name"] = name,
        ["llama.block_count"] = (uint)c.LayerCount,
        ["llama.context_length"] = (uint)c.SeqLen,
        ["llama.embedding_length"] = (uint)c.Dim,
        ["llama.feed_forward_length"] = (uint)c.HiddenDim,
        ["llama.attention.head_count"] = (uint)c.HeadCount,
        ["llama.attention.head_count_kv"] = (uint)c.KvHeadCount,
        ["llama.attention.layer_norm_rms_epsilon"] = 1e-5f,
        ["llama.rope.freq_base"] = 10000f,
        ["llama.rope.dimension_count"] = (uint)c.HeadDim,
        ["llama.vocab_size"] = (uint)c.VocabSize,
        ["general.file_type"] = 0u,
    };

    private static List<TensorView> BuildTensors(Llama2cConfig c, byte* basePointer)
    {
        var list = new List<TensorView>();
        long offset = HeaderBytes;
        // Views into a [layers, ...] block: one tensor per layer, GGUF shape ne = [in, out].
        TensorView View(string name, long[] shape, long at)
        {
            long n = 1; foreach (var s in shape) n *= s;
            return new TensorView(name, DType.F32, shape, (nint)(basePointer + at), n * 4);
        }
        void PerLayer(string suffix, long[] shape)
        {
            long n = 1; foreach (var s in shape) n *= s;
            for (int layer = 0; layer < c.LayerCount; layer++)
                list.Add(View($"blk.{layer}.{suffix}", shape, offset + layer * n * 4));
            offset += c.LayerCount * n * 4;
        }
        long d = c.Dim, h = c.HiddenDim, kv = c.KvDim, v = c.VocabSize;
        list.Add(View("token_embd.weight", [d, v], offset)); offset += v * d * 4;
        PerLayer("attn_norm.weight", [d]);
        PerLayer("attn_q.weight", [d, d]);
        PerLayer("attn_k.weight", [d, kv]);
        PerLayer("attn_v.weight", [d, kv]);
        PerLayer("attn_output.weight", [d, d]);
        PerLayer("ffn_norm.weight", [d]);
        PerLayer("ffn_gate.weight", [d, h]);
        PerLayer("ffn_down.weight", [h, d]);
        PerLayer("ffn_up.weight", [d, h]);
        list.Add(View("output_norm.weight", [d], offset)); offset += d * 4;
        offset += 2L * c.SeqLen * (c.HeadDim / 2) * 4; // freq_cis_real, freq_cis_imag: dropped
        if (!c.SharedClassifier) { list.Add(View("output.weight", [d, v], offset)); offset += v * d * 4; }
        // GGUF files list tensors per block; order them the same way (token_embd, blk.0.*, blk.1.*, ..., output_norm, output).
        return list.OrderBy(t => SortKey(t.Name)).ToList(); // stable: keeps llama.cpp's per-block order
    }

    private static int SortKey(string name) => name.StartsWith("blk.", StringComparison.Ordinal)
        ? 1 + int.Parse(name.AsSpan(4, name.IndexOf('.', 4) - 4)) : name == "token_embd.weight" ? 0 : int.MaxValue;
}
