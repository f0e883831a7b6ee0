// Tests: safetensors + config.json load into the same ModelFile (GGUF keys, GGUF names, GGUF row order) as a GGUF
// written independently with the same weights; the llama q/k un-permutation is also checked semantically
// (HF weights with rotate-half RoPE give the same attention scores as the loaded weights with adjacent-pair RoPE).
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Engine.Formats;
using Engine.Formats.Gguf;
using Engine.Formats.Safetensors;
using Engine.Tensors;

namespace Engine.Formats.Tests;

public class SafetensorsTests
{
    private const int Vocab = 10, Hidden = 8, Heads = 2, KvHeads = 1, HeadDim = 4, Ff = 12, Layers = 2;

    /// <summary>Writes a safetensors file: tensors given outermost-first (HF/numpy shape), data in the given order.</summary>
    internal static void WriteSafetensors(string path, IEnumerable<(string Name, string DType, long[] Shape, byte[] Data)> tensors)
    {
        var header = new Dictionary<string, object> { ["__metadata__"] = new Dictionary<string, string> { ["format"] = "pt" } };
        var data = new MemoryStream();
        foreach (var (name, dtype, shape, bytes) in tensors)
        {
            header[name] = new Dictionary<string, object> { ["dtype"] = dtype, ["shape"] = shape, ["data_offsets"] = new[] { data.Length, data.Length + bytes.Length } };
            data.Write(bytes);
        }
        var json = JsonSerializer.SerializeToUtf8Bytes(header);
        using var fs = File.Create(path);
        fs.Write(BitConverter.GetBytes((ulong)json.Length));
        fs.Write(json);
        data.Position = 0;
        data.CopyTo(fs);
    }

    private static byte[] Bytes(float[] a) => MemoryMarshal.AsBytes(a.AsSpan()).ToArray();

    private static float[] Rand(Random rng, int n) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();

    /// <summary>HF stores q/k rows in rotate-half order: HF row h·D + k·D/2 + j holds GGUF row h·D + 2j + k.</summary>
    private static float[] ToHfOrder(float[] gguf, int heads, int rowLength)
    {
        var hf = new float[gguf.Length];
        for (int h = 0; h < heads; h++)
            for (int j = 0; j < HeadDim / 2; j++)
                for (int k = 0; k < 2; k++)
                    Array.Copy(gguf, (h * HeadDim + 2 * j + k) * rowLength, hf, (h * HeadDim + k * HeadDim / 2 + j) * rowLength, rowLength);
        return hf;
    }

    private sealed record Model(Dictionary<string, float[]> Gguf, Dictionary<string, long[]> GgufShape, List<(string, string, long[], byte[])> Hf);

    private static Model MakeModel(string arch, int seed)
    {
        var rng = new Random(seed);
        var gguf = new Dictionary<string, float[]>();
        var shapes = new Dictionary<string, long[]>();
        var hf = new List<(string, string, long[], byte[])>();
        void Add(string hfName, string ggName, int outDim, int inDim, int permuteHeads = 0)
        {
            var w = Rand(rng, outDim * inDim);
            gguf[ggName] = w;
            shapes[ggName] = inDim == 1 ? [outDim] : [inDim, outDim];
            var stored = permuteHeads > 0 ? ToHfOrder(w, permuteHeads, inDim) : w;
            hf.Add((hfName, "F32", inDim == 1 ? [outDim] : [outDim, inDim], Bytes(stored)));
        }
        Add("model.embed_tokens.weight", "token_embd.weight", Vocab, Hidden);
        bool permute = arch == "llama";
        for (int l = 0; l < Layers; l++)
        {
            string p = $"model.layers.{l}.", g = $"blk.{l}.";
            Add(p + "input_layernorm.weight", g + "attn_norm.weight", Hidden, 1);
            Add(p + "self_attn.q_proj.weight", g + "attn_q.weight", Heads * HeadDim, Hidden, permute ? Heads : 0);
            Add(p + "self_attn.k_proj.weight", g + "attn_k.weight", KvHeads * HeadDim, Hidden, permute ? KvHeads : 0);
            Add(p + "self_attn.v_proj.weight", g + "attn_v.weight", KvHeads * HeadDim, Hidden);
            if (arch != "qwen3")
            {
                Add(p + "self_attn.q_proj.bias", g + "attn_q.bias", Heads * HeadDim, 1, permute ? Heads : 0);
                Add(p + "self_attn.k_proj.bias", g + "attn_k.bias", KvHeads * HeadDim, 1, permute ? KvHeads : 0);
                Add(p + "self_attn.v_proj.bias", g + "attn_v.bias", KvHeads * HeadDim, 1);
            }
            else
            {
                Add(p + "self_attn.q_norm.weight", g + "attn_q_norm.weight", HeadDim, 1);
                Add(p + "self_attn.k_norm.weight", g + "attn_k_norm.weight", HeadDim, 1);
            }
            Add(p + "self_attn.o_proj.weight", g + "attn_output.weight", Hidden, Heads * HeadDim);
            Add(p + "post_attention_layernorm.weight", g + "ffn_norm.weight", Hidden, 1);
            Add(p + "mlp.gate_proj.weight", g + "ffn_gate.weight", Ff, Hidden);
            Add(p + "mlp.up_proj.weight", g + "ffn_up.weight", Ff, Hidden);
            Add(p + "mlp.down_proj.weight", g + "ffn_down.weight", Hidden, Ff);
        }
        Add("model.norm.weight", "output_norm.weight", Hidden, 1);
        Add("lm_head.weight", "output.weight", Vocab, Hidden);
        hf.Reverse(); // the loader must not depend on file order
        return new Model(gguf, shapes, hf);
    }

    private static string Config(string hfArch) => $$"""
        { "architectures": ["{{hfArch}}"], "hidden_size": {{Hidden}}, "intermediate_size": {{Ff}},
          "num_hidden_layers": {{Layers}}, "num_attention_heads": {{Heads}}, "num_key_value_heads": {{KvHeads}},
          "head_dim": {{HeadDim}}, "max_position_embeddings": 64, "rms_norm_eps": 1e-06, "rope_theta": 500000.0,
          "vocab_size": {{Vocab}}, "tie_word_embeddings": false, "torch_dtype": "float32", "bos_token_id": 1, "eos_token_id": 2 }
        """;

    [TestCase("LlamaForCausalLM", "llama")]
    [TestCase("Qwen2ForCausalLM", "qwen2")]
    [TestCase("Qwen3ForCausalLM", "qwen3")]
    public void HfFolder_EqualsHandWrittenGguf(string hfArch, string arch)
    {
        var model = MakeModel(arch, 11);
        var dir = Directory.CreateTempSubdirectory("engine-hf-");
        try
        {
            WriteSafetensors(Path.Combine(dir.FullName, "model.safetensors"), model.Hf);
            File.WriteAllText(Path.Combine(dir.FullName, "config.json"), Config(hfArch));
            File.WriteAllText(Path.Combine(dir.FullName, "tokenizer.json"), "{}");

            // The GGUF llama.cpp's converter would write for the same model (keys written out by hand here).
            var w = new GgufWriter();
            w.AddMetadata("general.architecture", arch);
            w.AddMetadata($"{arch}.block_count", (uint)Layers);
            w.AddMetadata($"{arch}.context_length", 64u);
            w.AddMetadata($"{arch}.embedding_length", (uint)Hidden);
            w.AddMetadata($"{arch}.feed_forward_length", (uint)Ff);
            w.AddMetadata($"{arch}.attention.head_count", (uint)Heads);
            w.AddMetadata($"{arch}.attention.head_count_kv", (uint)KvHeads);
            w.AddMetadata($"{arch}.rope.freq_base", 500000f);
            w.AddMetadata($"{arch}.attention.layer_norm_rms_epsilon", 1e-6f);
            w.AddMetadata($"{arch}.vocab_size", (uint)Vocab);
            if (arch == "llama") w.AddMetadata("llama.rope.dimension_count", (uint)HeadDim);
            w.AddMetadata("tokenizer.ggml.bos_token_id", 1u);
            w.AddMetadata("tokenizer.ggml.eos_token_id", 2u);
            foreach (var (name, data) in model.Gguf) w.AddTensor(name, model.GgufShape[name], data);
            using var gguf = GgufReader.Read(w.ToArray());

            using var st = ModelFiles.Open(dir.FullName);
            Assert.That(st.Format, Is.EqualTo(ModelFileFormat.Safetensors));
            Assert.That(TestUtil.MetadataDifferences(gguf.Metadata, st.Metadata), Is.Empty);
            Assert.That(st.GetString(TokenizerKeys.TokenizerJsonPath), Is.EqualTo(Path.Combine(dir.FullName, "tokenizer.json")));
            Assert.That(st.Tensors.Select(t => t.Name), Is.EquivalentTo(gguf.Tensors.Select(t => t.Name)));
            foreach (var g in gguf.Tensors)
            {
                var s = st.GetTensor(g.Name);
                Assert.That(s.Type, Is.EqualTo(g.Type), g.Name);
                Assert.That(s.Shape, Is.EqualTo(g.Shape), g.Name);
                Assert.That(s.Bytes.SequenceEqual(g.Bytes), Is.True, $"{g.Name} bytes");
            }
            if (arch == "llama") AssertRopeEquivalent(model, st);
        }
        finally { dir.Delete(true); }
    }

    // Attention score of query head h against its kv head, computed from the HF weights with rotate-half RoPE and
    // from the loaded (GGUF-order) weights with adjacent-pair RoPE, must agree for any input and positions.
    private static void AssertRopeEquivalent(Model model, ModelFile loaded)
    {
        var rng = new Random(3);
        var hfQ = ToHfOrder(model.Gguf["blk.0.attn_q.weight"], Heads, Hidden);
        var hfK = ToHfOrder(model.Gguf["blk.0.attn_k.weight"], KvHeads, Hidden);
        var q = MemoryMarshal.Cast<byte, float>(loaded.GetTensor("blk.0.attn_q.weight").Bytes).ToArray();
        var k = MemoryMarshal.Cast<byte, float>(loaded.GetTensor("blk.0.attn_k.weight").Bytes).ToArray();
        for (int trial = 0; trial < 5; trial++)
        {
            var x = Rand(rng, Hidden); var y = Rand(rng, Hidden);
            int px = rng.Next(64), py = rng.Next(64);
            for (int h = 0; h < Heads; h++)
            {
                int kvh = h / (Heads / KvHeads);
                double neox = Dot(Rope(Project(hfQ, x, h), px, neox: true), Rope(Project(hfK, y, kvh), py, neox: true));
                double normal = Dot(Rope(Project(q, x, h), px, neox: false), Rope(Project(k, y, kvh), py, neox: false));
                Assert.That(normal, Is.EqualTo(neox).Within(1e-9), $"head {h}");
            }
        }
    }

    private static double[] Project(float[] w, float[] x, int head)
    {
        var r = new double[HeadDim];
        for (int i = 0; i < HeadDim; i++)
            for (int c = 0; c < Hidden; c++) r[i] += (double)w[(head * HeadDim + i) * Hidden + c] * x[c];
        return r;
    }

    private static double[] Rope(double[] v, int pos, bool neox)
    {
        var r = (double[])v.Clone();
        for (int i = 0; i < HeadDim / 2; i++)
        {
            double theta = pos * Math.Pow(500000.0, -2.0 * i / HeadDim);
            int a = neox ? i : 2 * i, b = neox ? i + HeadDim / 2 : 2 * i + 1;
            r[a] = v[a] * Math.Cos(theta) - v[b] * Math.Sin(theta);
            r[b] = v[a] * Math.Sin(theta) + v[b] * Math.Cos(theta);
        }
        return r;
    }

    private static double Dot(double[] a, double[] b) => a.Zip(b, (p, q) => p * q).Sum();

    [Test]
    public void LoneSafetensors_KeepsNamesAndReversesShape()
    {
        var half = new Half[] { (Half)1, (Half)(-2), (Half)0.5f, (Half)3, (Half)4, (Half)5 };
        var bytes = MemoryMarshal.AsBytes(half.AsSpan()).ToArray();
        var dir = Directory.CreateTempSubdirectory("engine-st-");
        try
        {
            var p = Path.Combine(dir.FullName, "x.safetensors");
            WriteSafetensors(p, [("a", "F16", [2, 3], bytes), ("b", "BF16", [], new byte[2])]);
            using var m = ModelFiles.Open(p);
            Assert.That(m.GetTensor("a").Type, Is.EqualTo(DType.F16));
            Assert.That(m.GetTensor("a").Shape, Is.EqualTo(new long[] { 3, 2 }));
            Assert.That(m.GetTensor("a").Bytes.SequenceEqual(bytes));
            Assert.That(m.GetTensor("b").Shape, Is.EqualTo(new long[] { 1 }));
        }
        finally { dir.Delete(true); }
    }

    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", 8)]   // span ≠ shape × dtype
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8)]   // past the buffer
    [TestCase("{\"a\":{\"dtype\":\"Q9\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8)]     // unknown dtype
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8)]   // negative dim
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8)] // overlap
    [TestCase("{\"a\":", 8)]                                                               // bad JSON
    public void BadHeaders_Throw(string json, int dataBytes)
    {
        var j = Encoding.UTF8.GetBytes(json);
        var file = BitConverter.GetBytes((ulong)j.Length).Concat(j).Concat(new byte[dataBytes]).ToArray();
        Assert.Throws<ModelFormatException>(() => SafetensorsReader.Read(file));
    }
}

public class HfConfigTests
{
    private static string Folder(string config)
    {
        var dir = Directory.CreateTempSubdirectory("engine-hfcfg-").FullName;
        SafetensorsTests.WriteSafetensors(Path.Combine(dir, "model.safetensors"), [("model.norm.weight", "F32", [8], new byte[32])]);
        File.WriteAllText(Path.Combine(dir, "config.json"), config);
        return dir;
    }

    [TestCase("""{"architectures": ["GPT2LMHeadModel"], "hidden_size": 8}""", "not supported")]
    [TestCase("""{"architectures": ["LlamaForCausalLM"], "hidden_size": "eight"}""", "hidden_size")]
    [TestCase("""{"architectures": [7]}""", "config.json")]
    [TestCase("""{"architectures": ["LlamaForCausalLM"], "hidden_size": 8, "num_attention_heads": 3, "num_hidden_layers": 1, "intermediate_size": 4, "vocab_size": 4}""", "")]
    [TestCase("""{"architectures": ["LlamaForCausalLM"], """, "JSON")]
    public void BadConfig_ThrowsModelFormatException(string config, string fragment)
    {
        var dir = Folder(config);
        try
        {
            var e = Assert.Throws<ModelFormatException>(() => ModelFiles.Open(dir));
            Assert.That(e!.Message, Does.Contain(fragment));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void EosList_TakesFirstId()
    {
        var dir = Folder("""{"architectures": ["LlamaForCausalLM"], "hidden_size": 8, "num_attention_heads": 2, "num_hidden_layers": 1, "intermediate_size": 4, "vocab_size": 4, "eos_token_id": [5, 6], "bos_token_id": 3}""");
        try
        {
            using var m = ModelFiles.Open(dir);
            Assert.That(m.Metadata[TokenizerKeys.EosId], Is.EqualTo(5u));
            Assert.That(m.Metadata[TokenizerKeys.BosId], Is.EqualTo(3u));
            Assert.That(m.GetInteger("llama.rope.dimension_count"), Is.EqualTo(4));
            Assert.That(m.TryGetTensor("output_norm.weight", out _), Is.True);
        }
        finally { Directory.Delete(dir, true); }
    }
}

public class HfConvertTests
{
    [Test]
    public void HfFolder_ToGguf_ReadsBackIdentically()
    {
        var dir = Directory.CreateTempSubdirectory("engine-hfconv-").FullName;
        try
        {
            var rng = new Random(5);
            var q = new byte[8 * 8 * 4]; rng.NextBytes(q);
            SafetensorsTests.WriteSafetensors(Path.Combine(dir, "model.safetensors"),
                [("model.layers.0.self_attn.q_proj.weight", "BF16", [8, 16], q[..256]), ("model.norm.weight", "F32", [8], q[..32])]);
            File.WriteAllText(Path.Combine(dir, "config.json"),
                """{"architectures": ["Qwen2ForCausalLM"], "hidden_size": 8, "num_attention_heads": 2, "num_hidden_layers": 1, "intermediate_size": 4, "vocab_size": 4}""");
            using var st = ModelFiles.Open(dir);
            var outPath = Path.Combine(dir, "out.gguf");
            Engine.Formats.Gguf.GgufWriter.Write(st, outPath);
            using var g = ModelFiles.Open(outPath);
            Assert.That(TestUtil.MetadataDifferences(st.Metadata, g.Metadata), Is.Empty);
            foreach (var t in st.Tensors)
            {
                Assert.That(g.GetTensor(t.Name).Shape, Is.EqualTo(t.Shape));
                Assert.That(g.GetTensor(t.Name).Bytes.SequenceEqual(t.Bytes), Is.True, t.Name);
            }
            Assert.That(g.GetTensor("blk.0.attn_q.weight").Type, Is.EqualTo(DType.BF16));
            Assert.That(g.GetTensor("blk.0.attn_q.weight").Shape, Is.EqualTo(new long[] { 16, 8 }));
        }
        finally { Directory.Delete(dir, true); }
    }
}

public class Llama3RopeScalingTests
{
    [Test]
    public void Llama32Config_GetsRopeFreqsTensor()
    {
        var dir = Directory.CreateTempSubdirectory("engine-l3-").FullName;
        try
        {
            SafetensorsTests.WriteSafetensors(Path.Combine(dir, "model.safetensors"), [("model.norm.weight", "F32", [128], new byte[512])]);
            File.WriteAllText(Path.Combine(dir, "config.json"), """
                {"architectures": ["LlamaForCausalLM"], "hidden_size": 128, "num_attention_heads": 2, "num_hidden_layers": 1,
                 "intermediate_size": 4, "vocab_size": 4, "rope_theta": 500000.0, "head_dim": 64,
                 "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                  "original_max_position_embeddings": 8192, "rope_type": "llama3"}}
                """);
            using var m = ModelFiles.Open(dir);
            var t = m.GetTensor("rope_freqs.weight");
            var f = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(t.Bytes).ToArray();
            Assert.That(t.Shape, Is.EqualTo(new long[] { 32 }));
            // Hand-computed: wavelength 2π·500000^(2i/64) < 8192/4 for i ≤ 14 (factor 1), > 8192 for i ≥ 18 (factor 32);
            // i = 16: wavelength 4442.88, smooth = (8192/4442.88 − 1)/3 = 0.28129, factor = 1/((1 − s)/32 + s) = 3.2922.
            Assert.Multiple(() =>
            {
                for (int i = 0; i <= 14; i++) Assert.That(f[i], Is.EqualTo(1f), $"i={i}");
                for (int i = 18; i < 32; i++) Assert.That(f[i], Is.EqualTo(32f), $"i={i}");
                Assert.That(f[16], Is.EqualTo(3.2922f).Within(1e-3));
                Assert.That(f[15], Is.GreaterThan(1f).And.LessThan(f[16]));
                Assert.That(f[17], Is.GreaterThan(f[16]).And.LessThan(32f));
                Assert.That(m.Metadata.ContainsKey("llama.rope.scaling.type"), Is.False);
            });
        }
        finally { Directory.Delete(dir, true); }
    }
}
