// Architecture coverage and load-time errors: the naive float64 oracle is checked against the numpy fixtures
// (llama, qwen2); a synthetic qwen3 GGUF (per-head q/k RMSNorm, explicit key_length ≠ dim / heads, NEOX RoPE, tied
// output) is checked against the oracle on both backends; unknown architectures and missing tensors fail with a
// ModelFormatException naming them; ModelConfig reads the GGUF keys.
using Engine.Formats;
using Engine.Formats.Gguf;
using Engine.Kernels;
using Engine.Model;

namespace Engine.Runtime.Tests;

public class ModelArchitectureTests
{
    private static readonly int[] ShortSeq = [1, 483, 321, 351, 459, 297, 397, 427, 117, 31, 155, 148];

    [TestCase("reference/llama-256x2/rand-llama-F32")]
    [TestCase("reference/qwen2-256x2/rand-qwen2-F32")]
    public void NaiveOracleMatchesNumpyFixture(string stem)
    {
        using var f = ModelFiles.Open(SharedData.Get(stem + ".gguf"));
        var expected = Fixtures.ReadLogits(stem + ".ref-np-f64.logits.f32");
        var naive = NaiveForward.Run(f, ShortSeq);
        double max = 0;
        for (int t = 0; t < ShortSeq.Length; t++)
            for (int i = 0; i < Fixtures.Vocab; i++) max = Math.Max(max, Math.Abs(naive[t][i] - expected[t * Fixtures.Vocab + i]));
        Assert.That(max, Is.LessThan(1e-5));
    }

    /// <summary>A small random-weight GGUF: qwen3 (q/k norms, key_length 32 with dim 64 → q width 128) or llama with
    /// partial RoPE (16 of 32 dims) and Llama-3 rope_freqs factors. Tied output in both.</summary>
    private static string WriteSynthetic(string dir, string arch)
    {
        bool qwen3 = arch == "qwen3";
        const int dim = 64, ff = 96, vocab = 80, layers = 2;
        int heads = qwen3 ? 4 : 2, kvHeads = qwen3 ? 2 : 1, hd = 32;
        var rng = new Random(qwen3 ? 77 : 78);
        float[] R(int count, double std, double mean = 0) =>
            Enumerable.Range(0, count).Select(_ => (float)(mean + std * Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()))).ToArray();
        var w = new GgufWriter()
            .AddMetadata("general.architecture", arch)
            .AddMetadata($"{arch}.embedding_length", (uint)dim)
            .AddMetadata($"{arch}.block_count", (uint)layers)
            .AddMetadata($"{arch}.feed_forward_length", (uint)ff)
            .AddMetadata($"{arch}.attention.head_count", (uint)heads)
            .AddMetadata($"{arch}.attention.head_count_kv", (uint)kvHeads)
            .AddMetadata($"{arch}.attention.layer_norm_rms_epsilon", 1e-6f)
            .AddMetadata($"{arch}.rope.freq_base", qwen3 ? 1000000f : 500000f)
            .AddMetadata($"{arch}.context_length", (uint)64)
            .AddTensor("token_embd.weight", [dim, vocab], R(dim * vocab, 0.5));
        if (qwen3) w.AddMetadata("qwen3.attention.key_length", (uint)hd).AddMetadata("qwen3.attention.value_length", (uint)hd);
        else w.AddMetadata("llama.rope.dimension_count", 16u).AddTensor("rope_freqs.weight", [8], [1f, 1f, 1.5f, 2f, 3f, 4f, 6f, 8f]);
        for (int l = 0; l < layers; l++)
        {
            string p = $"blk.{l}.";
            w.AddTensor(p + "attn_norm.weight", [dim], R(dim, 0.1, 1))
             .AddTensor(p + "attn_q.weight", [dim, heads * hd], R(dim * heads * hd, 0.15))
             .AddTensor(p + "attn_k.weight", [dim, kvHeads * hd], R(dim * kvHeads * hd, 0.15))
             .AddTensor(p + "attn_v.weight", [dim, kvHeads * hd], R(dim * kvHeads * hd, 0.1))
             .AddTensor(p + "attn_output.weight", [heads * hd, dim], R(heads * hd * dim, 0.1))
             .AddTensor(p + "ffn_norm.weight", [dim], R(dim, 0.1, 1))
             .AddTensor(p + "ffn_gate.weight", [dim, ff], R(dim * ff, 0.1))
             .AddTensor(p + "ffn_up.weight", [dim, ff], R(dim * ff, 0.1))
             .AddTensor(p + "ffn_down.weight", [ff, dim], R(ff * dim, 0.1));
            if (qwen3) w.AddTensor(p + "attn_q_norm.weight", [hd], R(hd, 0.2, 1)).AddTensor(p + "attn_k_norm.weight", [hd], R(hd, 0.2, 1));
        }
        w.AddTensor("output_norm.weight", [dim], R(dim, 0.1, 1));
        string path = Path.Combine(dir, arch + "-synthetic.gguf");
        w.Write(path);
        return path;
    }

    [TestCase("qwen3", "reference")]
    [TestCase("qwen3", "cpu")]
    [TestCase("llama", "reference")]
    [TestCase("llama", "cpu")]
    public void SyntheticModelMatchesNaiveOracle(string arch, string backendName)
    {
        string dir = Directory.CreateTempSubdirectory("engine-" + arch).FullName;
        try
        {
            using var f = ModelFiles.Open(WriteSynthetic(dir, arch));
            int[] tokens = [3, 17, 42, 5, 79, 0, 11, 64, 23, 8];
            var oracle = NaiveForward.Run(f, tokens);
            using var backend = Backends.Create(backendName, 2);
            var batch = Fixtures.RunLogits(f, backend, tokens, oneByOne: false);
            var decode = Fixtures.RunLogits(f, backend, tokens, oneByOne: true);
            using var model = ModelLoader.Load(f, backend);
            double maxB = 0, maxD = 0, scale = 0;
            for (int t = 0; t < tokens.Length; t++)
                for (int i = 0; i < 80; i++)
                {
                    maxB = Math.Max(maxB, Math.Abs(oracle[t][i] - batch[t * 80 + i]));
                    maxD = Math.Max(maxD, Math.Abs(oracle[t][i] - decode[t * 80 + i]));
                    scale = Math.Max(scale, Math.Abs(oracle[t][i]));
                }
            TestContext.Out.WriteLine($"{arch} {backendName}: max|Δ| batch {maxB:E3}, decode {maxD:E3}, max |logit| {scale:F2}");
            Assert.Multiple(() =>
            {
                Assert.That(model.Config.HeadDim, Is.EqualTo(32));
                if (arch == "qwen3") Assert.That(model.Config.QueryDim, Is.EqualTo(128), "key_length, not dim / heads");
                else Assert.That((model.Config.RopeDimensions, model.Weights.RopeFreqFactors?.Length), Is.EqualTo((16, 8)));
                Assert.That(model.Weights.Output.Name, Is.EqualTo("token_embd.weight"), "tied output");
                Assert.That(scale, Is.GreaterThan(1), "logits are not trivially small");
                Assert.That(maxB, Is.LessThan(1e-4));
                Assert.That(maxD, Is.LessThan(1e-4));
            });
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void UnknownArchitectureIsNamed()
    {
        string path = Path.Combine(Path.GetTempPath(), $"engine-gpt2-{Guid.NewGuid():N}.gguf");
        try
        {
            new GgufWriter().AddMetadata("general.architecture", "gpt2").AddTensor("token_embd.weight", [4, 4], new float[16]).Write(path);
            using var f = ModelFiles.Open(path);
            using var b = new ReferenceBackend();
            var ex = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(f, b));
            Assert.That(ex!.Message, Does.Contain("'gpt2'"));
        }
        finally { File.Delete(path); }
    }

    [Test]
    public void MissingTensorIsNamed()
    {
        // A llama GGUF re-labelled qwen2 lacks the q/k/v biases qwen2 requires.
        using var src = ModelFiles.Open(SharedData.Get("reference/llama-256x2/rand-llama-F32.gguf"));
        var md = src.Metadata.ToDictionary(kv => kv.Key.StartsWith("llama.") ? "qwen2." + kv.Key[6..] : kv.Key, kv => kv.Value);
        md["general.architecture"] = "qwen2";
        string path = Path.Combine(Path.GetTempPath(), $"engine-q2-{Guid.NewGuid():N}.gguf");
        try
        {
            var w = new GgufWriter().AddMetadata(md);
            foreach (var t in src.Tensors) w.AddTensor(t);
            w.Write(path);
            using var f = ModelFiles.Open(path);
            using var b = new ReferenceBackend();
            var ex = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(f, b));
            Assert.That(ex!.Message, Does.Contain("blk.0.attn_q.bias"));
        }
        finally { File.Delete(path); }
    }

    [Test]
    public void ConfigFromGgufKeys()
    {
        using var f = ModelFiles.Open(SharedData.Get("reference/stories260K/stories260K.gguf"));
        var c = ModelConfig.FromFile(f, RopeStyle.Normal);
        Assert.Multiple(() =>
        {
            // README section B: dim 64, hidden 172, 5 layers, 8 heads, 4 kv heads, vocab 512, context 512, rope dims 8.
            Assert.That((c.EmbeddingLength, c.FeedForwardLength, c.LayerCount, c.HeadCount, c.KvHeadCount), Is.EqualTo((64, 172, 5, 8, 4)));
            Assert.That((c.VocabSize, c.ContextLength, c.RopeDimensions, c.HeadDim), Is.EqualTo((512, 512, 8, 8)));
            Assert.That(c.RopeFreqBase, Is.EqualTo(10000f));
            Assert.That(c.RmsEpsilon, Is.EqualTo(1e-5f));
        });
    }
}
