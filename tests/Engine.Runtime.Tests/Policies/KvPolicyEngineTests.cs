// Tests of KV policies chosen per engine (EngineOptions.KvPolicy, `engine run/chat --kv-policy`): a policy that keeps
// everything ("full", or sinks at budget 1) leaves greedy output bit-identical to the default (paged) engine and to
// llama.cpp's greedy text; a small sinks budget over a long generation completes while holding at most its budget of the
// float32 bytes; bad specs fail at Load with KvPolicyException before any work; the CLI options parse and report.
// These run on the single-sequence path (Paged = false); ServedKvPolicyTests cover policies batched in the serving loop.
using System.CommandLine;
using System.Text.Json;
using Engine.Cli.Commands;
using Engine.Memory.Policies;

namespace Engine.Runtime.Tests.Policies;

[NonParallelizable]
public class KvPolicyEngineTests
{
    private static string Model => SharedData.Get("reference/stories260K/stories260K.gguf");

    private static GenerationOptions Greedy(int maxTokens, bool stopAtEos = true) => new()
    {
        MaxTokens = maxTokens, Sampling = new() { Temperature = 0 }, StopAtEndOfGeneration = stopAtEos,
    };

    private static int[] GenerateIds(InferenceEngine engine, string prompt, GenerationOptions o) =>
        engine.GenerateTextAsync(engine.GenerateAsync(prompt, o)).GetAwaiter().GetResult().TokenIds;

    [TestCase("full", 0.25)]
    [TestCase("sinks", 1.0)]
    public void KeepEverythingPolicyMatchesDefaultEngineExactly(string policy, double budget)
    {
        using var plain = InferenceEngine.Load(Model, new EngineOptions { Threads = 2 });
        using var withPolicy = InferenceEngine.Load(Model, new EngineOptions { Threads = 2, KvPolicy = policy, KvPolicyBudget = budget, Paged = false });
        Assert.That(withPolicy.IsPaged, Is.False, "Paged = false keeps a KV policy on the single-sequence path");
        foreach (string prompt in new[] { "Once upon a time", "Lily" })
        {
            var expected = GenerateIds(plain, prompt, Greedy(200));
            var actual = GenerateIds(withPolicy, prompt, Greedy(200));
            Assert.That(actual, Is.EqualTo(expected), $"{policy}@{budget}, prompt '{prompt}'");
        }
        var usage = withPolicy.KvPolicyUsage!;
        // keeping everything holds every float32 row; a policy that owns its rows allocates them in 16-token blocks
        double slack = policy == "full" ? 0 : withPolicy.Config.LayerCount * (PolicyKvStore.DefaultBlockTokens - 1) * 2.0 * withPolicy.Config.KvDim * sizeof(float);
        Assert.That(usage.HeldBytes, Is.InRange(usage.FullBytes, usage.FullBytes + slack));
    }

    [Test]
    public void SmallSinksBudgetCompletesLongGenerationHoldingLess()
    {
        const double budget = 0.1;
        using var engine = InferenceEngine.Load(Model, new EngineOptions { Threads = 2, KvPolicy = "sinks", KvPolicyBudget = budget, Paged = false });
        var o = Greedy(300, stopAtEos: false);
        var (_, ids, usage) = engine.GenerateTextAsync(engine.GenerateAsync("Once upon a time", o)).GetAwaiter().GetResult();
        var kv = engine.KvPolicyUsage!;
        var c = engine.Config;
        int promptTokens = usage.PromptTokens;
        // float32 K + V for every layer, computed independently of the store: 2 × layers × kvDim × 4 bytes per token
        double fullPerToken = 2.0 * c.LayerCount * c.KvDim * sizeof(float);
        Assert.Multiple(() =>
        {
            Assert.That(ids, Has.Length.EqualTo(300));
            Assert.That(usage.FinishReason, Is.EqualTo(FinishReason.Length));
            Assert.That(kv.Policy, Is.EqualTo("sinks"));
            Assert.That(kv.Tokens, Is.EqualTo(promptTokens + 300 - 1), "every forwarded token is cached (the last sampled one is not forwarded)");
            Assert.That(kv.FullBytes, Is.EqualTo(kv.Tokens * fullPerToken));
            Assert.That(kv.HeldBytes, Is.GreaterThan(0));
            // allocated rows: the budget (rounded up to whole tokens) + at most one partly used 16-token block per layer
            Assert.That(kv.HeldBytes, Is.LessThanOrEqualTo(Planners.TokenBudget(budget, kv.Tokens) * fullPerToken + c.LayerCount * (PolicyKvStore.DefaultBlockTokens - 1) * 2.0 * c.KvDim * sizeof(float)),
                $"held {kv.HeldBytesPerToken:F0} B/token of {kv.FullBytesPerToken:F0}");
        });
    }

    [Test]
    public void InvalidSpecsFailAtLoadWithClearErrors()
    {
        var e = Assert.Throws<KvPolicyException>(() => InferenceEngine.Load(Model, new EngineOptions { KvPolicy = "h2o+sinks" }))!;
        Assert.That(e.Message, Does.Contain("h2o").And.Contain("sinks"));
        Assert.Throws<KvPolicyException>(() => InferenceEngine.Load(Model, new EngineOptions { KvPolicy = "lru" }));
        Assert.Throws<KvPolicyException>(() => InferenceEngine.Load(Model, new EngineOptions { KvPolicy = "sinks", KvPolicyBudget = 0 }));
        Assert.Throws<KvPolicyException>(() => InferenceEngine.Load(Model, new EngineOptions { KvPolicy = "sinks", KvPolicyBudget = 1.5 }));
        var m = Assert.Throws<ArgumentException>(() => InferenceEngine.Load(Model, new EngineOptions { KvPolicy = "sinks", Memory = "notes" }))!;
        Assert.That(m.Message, Does.Contain("memory"));
    }

    [Test]
    public void PerRequestPolicySwitchesAndReverts()
    {
        using var plain = InferenceEngine.Load(Model, new EngineOptions { Threads = 2 });
        using var engine = InferenceEngine.Load(Model, new EngineOptions { Threads = 2, KvPolicy = "full", Paged = false });
        var expected = GenerateIds(plain, "Once upon a time", Greedy(200));

        var (_, ids, _) = engine.GenerateTextAsync(engine.GenerateAsync("Once upon a time",
            Greedy(300, stopAtEos: false) with { KvPolicy = "sinks", KvPolicyBudget = 0.1 })).GetAwaiter().GetResult();
        var during = engine.KvPolicyUsage!;
        Assert.Multiple(() =>
        {
            Assert.That(ids, Has.Length.EqualTo(300));
            Assert.That(during.Policy, Is.EqualTo("sinks"));
            Assert.That(during.HeldBytes, Is.LessThanOrEqualTo(Planners.TokenBudget(0.1, during.Tokens) * during.FullBytesPerToken
                + engine.Config.LayerCount * (PolicyKvStore.DefaultBlockTokens - 1) * 2.0 * engine.Config.KvDim * sizeof(float)));
        });

        // the next request without a policy runs on the engine's own ("full") again, from a clean cache
        var after = GenerateIds(engine, "Once upon a time", Greedy(200));
        Assert.Multiple(() =>
        {
            Assert.That(after, Is.EqualTo(expected));
            Assert.That(engine.PromptTokensReused, Is.EqualTo(0), "switching policy drops the cached prefix");
            Assert.That(engine.KvPolicyUsage!.Policy, Is.EqualTo("full"));
            Assert.That(engine.KvPolicyUsage!.HeldBytes, Is.EqualTo(engine.KvPolicyUsage!.FullBytes));
        });

        // bad per-request specs fail eagerly; an engine without a policy cannot take one per request
        Assert.Throws<KvPolicyException>(() => engine.GenerateAsync("Lily", Greedy(4) with { KvPolicy = "h2o+sinks" }));
        var e = Assert.Throws<ArgumentException>(() => plain.GenerateAsync("Lily", Greedy(4) with { KvPolicy = "sinks" }))!;
        Assert.That(e.Message, Does.Contain("EngineOptions.KvPolicy"));
    }

    [Test]
    public void NoPolicyMeansNoPolicyLayer()
    {
        using var engine = InferenceEngine.Load(Model, new EngineOptions { Threads = 2, Paged = false });
        Assert.That(engine.KvPolicyUsage, Is.Null);
        Assert.That(new EngineOptions().KvPolicyBudget, Is.EqualTo(0.25));
    }

    private static (int Code, string Out, string Err) Invoke(Command command, params string[] args) => CliInvoker.Invoke(command, args);

    [Test]
    public void RunWithFullPolicyPrintsLlamaCppGreedyTextAndPolicyDiagnostics()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(SharedData.Get("reference/stories260K/stories260K.greedy.json")));
        var g = doc.RootElement.GetProperty("generations")[1];   // "Once upon a time"
        var (code, stdout, stderr) = Invoke(RunCommand.Create(), "run", "--model", Model, "--prompt", g.GetProperty("prompt").GetString()!,
            "--temperature", "0", "--max-tokens", "200", "--threads", "2", "--kv-policy", "full", "--kv-budget-fraction", "0.5");
        Assert.Multiple(() =>
        {
            Assert.That(code, Is.EqualTo(0), stderr);
            Assert.That(stdout.TrimEnd('\n').TrimStart(' '), Is.EqualTo(g.GetProperty("generated_text").GetString()));
            Assert.That(stderr, Does.Contain("kv policy: full (budget 0.5"));
            Assert.That(stderr, Does.Contain("bytes/token"));
        });
    }

    [Test]
    public void RunWithSinksPolicy_FreesWhatItEvicts()
    {
        // run is one stream: the CLI uses the single-sequence policy store, which holds only the kept rows — about a
        // quarter of the float32 KV at budget 0.25 (+ one partly used block per layer), not the paged pool's full blocks
        var (code, _, stderr) = Invoke(RunCommand.Create(), "run", "--model", Model, "--prompt", "Once upon a time",
            "--temperature", "0", "--max-tokens", "250", "--threads", "2", "--kv-policy", "sinks", "--kv-budget-fraction", "0.25");
        Assert.That(code, Is.EqualTo(0), stderr);
        var m = System.Text.RegularExpressions.Regex.Match(stderr, @"holds (\d+) bytes/token of (\d+) float32");
        Assert.That(m.Success, stderr);
        double held = double.Parse(m.Groups[1].Value), full = double.Parse(m.Groups[2].Value);
        Assert.That(held / full, Is.InRange(0.2, 0.35), stderr);
    }

    [Test]
    public void CliParsesPolicyOptionsAndRejectsBadOnes()
    {
        var run = RunCommand.Create();
        var parsed = new RootCommand { run }.Parse(["run", "--kv-policy", "arkv+quest", "--kv-budget-fraction", "0.3"]);
        var policy = run.Options.OfType<Option<string?>>().Single(o => o.Name == "--kv-policy");
        var budget = run.Options.OfType<Option<double>>().Single(o => o.Name == "--kv-budget-fraction");
        Assert.Multiple(() =>
        {
            Assert.That(parsed.Errors, Is.Empty);
            Assert.That(parsed.GetValue(policy), Is.EqualTo("arkv+quest"));
            Assert.That(parsed.GetValue(budget), Is.EqualTo(0.3));
        });

        var (code, stdout, stderr) = Invoke(RunCommand.Create(), "run", "--model", Model, "--kv-policy", "h2o+sinks", "--max-tokens", "4");
        Assert.Multiple(() =>
        {
            Assert.That(code, Is.EqualTo(1));
            Assert.That(stdout, Is.Empty);
            Assert.That(stderr.TrimEnd('\n').Split('\n'), Has.Length.EqualTo(1), stderr);
            Assert.That(stderr, Does.StartWith("error: ").And.Contain("combines h2o and sinks"));
        });

        var chat = Invoke(ChatCommand.Create(), "chat", "--model", Model, "--kv-policy", "sinks", "--kv-budget-fraction", "0", "--threads", "2");
        Assert.That(chat.Code, Is.EqualTo(1));
        Assert.That(chat.Err, Does.Contain("impossible"));
    }
}
