// Owns: the paged serving loop (continuous batching, prefix caching, a tight KV budget that forces preemption) with
// the device forward on gpu-sim: three stories260K prompts served at once must give llama.cpp's greedy ids, and a
// repeated prompt must reuse cached KV blocks (the device pool is addressed by the scheduler's block ids, so a
// reused block id finds its K/V on the device).
using System.Text.Json;
using Engine.Runtime;
using Engine.Runtime.Sampling;

namespace Engine.Gpu.Tests;

[TestFixture]
public sealed class ServingOnDeviceTests
{
    private const int Steps = 20;

    private static (int[] Prompt, int[] Expected)[] Prompts()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(SharedData.Get("reference/stories260K/stories260K.greedy.json")));
        return doc.RootElement.GetProperty("generations").EnumerateArray().Skip(1).Select(g => (
            g.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            g.GetProperty("generated_ids").EnumerateArray().Select(e => e.GetInt32()).Take(Steps).ToArray())).ToArray();
    }

    [TestCase(0L, TestName = "Serving_gpu-sim_ConcurrentPrompts_PrefixCache")]
    [TestCase(4096L * 16, TestName = "Serving_gpu-sim_TightBudget_Preemption")]
    public async Task ConcurrentGreedyEqualsReference(long kvBudget)
    {
        var prompts = Prompts();
        string model = SharedData.Get("reference/stories260K/stories260K.gguf");
        // stories260K: 5 layers × kvDim 32 × 2 × 4 B = 1280 B per token (F32 budget units); 64 KiB = 51 tokens in 4-token
        // blocks for three sequences of 29 positions: the scheduler must preempt and recompute.
        using var engine = InferenceEngine.Load(model, new EngineOptions
        {
            Backend = "gpu-sim", MaxConcurrentSequences = 3, BlockSize = 4, ContextLength = 64, KvBudgetBytes = kvBudget,
        }, _ => null);
        Assert.That(engine.IsPaged, "the serving loop runs");
        Assert.That(engine.BackendName, Is.EqualTo("gpu-sim"));
        var options = new GenerationOptions { MaxTokens = Steps, Sampling = SamplingOptions.Greedy, StopAtEndOfGeneration = false };
        var runs = prompts.Select(p => engine.GenerateTextAsync(engine.GenerateAsync(p.Prompt, options))).ToArray();
        var results = await Task.WhenAll(runs);
        for (int i = 0; i < prompts.Length; i++)
            Assert.That(results[i].TokenIds, Is.EqualTo(prompts[i].Expected), $"prompt {i} served concurrently on the device");

        // The same prompt again: its full prompt blocks come from the prefix cache (same block ids → same device KV).
        var again = await engine.GenerateTextAsync(engine.GenerateAsync(prompts[0].Prompt, options));
        Assert.That(again.TokenIds, Is.EqualTo(prompts[0].Expected), "prompt 0 again, over cached prefix blocks");
        var stats = engine.Stats!;
        TestContext.Out.WriteLine($"stats: {stats}");
        Assert.That(stats.MaxRequestsPerStep, Is.GreaterThan(1), "requests were batched together");
        if (kvBudget == 0) Assert.That(again.Usage.ReusedPromptTokens, Is.GreaterThan(0), "the prefix cache was used");
        else Assert.That(stats.Preemptions, Is.GreaterThan(0), "the tight budget preempted");
    }
}
