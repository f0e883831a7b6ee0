// Owns: turning a Hugging Face checkpoint (config.json + one or more .safetensors) into the ModelFile a GGUF of the
// same model gives: GGUF metadata keys ({arch}.block_count, ...) and GGUF tensor names (blk.N.attn_q.weight, ...).
// Supported architectures: LlamaForCausalLM → llama, Qwen2ForCausalLM → qwen2, Qwen3ForCausalLM → qwen3.
// RoPE: HF Llama stores q_proj/k_proj rows permuted for rotate-half (NEOX) RoPE; GGUF llama uses "normal" RoPE
// (adjacent pairs). As llama.cpp's converter does, q/k weights (and biases) of arch llama are un-permuted at load:
// GGUF row h·D + 2j + k = HF row h·D + k·D/2 + j (head h, head_dim D, pair j, k ∈ {0,1}). Those tensors are copied
// (the only copies); everything else is a zero-copy view. Qwen2/Qwen3 keep NEOX RoPE in GGUF too: no permutation.
// Tokenizer: tokenizer.json beside → metadata engine.tokenizer_json_path; tokenizer_config.json chat_template →
// tokenizer.chat_template. rope_scaling type "llama3" → a computed rope_freqs.weight tensor (as in GGUF Llama 3.x);
// other scaling types → {arch}.rope.scaling.type/factor/original_context_length keys.
// Invariant: every problem is a ModelFormatException naming the file.
using System.Text.Json;
using System.Text.RegularExpressions;
using Engine.Tensors;

namespace Engine.Formats.Safetensors;

public static unsafe partial class HfModelLoader
{
    /// <summary>Opens a folder (or a .safetensors file whose folder holds config.json).</summary>
    public static ModelFile Open(string path)
    {
        string dir = Directory.Exists(path) ? path : Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".";
        string configPath = Path.Combine(dir, "config.json");
        if (!File.Exists(configPath)) throw new ModelFormatException(path, -1, "config.json not found beside the safetensors files");
        string[] shards = Directory.Exists(path) || File.Exists(Path.Combine(dir, "model.safetensors.index.json"))
            ? FindShards(dir) : [Path.GetFullPath(path)];
        if (shards.Length == 0) throw new ModelFormatException(path, -1, "no .safetensors files in the folder");

        var owners = new List<IDisposable>();
        try
        {
            var raw = new List<TensorView>();
            foreach (var shard in shards)
            {
                var map = Llama2c.Llama2cTokenizerReader.OpenMapped(shard);
                owners.Add(map);
                raw.AddRange(SafetensorsReader.ParseTensors(shard, map.Pointer, map.Length));
            }
            var (metadata, arch, headCount, kvHeadCount, headDim, ropeFactors) = ReadConfig(configPath);
            AddTokenizer(dir, metadata);
            var tensors = MapTensors(configPath, raw, arch, headCount, kvHeadCount, headDim, owners);
            if (ropeFactors != null && !tensors.Any(t => t.Name == "rope_freqs.weight"))
            {
                var bytes = new NativeBytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(ropeFactors.AsSpan()));
                owners.Add(bytes);
                tensors.Add(new TensorView("rope_freqs.weight", DType.F32, [ropeFactors.Length], (nint)bytes.Pointer, bytes.Length));
            }
            return new ModelFile(Directory.Exists(path) ? dir : path, ModelFileFormat.Safetensors, metadata, tensors,
                new CompositeOwner(owners));
        }
        catch
        {
            foreach (var o in owners) o.Dispose();
            throw;
        }
    }

    private static string[] FindShards(string dir)
    {
        var index = Path.Combine(dir, "model.safetensors.index.json");
        if (File.Exists(index))
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllBytes(index));
                return doc.RootElement.GetProperty("weight_map").EnumerateObject()
                    .Select(p => Path.Combine(dir, p.Value.GetString()!)).Distinct().Order(StringComparer.Ordinal).ToArray();
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
            {
                throw new ModelFormatException(index, -1, $"bad safetensors index: {e.Message}", e);
            }
        }
        return Directory.GetFiles(dir, "*.safetensors").Order(StringComparer.Ordinal).ToArray();
    }

    private static (Dictionary<string, object>, string, int, int, int, float[]?) ReadConfig(string configPath)
    {
        try
        {
            return ReadConfigUnchecked(configPath);
        }
        catch (InvalidOperationException e) // a JSON value of an unexpected kind (e.g. a string where a number belongs)
        {
            throw new ModelFormatException(configPath, -1, $"unexpected value in config.json: {e.Message}", e);
        }
    }

    private static (Dictionary<string, object>, string, int, int, int, float[]?) ReadConfigUnchecked(string configPath)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(configPath)); }
        catch (JsonException e) { throw new ModelFormatException(configPath, -1, $"not valid JSON: {e.Message}", e); }
        using (doc)
        {
            var c = doc.RootElement;
            ModelFormatException Bad(string problem) => new(configPath, -1, problem);
            string? archName = c.TryGetProperty("architectures", out var a) && a.ValueKind == JsonValueKind.Array && a.GetArrayLength() > 0
                ? a[0].GetString() : null;
            string arch = archName switch
            {
                "LlamaForCausalLM" => "llama",
                "Qwen2ForCausalLM" => "qwen2",
                "Qwen3ForCausalLM" => "qwen3",
                _ => throw Bad($"architecture '{archName ?? "(none)"}' is not supported (LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM)"),
            };
            int Int(string key, int? fallback = null)
            {
                if (c.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i) && i > 0) return i;
                if (v.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null && fallback != null) return fallback.Value;
                throw Bad($"'{key}' is missing or not a positive integer");
            }
            double Num(string key, double fallback) =>
                c.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : fallback;

            int hidden = Int("hidden_size"), heads = Int("num_attention_heads");
            int kvHeads = Int("num_key_value_heads", heads);
            if (!c.TryGetProperty("head_dim", out _) && hidden % heads != 0)
                throw Bad($"hidden_size {hidden} is not a multiple of num_attention_heads {heads}");
            int headDim = Int("head_dim", hidden / heads);
            if (heads % kvHeads != 0) throw Bad($"num_attention_heads {heads} is not a multiple of num_key_value_heads {kvHeads}");
            if (headDim % 2 != 0) throw Bad($"head_dim {headDim} is odd");
            var md = new Dictionary<string, object>(StringComparer.Ordinal)
            {
                ["general.architecture"] = arch,
                ["general.name"] = Path.GetFileName(Path.GetDirectoryName(Path.GetFullPath(configPath))) ?? arch,
                [$"{arch}.block_count"] = (uint)Int("num_hidden_layers"),
                [$"{arch}.context_length"] = (uint)Int("max_position_embeddings", 2048),
                [$"{arch}.embedding_length"] = (uint)hidden,
                [$"{arch}.feed_forward_length"] = (uint)Int("intermediate_size"),
                [$"{arch}.attention.head_count"] = (uint)heads,
                [$"{arch}.attention.head_count_kv"] = (uint)kvHeads,
                [$"{arch}.rope.freq_base"] = (float)Num("rope_theta", 10000),
                [$"{arch}.attention.layer_norm_rms_epsilon"] = (float)Num("rms_norm_eps", 1e-6),
                [$"{arch}.vocab_size"] = (uint)Int("vocab_size"),
            };
            if (arch == "llama") md[$"{arch}.rope.dimension_count"] = (uint)headDim;
            if (headDim != hidden / heads || arch == "qwen3")
            {
                md[$"{arch}.attention.key_length"] = (uint)headDim;
                md[$"{arch}.attention.value_length"] = (uint)headDim;
            }
            float[]? ropeFactors = null;
            if (c.TryGetProperty("rope_scaling", out var rs) && rs.ValueKind == JsonValueKind.Object)
            {
                string type = rs.TryGetProperty("rope_type", out var rt) || rs.TryGetProperty("type", out rt) ? rt.GetString() ?? "" : "";
                if (type == "llama3" && arch == "llama")
                    ropeFactors = Llama3RopeFactors(rs, Num("rope_theta", 10000), headDim);
                else if (type is not ("default" or ""))
                {
                    md[$"{arch}.rope.scaling.type"] = type;
                    if (rs.TryGetProperty("factor", out var f) && f.ValueKind == JsonValueKind.Number)
                        md[$"{arch}.rope.scaling.factor"] = (float)f.GetDouble();
                    if (rs.TryGetProperty("original_max_position_embeddings", out var o) && o.ValueKind == JsonValueKind.Number && o.TryGetInt32(out int oi))
                        md[$"{arch}.rope.scaling.original_context_length"] = (uint)oi;
                }
            }
            if (c.TryGetProperty("torch_dtype", out var td) && td.ValueKind == JsonValueKind.String)
                md["general.file_type"] = td.GetString() switch { "float32" => 0u, "float16" => 1u, "bfloat16" => 32u, _ => 0u };
            if (c.TryGetProperty("bos_token_id", out var bos) && FirstId(bos) is uint b) md[TokenizerKeys.BosId] = b;
            if (c.TryGetProperty("eos_token_id", out var eos) && FirstId(eos) is uint e) md[TokenizerKeys.EosId] = e;
            return (md, arch, heads, kvHeads, headDim, ropeFactors);
        }
    }

    /// <summary>
    /// Llama 3.1-style RoPE scaling as GGUF stores it: a `rope_freqs.weight` F32 [headDim/2] tensor of per-frequency
    /// divisors (θ_i / factor_i). Source: Meta's Llama 3.1 `apply_scaling` (factor, low/high_freq_factor,
    /// original_max_position_embeddings), as llama.cpp's converter writes it; computed here in float64, stored as float32.
    /// </summary>
    internal static float[] Llama3RopeFactors(JsonElement rs, double ropeTheta, int headDim)
    {
        double Get(string key, double fallback) =>
            rs.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : fallback;
        double factor = Get("factor", 8), low = Get("low_freq_factor", 1), high = Get("high_freq_factor", 4);
        double oldContext = Get("original_max_position_embeddings", 8192);
        double lowWavelen = oldContext / low, highWavelen = oldContext / high;
        var result = new float[headDim / 2];
        for (int i = 0; i < result.Length; i++)
        {
            double freq = 1.0 / Math.Pow(ropeTheta, 2.0 * i / headDim);
            double wavelen = 2 * Math.PI / freq;
            double f;
            if (wavelen < highWavelen) f = 1;
            else if (wavelen > lowWavelen) f = factor;
            else
            {
                double smooth = (oldContext / wavelen - low) / (high - low);
                f = 1 / ((1 - smooth) / factor + smooth);
            }
            result[i] = (float)f;
        }
        return result;
    }

    // An id, or the first of a list of ids (Llama 3.1 lists several EOS ids; the tokenizer.json holds all of them).
    private static uint? FirstId(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.Number when v.TryGetUInt32(out uint id) => id,
        JsonValueKind.Array when v.GetArrayLength() > 0 => FirstId(v[0]),
        _ => null,
    };

    private static void AddTokenizer(string dir, Dictionary<string, object> md)
    {
        var tj = Path.Combine(dir, "tokenizer.json");
        if (File.Exists(tj)) md[TokenizerKeys.TokenizerJsonPath] = Path.GetFullPath(tj);
        var tc = Path.Combine(dir, "tokenizer_config.json");
        if (!File.Exists(tc)) return;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(tc));
            if (doc.RootElement.TryGetProperty("chat_template", out var ct) && ct.ValueKind == JsonValueKind.String)
                md[TokenizerKeys.ChatTemplate] = ct.GetString()!;
            if (doc.RootElement.TryGetProperty("add_bos_token", out var ab) && ab.ValueKind is JsonValueKind.True or JsonValueKind.False)
                md[TokenizerKeys.AddBos] = ab.GetBoolean();
            if (doc.RootElement.TryGetProperty("add_eos_token", out var ae) && ae.ValueKind is JsonValueKind.True or JsonValueKind.False)
                md[TokenizerKeys.AddEos] = ae.GetBoolean();
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new ModelFormatException(tc, -1, $"not valid tokenizer_config.json: {e.Message}", e);
        }
    }

    [GeneratedRegex(@"^model\.layers\.(\d+)\.(.+)$")]
    private static partial Regex LayerName();

    private static readonly Dictionary<string, string> LayerMap = new(StringComparer.Ordinal)
    {
        ["self_attn.q_proj"] = "attn_q", ["self_attn.k_proj"] = "attn_k", ["self_attn.v_proj"] = "attn_v",
        ["self_attn.o_proj"] = "attn_output", ["mlp.gate_proj"] = "ffn_gate", ["mlp.up_proj"] = "ffn_up",
        ["mlp.down_proj"] = "ffn_down", ["input_layernorm"] = "attn_norm", ["post_attention_layernorm"] = "ffn_norm",
        ["self_attn.q_norm"] = "attn_q_norm", ["self_attn.k_norm"] = "attn_k_norm",
    };

    /// <summary>The GGUF name of an HF tensor name, or null when it has none (kept under its HF name).</summary>
    public static string? GgufName(string hf)
    {
        switch (hf)
        {
            case "model.embed_tokens.weight": return "token_embd.weight";
            case "model.norm.weight": return "output_norm.weight";
            case "lm_head.weight": return "output.weight";
        }
        var m = LayerName().Match(hf);
        if (!m.Success) return null;
        var rest = m.Groups[2].Value;
        int dot = rest.LastIndexOf('.');
        if (dot < 0) return null;
        var (module, suffix) = (rest[..dot], rest[(dot + 1)..]);
        return LayerMap.TryGetValue(module, out var g) && suffix is "weight" or "bias" ? $"blk.{m.Groups[1].Value}.{g}.{suffix}" : null;
    }

    private static List<TensorView> MapTensors(string file, List<TensorView> raw, string arch, int heads, int kvHeads, int headDim,
        List<IDisposable> owners)
    {
        var result = new List<TensorView>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in raw)
        {
            if (t.Name.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal)) continue; // derived buffer, not a weight
            string name = GgufName(t.Name) ?? t.Name;
            if (!names.Add(name)) throw new ModelFormatException(file, -1, $"tensor '{name}' appears twice across the shards");
            var view = new TensorView(name, t.Type, t.Shape, t.Data, t.ByteLength);
            if (arch == "llama" && (name.EndsWith(".attn_q.weight") || name.EndsWith(".attn_q.bias")))
                view = Unpermute(file, view, heads, headDim, owners);
            else if (arch == "llama" && (name.EndsWith(".attn_k.weight") || name.EndsWith(".attn_k.bias")))
                view = Unpermute(file, view, kvHeads, headDim, owners);
            result.Add(view);
        }
        return result;
    }

    /// <summary>Copies <paramref name="t"/> with its rows reordered from HF rotate-half order to GGUF adjacent-pair order.</summary>
    internal static TensorView Unpermute(string file, TensorView t, int headCount, int headDim, List<IDisposable> owners)
    {
        long rows = t.Shape.Length == 1 ? t.Shape[0] : t.RowCount;
        long rowBytes = t.Shape.Length == 1 ? t.ByteLength / Math.Max(1, rows) : t.RowBytes;
        if (rows != (long)headCount * headDim)
            throw new ModelFormatException(file, -1, $"tensor '{t.Name}' has {rows} rows, expected {headCount} heads × {headDim}");
        var copy = new NativeBytes(new ReadOnlySpan<byte>((void*)t.Data, checked((int)t.ByteLength)));
        owners.Add(copy);
        int half = headDim / 2;
        byte* src = (byte*)t.Data, dst = copy.Pointer;
        for (int h = 0; h < headCount; h++)
            for (int j = 0; j < half; j++)
                for (int k = 0; k < 2; k++)
                {
                    long to = (long)h * headDim + 2 * j + k, from = (long)h * headDim + k * half + j;
                    Buffer.MemoryCopy(src + from * rowBytes, dst + to * rowBytes, rowBytes, rowBytes);
                }
        return new TensorView(t.Name, t.Type, t.Shape, (nint)dst, t.ByteLength);
    }

    private sealed class CompositeOwner(List<IDisposable> owners) : IDisposable
    {
        public void Dispose()
        {
            foreach (var o in owners) o.Dispose();
            owners.Clear();
        }
    }
}
