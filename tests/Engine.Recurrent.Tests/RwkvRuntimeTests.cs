// Tests: RWKV models through the runtime — InferenceEngine.Load picks the recurrent model and the byte tokenizer,
// greedy generation equals an argmax loop over the model's own logits, and a second request sharing a prompt prefix
// restores a checkpoint (fewer prompt tokens computed) yet generates exactly what a fresh engine generates.
using Engine.Model;
using Engine.Runtime;
using Engine.Runtime.Sampling;

namespace Engine.Recurrent.Tests;

public class RwkvRuntimeTests
{
    private static readonly GenerationOptions Greedy = new() { Sampling = SamplingOptions.Greedy, StopAtEndOfGeneration = false, MaxTokens = 24 };

    private static InferenceEngine Load(string file) =>
        InferenceEngine.Load(SharedData.Get("models/rwkv/" + file), new EngineOptions { Threads = 2, Backend = "reference" });

    [Test]
    public void ByteTokenizer_RoundTripsUtf8_Streaming()
    {
        var tok = new TokenizerAdapter(new Engine.Tokenizers.ByteTokenizer());
        string text = "héllo → 世界";
        var ids = tok.Encode(text, addSpecial: true, parseSpecial: true);
        Assert.That(ids, Is.EqualTo(System.Text.Encoding.UTF8.GetBytes(text).Select(b => (int)b).ToArray()));
        var dec = tok.CreateStreamingDecoder(true);
        var sb = new System.Text.StringBuilder();
        foreach (int id in ids)
        {
            string piece = dec.Push(id);
            Assert.That(piece.Contains('\uFFFD'), Is.False, "never a partial UTF-8 sequence");
            sb.Append(piece);
        }
        sb.Append(dec.Flush());
        Assert.That(sb.ToString(), Is.EqualTo(text));
    }

    [TestCase("tiny-rwkv-7v0-834K-FP32.bin")]
    [TestCase("tiny-rwkv-5v2-730K-FP32.bin")]
    public async Task GreedyGeneration_EqualsArgmaxLoop(string file)
    {
        using var engine = Load(file);
        Assert.That((engine.Tokenizer as TokenizerAdapter)?.Tokenizer, Is.InstanceOf<Engine.Tokenizers.ByteTokenizer>());
        Assert.That(engine.Config.Architecture, Does.StartWith("rwkv"));
        var (_, ids, usage) = await engine.GenerateTextAsync(engine.GenerateAsync("\"in", Greedy));

        using var backend = RwkvFixtures.Backend("reference");
        using var model = RwkvFixtures.Load(file, backend);
        using var store = model.CreateStateStore();
        var logits = new float[256];
        model.Forward(ForwardBatch.ForSequence(RwkvFixtures.Prompt, 0), store, logits, false);
        var expected = new List<int>();
        for (int i = 0; i < Greedy.MaxTokens; i++)
        {
            int best = 0;
            for (int v = 1; v < 256; v++) if (logits[v] > logits[best]) best = v;
            expected.Add(best);
            model.Forward(ForwardBatch.ForSequence([best], 3 + i), store, logits, false);
        }
        Assert.That(ids, Is.EqualTo(expected));
        Assert.That(usage.PromptTokens, Is.EqualTo(3));
    }

    [Test]
    public async Task SecondRequest_WithSharedPrefix_ReusesCheckpoint_SameOutputAsFreshEngine()
    {
        const string file = "tiny-rwkv-7v0-834K-FP32.bin";
        string first = "Once upon a time there was a little robot who";
        string second = first + " liked to sing. One day";
        using var engine = Load(file);
        await engine.GenerateTextAsync(engine.GenerateAsync(first, Greedy));
        Assert.That(engine.PromptTokensReused, Is.EqualTo(0));
        var (_, reusedIds, _) = await engine.GenerateTextAsync(engine.GenerateAsync(second, Greedy));
        Assert.That(engine.PromptTokensReused, Is.EqualTo(first.Length), "restored the checkpoint taken at the end of the first prompt");

        using var fresh = Load(file);
        var (_, freshIds, _) = await fresh.GenerateTextAsync(fresh.GenerateAsync(second, Greedy));
        Assert.That(fresh.PromptTokensReused, Is.EqualTo(0));
        Assert.That(reusedIds, Is.EqualTo(freshIds));
    }
}
