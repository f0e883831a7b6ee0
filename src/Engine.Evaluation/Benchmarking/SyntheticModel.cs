// Owns: random-weight GGUF files of a named Llama shape (`llama-1b` = Llama-3.2-1B, `tiny` for tests), written with the
// project's own GgufWriter and quantizers, so speed benchmarks need no download.
// Invariants: the file is streamed tensor by tensor (a tensor's rows are generated and quantized in parallel chunks of
// ≤ ~32 MiB and written at once; the whole model is never in memory); it is written under a temporary name and renamed,
// so a cached file is always complete. Weights are deterministic in (seed, tensor, row): uniform in ±√3·σ (σ = 0.02,
// i.e. a small zero-mean distribution of the usual init scale, so activations stay finite through the layers); norm
// weights are 1 ± 0.05. Tied embeddings (no output.weight), like Llama-3.2-1B. A generated SentencePiece-style
// ("llama") vocabulary of exactly VocabSize tokens is written too (<unk>, <s>, </s>, the 256 byte tokens <0x00>..<0xFF>,
// then "▁" and unique pieces "▁a", "▁b", … scored −i), so llama.cpp / LLamaSharp load the very files the engine benchmarks;
// benches still feed random ids. The cache name carries FileVersion: bump it whenever the written bytes change.
// Source: shape and hyper-parameters from Llama-3.2-1B's config (meta-llama, Sep 2024).
using Engine.Formats.Gguf;
using Engine.Tensors;
using Engine.Tensors.Quants;

namespace Engine.Runtime.Benchmarking;

/// <summary>Hyper-parameters of a synthetic Llama-architecture model.</summary>
public sealed record SyntheticShape(string Name, int EmbeddingLength, int LayerCount, int HeadCount, int KvHeadCount,
    int FeedForwardLength, int VocabSize, float RopeFreqBase, int ContextLength)
{
    public int HeadDim => EmbeddingLength / HeadCount;

    /// <summary>Parameter count (tied embeddings counted once).</summary>
    public long ParameterCount
    {
        get
        {
            long d = EmbeddingLength, kv = (long)KvHeadCount * HeadDim, ff = FeedForwardLength;
            long layer = d * d * 2 + d * kv * 2 + 3 * d * ff + 2 * d;
            return LayerCount * layer + VocabSize * d + d;
        }
    }
}

public static class SyntheticModel
{
    /// <summary>Llama-3.2-1B: 2048 wide, 16 layers, 32 heads / 8 KV heads, FFN 8192, vocab 128256, θ 500000.</summary>
    public static SyntheticShape Llama1B { get; } = new("llama-1b", 2048, 16, 32, 8, 8192, 128256, 500000f, 131072);

    /// <summary>A tiny shape for tests (rows are multiples of 256 so every K-quant applies): ~0.6 M parameters.</summary>
    public static SyntheticShape Tiny { get; } = new("tiny", 256, 2, 4, 2, 512, 512, 10000f, 2048);

    public static IReadOnlyList<SyntheticShape> Shapes { get; } = [Llama1B, Tiny];

    public static SyntheticShape Shape(string name) =>
        Shapes.FirstOrDefault(s => s.Name.Equals(name, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"unknown synthetic shape '{name}' (known: {string.Join(", ", Shapes.Select(s => s.Name))})");

    /// <summary>Parses a weight type name such as "q4_0", "Q6_K", "f16".</summary>
    public static DType ParseType(string name)
    {
        if (Enum.TryParse<DType>(name.Trim(), ignoreCase: true, out var t) && Enum.IsDefined(t) && t.IsSupportedWeight() && Quantize.IsSupported(t))
            return t;
        var known = Enum.GetValues<DType>().Where(d => d.IsSupportedWeight() && Quantize.IsSupported(d)).Select(d => d.ToString().ToLowerInvariant());
        throw new ArgumentException($"unknown or unsupported weight type '{name}' (supported: {string.Join(", ", known)})");
    }

    /// <summary>Version of the written layout, part of the cache file name (2: tokenizer metadata added).</summary>
    public const int FileVersion = 2;

    /// <summary>Default cache folder: $ENGINE_CACHE, else ~/.cache/engine.</summary>
    public static string DefaultCacheDirectory =>
        Environment.GetEnvironmentVariable("ENGINE_CACHE") is { Length: > 0 } e ? e
        : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "engine");

    /// <summary>The cached file for (shape, type), written first when absent. Returns its path.</summary>
    /// <summary><see cref="Ensure"/> with the weight type by name (<see cref="ParseType"/>: f32, f16, q8_0, q4_0 …).</summary>
    public static string EnsureNamed(SyntheticShape shape, string type, string? cacheDirectory = null, Action<string>? log = null) =>
        Ensure(shape, ParseType(type), cacheDirectory, log);

    public static string Ensure(SyntheticShape shape, DType type, string? cacheDirectory = null, Action<string>? log = null)
    {
        string dir = cacheDirectory ?? DefaultCacheDirectory;
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, $"synthetic-v{FileVersion}-{shape.Name}-{type.ToString().ToLowerInvariant()}.gguf");
        if (File.Exists(path)) return path;
        var sw = System.Diagnostics.Stopwatch.StartNew();
        log?.Invoke($"writing {path} ({shape.ParameterCount / 1e9:F2} B parameters, {type})…");
        Write(shape, type, path);
        log?.Invoke($"wrote {new FileInfo(path).Length / 1e6:F0} MB in {sw.Elapsed.TotalSeconds:F1} s");
        return path;
    }

    /// <summary>Writes a random-weight GGUF of <paramref name="shape"/> with every matrix in <paramref name="type"/>
    /// (norm weights F32) to <paramref name="path"/> via a temporary file and a rename.</summary>
    public static void Write(SyntheticShape shape, DType type, string path, ulong seed = 1)
    {
        ParseType(type.ToString());   // validates the type
        long d = shape.EmbeddingLength, kv = (long)shape.KvHeadCount * shape.HeadDim, ff = shape.FeedForwardLength;
        var w = new GgufWriter();
        w.AddMetadata("general.architecture", "llama");
        w.AddMetadata("general.name", $"synthetic {shape.Name} {type}");
        w.AddMetadata("general.file_type", (uint)type);
        w.AddMetadata("llama.context_length", (uint)shape.ContextLength);
        w.AddMetadata("llama.embedding_length", (uint)shape.EmbeddingLength);
        w.AddMetadata("llama.block_count", (uint)shape.LayerCount);
        w.AddMetadata("llama.feed_forward_length", (uint)shape.FeedForwardLength);
        w.AddMetadata("llama.attention.head_count", (uint)shape.HeadCount);
        w.AddMetadata("llama.attention.head_count_kv", (uint)shape.KvHeadCount);
        w.AddMetadata("llama.rope.freq_base", shape.RopeFreqBase);
        w.AddMetadata("llama.rope.dimension_count", (uint)shape.HeadDim);
        w.AddMetadata("llama.attention.layer_norm_rms_epsilon", 1e-5f);
        w.AddMetadata("llama.vocab_size", (uint)shape.VocabSize);
        AddVocabulary(w, shape.VocabSize);

        ulong id = 0;
        void Matrix(string name, long cols, long rows) { ulong s = seed * 1000003 + ++id; w.AddTensor(name, type, [cols, rows], st => WriteMatrix(st, type, (int)cols, (int)rows, s)); }
        void Norm(string name) { ulong s = seed * 1000003 + ++id; w.AddTensor(name, [d], NormWeights((int)d, s)); }

        Matrix("token_embd.weight", d, shape.VocabSize);
        for (int l = 0; l < shape.LayerCount; l++)
        {
            string p = $"blk.{l}.";
            Norm(p + "attn_norm.weight");
            Matrix(p + "attn_q.weight", d, d);
            Matrix(p + "attn_k.weight", d, kv);
            Matrix(p + "attn_v.weight", d, kv);
            Matrix(p + "attn_output.weight", d, d);
            Norm(p + "ffn_norm.weight");
            Matrix(p + "ffn_gate.weight", d, ff);
            Matrix(p + "ffn_up.weight", d, ff);
            Matrix(p + "ffn_down.weight", ff, d);
        }
        Norm("output_norm.weight");

        string tmp = path + $".tmp{Environment.ProcessId}";
        try
        {
            w.Write(tmp);
            File.Move(tmp, path, overwrite: true);
        }
        finally { if (File.Exists(tmp)) File.Delete(tmp); }
    }

    /// <summary>Writes an SPM ("llama") vocabulary of <paramref name="size"/> tokens (≥ 259): <unk>, <s>, </s>, byte
    /// tokens, "▁", then "▁" + a base-26 letter string of the index (all distinct), scores 0 for specials and −i after.</summary>
    public static void AddVocabulary(GgufWriter w, int size)
    {
        const int special = 3, bytes = 256;
        if (size < special + bytes) throw new ArgumentException($"a synthetic vocabulary needs ≥ {special + bytes} tokens, not {size}");
        var tokens = new string[size];
        var scores = new float[size];
        var types = new int[size];
        tokens[0] = "<unk>"; types[0] = (int)Engine.Formats.TokenType.Unknown;
        tokens[1] = "<s>"; types[1] = (int)Engine.Formats.TokenType.Control;
        tokens[2] = "</s>"; types[2] = (int)Engine.Formats.TokenType.Control;
        for (int b = 0; b < bytes; b++) { tokens[special + b] = $"<0x{b:X2}>"; types[special + b] = (int)Engine.Formats.TokenType.Byte; }
        var sb = new System.Text.StringBuilder();
        for (int i = special + bytes; i < size; i++)
        {
            sb.Clear().Append('\u2581');   // the first piece is "▁" alone (a space), then "▁a", "▁b", …, "▁z", "▁aa", …
            for (int n = i - special - bytes - 1; n >= 0; n = n / 26 - 1) sb.Append((char)('a' + n % 26));
            tokens[i] = sb.ToString();
            scores[i] = -(i - special - bytes);
            types[i] = (int)Engine.Formats.TokenType.Normal;
        }
        w.AddMetadata(Engine.Formats.TokenizerKeys.Model, "llama");
        w.AddMetadata(Engine.Formats.TokenizerKeys.Tokens, tokens);
        w.AddMetadata(Engine.Formats.TokenizerKeys.Scores, scores);
        w.AddMetadata(Engine.Formats.TokenizerKeys.TokenType, types);
        w.AddMetadata(Engine.Formats.TokenizerKeys.BosId, 1u);
        w.AddMetadata(Engine.Formats.TokenizerKeys.EosId, 2u);
        w.AddMetadata(Engine.Formats.TokenizerKeys.UnkId, 0u);
        w.AddMetadata(Engine.Formats.TokenizerKeys.AddBos, true);
        w.AddMetadata(Engine.Formats.TokenizerKeys.AddEos, false);
    }

    private static float[] NormWeights(int n, ulong seed)
    {
        var r = new float[n];
        ulong s = seed;
        for (int i = 0; i < n; i++) r[i] = 1f + 0.05f * (2 * Uniform(ref s) - 1);
        return r;
    }

    /// <summary>Generates and quantizes the rows of one matrix in parallel chunks, writing each chunk as it completes.</summary>
    private static void WriteMatrix(Stream stream, DType type, int cols, int rows, ulong seed)
    {
        long rowBytes = type.ByteCount(cols);
        int chunkRows = (int)Math.Clamp((32L << 20) / rowBytes, 1, rows);
        var buffer = new byte[chunkRows * rowBytes];
        const float a = 0.0346f;   // √3 · 0.02: uniform with σ = 0.02
        for (int r0 = 0; r0 < rows; r0 += chunkRows)
        {
            int count = Math.Min(chunkRows, rows - r0);
            Parallel.For(0, count, () => new float[cols], (i, _, x) =>
            {
                ulong s = Mix(seed ^ ((ulong)(r0 + i) * 0x9E3779B97F4A7C15UL));
                for (int c = 0; c < cols; c++) x[c] = a * (2 * Uniform(ref s) - 1);
                Quantize.Row(type, x, buffer.AsSpan((int)(i * rowBytes), (int)rowBytes));
                return x;
            }, _ => { });
            stream.Write(buffer, 0, (int)(count * rowBytes));
        }
    }

    // splitmix64: fast, deterministic, good enough for weights.
    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    private static float Uniform(ref ulong state)
    {
        state += 0x9E3779B97F4A7C15UL;
        return (Mix(state) >> 40) * (1f / (1 << 24));
    }
}
