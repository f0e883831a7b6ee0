// Owns: tests of EngineChatClient's engine knobs from ChatOptions.AdditionalProperties (kv_policy, kv_policy_budget,
// min_p, repetition_penalty, penalty_window, ignore_eos, seed): the adapter's output equals the engine's own generation
// with the same GenerationOptions set directly (the oracle), whether the values arrive as CLR numbers or as JsonElements
// (deserialised requests); a knob that changes greedy output is seen to change it; a wrong type or value is an
// ArgumentException naming the key before any token; unknown keys are ignored. Model: the bundled stories260K.
using System.Text.Json;
using Engine.Runtime.Sampling;
using Engine.Tests.Common;
using AI = Microsoft.Extensions.AI;

namespace Engine.Runtime.Tests;

public class ChatClientPropertiesTests
{
    private static string Model => Path.Combine(SharedData.RepoRoot, "models", "stories260K.gguf");
    private static readonly AI.ChatMessage[] Prompt = [new(AI.ChatRole.User, "Once upon a time")];
    private static readonly ChatMessage[] Direct = [new("user", "Once upon a time")];

    private static async Task<string> Adapter(InferenceEngine engine, AI.ChatOptions options)
    {
        using var client = new EngineChatClient(engine);
        return (await client.GetResponseAsync(Prompt, options)).Text;
    }

    private static async Task<string> Engine_(InferenceEngine engine, GenerationOptions options) =>
        (await engine.GenerateTextAsync(engine.GenerateAsync(Direct, options))).Text;

    [TestCase(false)]
    [TestCase(true)]
    public async Task SamplingKnobsEqualTheEnginesOwnGeneration(bool asJson)
    {
        using var engine = InferenceEngine.Load(Model, new EngineOptions { Threads = 1 });
        var props = new Dictionary<string, object?>
        {
            ["min_p"] = 0.2, ["seed"] = 12345678901234567890UL, ["repetition_penalty"] = 1.7f, ["penalty_window"] = 8, ["ignore_eos"] = true,
            ["some_other_middleware_key"] = new object(),
        };
        var additional = new AI.AdditionalPropertiesDictionary();
        foreach (var (k, v) in props)
            additional[k] = asJson && k != "some_other_middleware_key" ? JsonSerializer.SerializeToElement(v) : v;
        var options = new AI.ChatOptions { MaxOutputTokens = 24, Temperature = 0.9f, AdditionalProperties = additional };
        string got = await Adapter(engine, options);
        var defaults = new GenerationOptions();
        string want = await Engine_(engine, defaults with
        {
            MaxTokens = 24, StopAtEndOfGeneration = false,
            Sampling = defaults.Sampling with { Temperature = 0.9f, MinP = 0.2f, Seed = 12345678901234567890UL, RepetitionPenalty = 1.7f, PenaltyWindow = 8 },
        });
        Assert.That(got, Is.EqualTo(want).And.Not.Empty);
    }

    [Test]
    public async Task RepetitionPenaltyChangesGreedyOutput()
    {
        using var engine = InferenceEngine.Load(Model, new EngineOptions { Threads = 1 });
        var greedy = new AI.ChatOptions { MaxOutputTokens = 40, Temperature = 0f };
        var plain = new GenerationOptions { MaxTokens = 40, Sampling = new SamplingOptions { Temperature = 0 } };
        string withoutDirect = await Engine_(engine, plain);
        string withDirect = await Engine_(engine, plain with { Sampling = plain.Sampling with { RepetitionPenalty = 3f } });
        Assume.That(withDirect, Is.Not.EqualTo(withoutDirect), "the penalty changes this model's greedy text");
        Assert.That(await Adapter(engine, greedy), Is.EqualTo(withoutDirect));
        var penalised = greedy.Clone();
        penalised.AdditionalProperties = new() { ["repetition_penalty"] = 3 };
        Assert.That(await Adapter(engine, penalised), Is.EqualTo(withDirect));
    }

    [Test]
    public async Task KvPolicyKnobsEqualTheEnginesOwnGeneration()
    {
        using var engine = InferenceEngine.Load(Model, new EngineOptions { Threads = 1, Policy = new KvPolicyOptions { Spec = "full" } });
        var options = new AI.ChatOptions
        {
            MaxOutputTokens = 30, Temperature = 0f,
            AdditionalProperties = new() { ["kv_policy"] = "h2o", ["kv_policy_budget"] = 0.25 },
        };
        string got = await Adapter(engine, options);
        string want = await Engine_(engine, new GenerationOptions
        {
            MaxTokens = 30, Sampling = new SamplingOptions { Temperature = 0 }, KvPolicy = "h2o", KvPolicyBudget = 0.25,
        });
        Assert.That(got, Is.EqualTo(want).And.Not.Empty);
        options.AdditionalProperties["kv_policy"] = "no-such-policy";
        await Assert.ThrowsAsync(Is.InstanceOf<ArgumentException>(), () => Adapter(engine, options));
    }

    private static readonly object[] BadValues =
    [
        new object[] { "min_p", "high" }, new object[] { "min_p", 1.5 }, new object[] { "min_p", double.NaN },
        new object[] { "kv_policy_budget", 0.0 }, new object[] { "kv_policy_budget", true }, new object[] { "kv_policy", 5 },
        new object[] { "kv_policy", "" }, new object[] { "repetition_penalty", 0 }, new object[] { "repetition_penalty", -1.0 },
        new object[] { "penalty_window", 1.5 }, new object[] { "penalty_window", -1 }, new object[] { "ignore_eos", 1 },
        new object[] { "ignore_eos", "yes" }, new object[] { "seed", -1 }, new object[] { "seed", 2.5 }, new object[] { "seed", "7" },
    ];

    [TestCaseSource(nameof(BadValues))]
    public async Task WrongTypeOrValueIsANamedArgumentException(string key, object value)
    {
        using var engine = InferenceEngine.Load(Model, new EngineOptions { Threads = 1 });
        bool jsonable = value is not double d || double.IsFinite(d);   // JSON has no NaN
        foreach (var v in jsonable ? new[] { value, JsonSerializer.SerializeToElement(value) } : [value])
        {
            var options = new AI.ChatOptions { MaxOutputTokens = 4, AdditionalProperties = new() { [key] = v } };
            var e = (await Assert.ThrowsAsync<ArgumentException>(() => Adapter(engine, options)))!;
            Assert.That(e.Message, Does.Contain($"AdditionalProperties[\"{key}\"]"), $"{key} = {v}");
        }
    }

    [Test]
    public async Task SeedGivenTwiceMustAgree()
    {
        using var engine = InferenceEngine.Load(Model, new EngineOptions { Threads = 1 });
        var options = new AI.ChatOptions { MaxOutputTokens = 4, Seed = 3, AdditionalProperties = new() { ["seed"] = 4 } };
        await Assert.ThrowsAsync<ArgumentException>(() => Adapter(engine, options));
        options.AdditionalProperties["seed"] = 3;
        await Assert.DoesNotThrowAsync(() => Adapter(engine, options));
    }
}
