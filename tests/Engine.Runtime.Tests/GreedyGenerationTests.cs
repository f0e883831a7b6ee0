// stories260K greedy generation (README "Tolerances", rule 3): for the four prompts of
// reference/stories260K/stories260K.greedy.json, 200 greedy ids (prompt ids as given there, prompt as one batch, then one
// token per forward) must equal llama.cpp's ids exactly — from the GGUF and from the llama2.c .bin checkpoint.
using System.Text.Json;
using Engine.Runtime.Sampling;

namespace Engine.Runtime.Tests;

public class GreedyGenerationTests
{
    public static IEnumerable<TestCaseData> Cases()
    {
        foreach (var (model, label) in new[] { ("reference/stories260K/stories260K.gguf", "gguf"), ("models/llama2c/stories260K.bin", "llama2c") })
            for (int g = 0; g < 4; g++)
                yield return new TestCaseData(model, g).SetName($"Greedy200_{label}_prompt{g}");
    }

    [TestCaseSource(nameof(Cases))]
    public async Task GreedyIdsEqualLlamaCpp(string model, int generation)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(SharedData.Get("reference/stories260K/stories260K.greedy.json")));
        var g = doc.RootElement.GetProperty("generations")[generation];
        int[] prompt = g.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        int[] expected = g.GetProperty("generated_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();

        using var engine = InferenceEngine.Load(SharedData.Get(model), new EngineOptions { Backend = "cpu", Threads = 2 }, _ => null);
        var options = new GenerationOptions { MaxTokens = 200, Sampling = SamplingOptions.Greedy, StopAtEndOfGeneration = false };
        var (_, ids, usage) = await engine.GenerateTextAsync(engine.GenerateAsync(prompt, options));
        Assert.Multiple(() =>
        {
            Assert.That(ids, Is.EqualTo(expected));
            Assert.That(usage.GeneratedTokens, Is.EqualTo(200));
            Assert.That(usage.PromptTokens, Is.EqualTo(prompt.Length));
            Assert.That(usage.FinishReason, Is.EqualTo(FinishReason.Length));
        });
    }
}
