// Tests of the bench logic (Engine.Runtime.Benchmarking and `engine bench`): the synthetic writer produces a loadable
// GGUF of the asked shape and type whose weights decode to the documented distribution; ModelBenchmark on the tiny
// stories260K model yields one row per (depth × test) with positive tokens/s; --json prints exactly the required fields
// on stdout (progress on stderr); mean/sd against hand-computed values; the streaming GGUF producer's byte-count check.
using System.CommandLine;
using System.Text.Json;
using Engine.Cli.Commands;
using Engine.Formats;
using Engine.Formats.Gguf;
using Engine.Model;
using Engine.Runtime.Benchmarking;
using Engine.Tensors;
using Engine.Tensors.Quants;

namespace Engine.Runtime.Tests;

[NonParallelizable]
public class BenchmarkTests
{
    private string _dir = "";

    [SetUp] public void SetUp() { _dir = Path.Combine(Path.GetTempPath(), "engine-bench-test-" + Guid.NewGuid().ToString("N")); Directory.CreateDirectory(_dir); }
    [TearDown] public void TearDown() { if (Directory.Exists(_dir)) Directory.Delete(_dir, true); }

    [TestCase(DType.Q4_0)]
    [TestCase(DType.F16)]
    [TestCase(DType.Q6_K)]
    public void SyntheticTinyIsALoadableGgufOfTheShape(DType type)
    {
        var shape = SyntheticModel.Tiny;
        string path = SyntheticModel.Ensure(shape, type, _dir);
        Assert.That(Path.GetFileName(path), Does.Contain(type.ToString().ToLowerInvariant()), "cache name includes the type");
        Assert.That(Directory.GetFiles(_dir), Has.Length.EqualTo(1), "no temporary file left behind");
        using var file = ModelFiles.Open(path);
        using var backend = Backends.Create("cpu", 2);
        using var model = ModelLoader.Load(file, backend);
        var c = model.Config;
        Assert.Multiple(() =>
        {
            Assert.That((c.EmbeddingLength, c.LayerCount, c.HeadCount, c.KvHeadCount, c.FeedForwardLength, c.VocabSize),
                Is.EqualTo((shape.EmbeddingLength, shape.LayerCount, shape.HeadCount, shape.KvHeadCount, shape.FeedForwardLength, shape.VocabSize)));
            Assert.That(c.RopeFreqBase, Is.EqualTo(shape.RopeFreqBase));
            Assert.That(file.TryGetTensor("output.weight", out _), Is.False, "tied embeddings");
            Assert.That(file.Tensors, Has.Count.EqualTo(2 + 9 * shape.LayerCount));
            Assert.That(file.GetTensor("blk.1.ffn_down.weight").Type, Is.EqualTo(type));
            Assert.That(file.GetTensor("blk.0.attn_norm.weight").Type, Is.EqualTo(DType.F32));
        });
        // Weights decode to the documented distribution: |w| ≤ √3·0.02 (+ quantization error), σ ≈ 0.02.
        var row = new float[shape.EmbeddingLength];
        Dequant.Row(type, file.GetTensor("blk.0.attn_q.weight").Row(3), row);
        double sd = Math.Sqrt(row.Average(v => (double)v * v));
        Assert.That(sd, Is.InRange(0.015, 0.025));
        Assert.That(row.Max(Math.Abs), Is.LessThan(0.04));
        var norm = WeightLoaderProbe.Floats(file.GetTensor("blk.0.attn_norm.weight"));
        Assert.That(norm.All(v => v is >= 0.95f and <= 1.05f), Is.True);
        // And runs: finite logits.
        using var kv = model.CreateKvStore(8);
        var logits = new float[c.VocabSize];
        model.Forward(ForwardBatch.ForSequence([1, 2, 3], 0), kv, logits, false);
        Assert.That(logits.All(float.IsFinite), Is.True);
        Assert.That(logits.Max() - logits.Min(), Is.GreaterThan(0));
        // Cached: a second Ensure does not rewrite.
        var stamp = File.GetLastWriteTimeUtc(path);
        Assert.That(SyntheticModel.Ensure(shape, type, _dir), Is.EqualTo(path));
        Assert.That(File.GetLastWriteTimeUtc(path), Is.EqualTo(stamp));
    }

    [Test]
    public void SyntheticFileCarriesAnSpmVocabularyOfTheModelsSize()
    {
        // llama.cpp refuses a file without tokenizer.ggml.*; the engine's own tokenizer loader is the check here
        // (the LLamaSharp oracle tests load the same files with llama.cpp itself).
        string path = SyntheticModel.Ensure(SyntheticModel.Tiny, DType.Q8_0, _dir);
        Assert.That(Path.GetFileName(path), Does.StartWith($"synthetic-v{SyntheticModel.FileVersion}-"), "cache name is versioned");
        using var file = ModelFiles.Open(path);
        var tok = Engine.Tokenizers.Tokenizer.FromModelFile(file);
        Assert.That(tok.VocabSize, Is.EqualTo(SyntheticModel.Tiny.VocabSize));
        var tokens = (string[])file.Metadata[TokenizerKeys.Tokens];
        Assert.That(tokens.Distinct().Count(), Is.EqualTo(tokens.Length), "pieces are distinct");
        Assert.That((tokens[0], tokens[1], tokens[2], tokens[3], tokens[258]), Is.EqualTo(("<unk>", "<s>", "</s>", "<0x00>", "<0xFF>")));
        // Any text round-trips (byte fallback covers what the generated pieces do not).
        const string text = "Hello, world! ☃ 123";
        Assert.That(tok.Decode(tok.Encode(text)), Is.EqualTo(text));
        Assert.Throws<ArgumentException>(() => SyntheticModel.AddVocabulary(new GgufWriter(), 258));
    }

    [TestCase(DType.F16)]
    [TestCase(DType.Q4_0)]
    [TestCase(DType.Q6_K)]
    public void FeedForwardChunkingDoesNotChangeLogits(DType type)
    {
        // 300 tokens = 2 full feed-forward chunks of 128 + a partial one, against one unchunked batch.
        string path = SyntheticModel.Ensure(SyntheticModel.Tiny, type, _dir);
        using var file = ModelFiles.Open(path);
        using var backend = Backends.Create("cpu", 2);
        using var chunked = ModelLoader.Load(file, backend);
        using var whole = ModelLoader.Load(file, backend);
        whole.FeedForwardChunkTokens = int.MaxValue;
        int vocab = chunked.Config.VocabSize, n = 300;
        Assert.That(n, Is.GreaterThan(2 * chunked.FeedForwardChunkTokens));
        var ids = Enumerable.Range(0, n).Select(i => (i * 37 + 11) % vocab).ToArray();
        var a = new float[n * vocab];
        var e = new float[n * vocab];
        using (var kv = chunked.CreateKvStore(n)) chunked.Forward(ForwardBatch.ForSequence(ids, 0), kv, a, allLogits: true);
        using (var kv = whole.CreateKvStore(n)) whole.Forward(ForwardBatch.ForSequence(ids, 0), kv, e, allLogits: true);
        double scale = e.Max(Math.Abs), maxDiff = 0;
        for (int i = 0; i < e.Length; i++) maxDiff = Math.Max(maxDiff, Math.Abs(a[i] - e[i]));
        Assert.That(maxDiff, Is.LessThanOrEqualTo(1e-5 * scale), $"max |Δ| {maxDiff:E3}, max |logit| {scale:E3}");
    }

    [Test]
    public void Llama1BShapeHasTheParameterCountOfLlama32_1B()
    {
        // Llama-3.2-1B has 1,235,814,400 parameters (tied embeddings counted once).
        Assert.That(SyntheticModel.Llama1B.ParameterCount, Is.EqualTo(1_235_814_400L));
    }

    [TestCase("models/rwkv/tiny-rwkv-7v0-834K-FP32.bin", "F32")]
    [TestCase("models/rwkv/tiny-rwkv-6v0-3m-Q5_0.bin", "Q5_0")]
    public void RunsRecurrentRwkvModels(string relative, string type)
    {
        string model = SharedData.Get(relative);
        var results = ModelBenchmark.Run(model, new BenchOptions { PromptTokens = 16, GenTokens = 4, Depths = [0], Repetitions = 1, Threads = 2 }, _ => { });
        Assert.That(results.Select(r => r.Test), Is.EqualTo(new[] { "pp16", "tg4" }));
        Assert.That(results.Select(r => r.Type), Is.All.EqualTo(type));
        Assert.That(results.Select(r => r.TokensPerSecondMean), Is.All.GreaterThan(0));
    }

    [Test]
    public void RunOnStories260KGivesOneRowPerDepthAndTest()
    {
        string model = SharedData.Get("reference/stories260K/stories260K.gguf");
        var log = new List<string>();
        var results = ModelBenchmark.Run(model, new BenchOptions { PromptTokens = 16, GenTokens = 4, Depths = [0, 8], Repetitions = 2, Threads = 2 }, log.Add);
        Assert.That(results.Select(r => (r.Test, r.Depth)), Is.EqualTo(new[] { ("pp16", 0), ("tg4", 0), ("pp16", 8), ("tg4", 8) }));
        Assert.Multiple(() =>
        {
            foreach (var r in results)
            {
                Assert.That(r.TokensPerSecondMean, Is.GreaterThan(0));
                Assert.That(r.Samples, Has.Length.EqualTo(2));
                Assert.That(r.TokensPerSecondMean, Is.EqualTo(r.Samples.Average()).Within(1e-9));
                Assert.That(r.Threads, Is.EqualTo(2));
                Assert.That(r.Type, Is.EqualTo("F32"));
                Assert.That(r.FileBytes, Is.EqualTo(new FileInfo(model).Length));
                Assert.That(r.PeakRssBytes, Is.GreaterThan(0));
            }
            Assert.That(log, Has.Some.StartsWith("pre-filled 8 tokens"));
        });
        // --random-kv: the depth's KV rows are written directly instead of by the model.
        log.Clear();
        var fast = ModelBenchmark.Run(model, new BenchOptions { PromptTokens = 0, GenTokens = 2, Depths = [8], Repetitions = 1, Threads = 2, RandomKvFill = true }, log.Add);
        Assert.That(fast.Select(r => (r.Test, r.Depth)), Is.EqualTo(new[] { ("tg2", 8) }));
        Assert.That(fast[0].TokensPerSecondMean, Is.GreaterThan(0));
        Assert.That(log, Has.Some.StartsWith("filled 8 KV positions"));
    }

    [Test]
    public void BenchCommandJsonHasTheRequiredFields()
    {
        string model = SharedData.Get("reference/stories260K/stories260K.gguf");
        var root = new RootCommand { BenchCommand.Create() };
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        var (o, e) = (new StringWriter(), new StringWriter());
        Console.SetOut(o); Console.SetError(e);
        int code;
        try { code = root.Parse(["bench", "--model", model, "-p", "8", "-n", "2", "-d", "0,4", "-r", "1", "--threads", "2", "--json"]).Invoke(); }
        finally { Console.SetOut(oldOut); Console.SetError(oldErr); }
        Assert.That(code, Is.EqualTo(0), e.ToString());
        using var doc = JsonDocument.Parse(o.ToString());   // stdout is only the JSON array
        var rows = doc.RootElement.EnumerateArray().ToList();
        Assert.That(rows, Has.Count.EqualTo(4));
        Assert.Multiple(() =>
        {
            foreach (var row in rows)
            {
                foreach (var field in new[] { "model", "type", "test", "depth", "threads", "tokens_per_s_mean", "tokens_per_s_sd", "peak_rss_bytes", "file_bytes" })
                    Assert.That(row.TryGetProperty(field, out _), Is.True, field);
                Assert.That(row.GetProperty("tokens_per_s_mean").GetDouble(), Is.GreaterThan(0));
                Assert.That(row.GetProperty("threads").GetInt32(), Is.EqualTo(2));
            }
            Assert.That(rows.Select(r => r.GetProperty("test").GetString() + "@" + r.GetProperty("depth").GetInt32()),
                Is.EqualTo(new[] { "pp8@0", "tg2@0", "pp8@4", "tg2@4" }));
            Assert.That(e.ToString(), Does.Contain("rep 1/1"), "progress goes to stderr");
        });
    }

    [Test]
    public void BenchCommandRejectsBadArguments()
    {
        var root = new RootCommand { BenchCommand.Create() };
        var oldErr = Console.Error;
        var e = new StringWriter();
        Console.SetError(e);
        try
        {
            Assert.That(root.Parse(["bench"]).Invoke(), Is.Not.EqualTo(0));
            Assert.That(root.Parse(["bench", "--synthetic", "nope"]).Invoke(), Is.Not.EqualTo(0));
            Assert.That(root.Parse(["bench", "--synthetic", "tiny", "--type", "q9_9", "--cache-dir", _dir]).Invoke(), Is.Not.EqualTo(0));
            Assert.That(root.Parse(["bench", "--model", Path.Combine(_dir, "missing.gguf")]).Invoke(), Is.Not.EqualTo(0));
        }
        finally { Console.SetError(oldErr); }
        Assert.That(e.ToString(), Does.Contain("unknown synthetic shape 'nope'").And.Contain("q9_9").And.Contain("not found"));
    }

    [Test]
    public void MeanSdMatchesHandComputedValues()
    {
        var (mean, sd) = ModelBenchmark.MeanSd([1.0, 2.0, 3.0, 4.0]);
        Assert.That(mean, Is.EqualTo(2.5));
        Assert.That(sd, Is.EqualTo(Math.Sqrt(5.0 / 3.0)).Within(1e-12));   // sample sd: Σ(x−2.5)² = 5, / (4 − 1)
        Assert.That(ModelBenchmark.MeanSd([7.0]).Sd, Is.EqualTo(0));
    }

    [Test]
    public void StreamingTensorProducerMustWriteTheShapesByteCount()
    {
        var ok = new GgufWriter().AddTensor("a", DType.F32, [4], s => s.Write(new byte[16]));
        using var ms = new MemoryStream();
        ok.Write(ms);
        using (var file = WriteAndOpen(ms.ToArray()))
            Assert.That(file.GetTensor("a").ByteLength, Is.EqualTo(16));
        var bad = new GgufWriter().AddTensor("a", DType.F32, [4], s => s.Write(new byte[12]));
        Assert.Throws<InvalidOperationException>(() => bad.Write(new MemoryStream()));
    }

    private ModelFile WriteAndOpen(byte[] bytes)
    {
        string p = Path.Combine(_dir, "t.gguf");
        File.WriteAllBytes(p, bytes);
        return ModelFiles.Open(p);
    }

    private static class WeightLoaderProbe
    {
        public static unsafe float[] Floats(TensorView t) => new ReadOnlySpan<float>((void*)t.Data, (int)t.ElementCount).ToArray();
    }
}
