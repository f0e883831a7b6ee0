// Owns: tests of EngineOptions' shape: the groups (Kv, Serving, Policy, Documents) and their flat shorthands are one
// storage (a shorthand set after its group changes only its own field), a null group is a named ArgumentException,
// the KV store decorator is not public API, and an engine loaded with grouped options behaves as one loaded with the
// shorthands (same generated tokens). Expected values are the assigned values themselves and the flat-options engine.
namespace Engine.Runtime.Tests;

using System.Reflection;

public class EngineOptionsTests
{
    [Test]
    public void ShorthandsReadAndWriteTheirGroups()
    {
        var o = new EngineOptions { Kv = new KvCacheOptions { BlockSize = 32, DiskPath = "/tmp/x" }, KvBudgetBytes = 9 << 20, Paged = false, KvPolicy = "h2o", MemoryTopK = 4 };
        Assert.That(o.Kv, Is.EqualTo(new KvCacheOptions { BlockSize = 32, DiskPath = "/tmp/x", BudgetBytes = 9 << 20 }));
        Assert.That(o.Serving, Is.EqualTo(new ServingOptions { Paged = false }));
        Assert.That(o.Policy, Is.EqualTo(new KvPolicyOptions { Spec = "h2o" }));
        Assert.That(o.Documents, Is.EqualTo(new DocumentMemoryOptions { TopK = 4 }));
        var g = new EngineOptions { Kv = new KvCacheOptions { DiskBytes = 1 << 20 }, Serving = new ServingOptions { MaxConcurrentSequences = 3 },
            Policy = new KvPolicyOptions { Spec = "arkv+quest", Budget = 0.5, BudgetTokens = 64 }, Documents = new DocumentMemoryOptions { Name = "m", Directory = "/d" } };
        Assert.That((g.KvDiskBytes, g.MaxConcurrentSequences, g.KvPolicy, g.KvPolicyBudget, g.KvPolicyBudgetTokens, g.Memory, g.MemoryDirectory),
            Is.EqualTo((1L << 20, 3, "arkv+quest", 0.5, (int?)64, "m", "/d")));
        Assert.That(new EngineOptions(), Is.EqualTo(new EngineOptions { Kv = new(), Serving = new(), Policy = new(), Documents = new() }));
    }

    [Test]
    public void NullGroupOrBadGroupFieldIsNamed()
    {
        var e = Assert.Throws<ArgumentException>(() => new EngineOptions { Kv = null! }.Validate())!;
        Assert.That(e.Message, Does.Contain("EngineOptions.Kv"));
        e = Assert.Throws<ArgumentException>(() => new EngineOptions { Serving = new ServingOptions { MaxConcurrentSequences = 0 } }.Validate())!;
        Assert.That(e.Message, Does.Contain("EngineOptions.Serving.MaxConcurrentSequences").And.Contain("allowed"));
        e = Assert.Throws<ArgumentException>(() => new EngineOptions { Kv = new KvCacheOptions { BudgetBytes = -1 } }.Validate())!;
        Assert.That(e.Message, Does.Contain("EngineOptions.Kv.BudgetBytes").And.Contain("EngineOptions.KvBudgetBytes"));
    }

    [Test]
    public void KvStoreDecoratorIsNotPublic()
    {
        Assert.That(typeof(EngineOptions).GetProperty("KvStoreDecorator", BindingFlags.Public | BindingFlags.Instance), Is.Null);
    }

    [Test]
    public void GroupedAndFlatOptionsLoadTheSameEngine()
    {
        string model = Path.Combine(Engine.Tests.Common.SharedData.RepoRoot, "models", "stories260K.gguf");
        var flat = new EngineOptions { Threads = 1, MaxConcurrentSequences = 1, KvBudgetBytes = 1 << 20, BlockSize = 8 };
        var grouped = new EngineOptions { Threads = 1, Serving = new ServingOptions { MaxConcurrentSequences = 1 }, Kv = new KvCacheOptions { BudgetBytes = 1 << 20, BlockSize = 8 } };
        Assert.That(grouped, Is.EqualTo(flat));
        var gen = new GenerationOptions { MaxTokens = 12, Sampling = new Engine.Runtime.Sampling.SamplingOptions { Temperature = 0 } };
        string Run(EngineOptions o)
        {
            using var engine = InferenceEngine.Load(model, o);
            return string.Concat(engine.GenerateAsync("Once upon a time", gen).ToBlockingEnumerable().Select(c => c.Text));
        }
        Assert.That(Run(grouped), Is.EqualTo(Run(flat)).And.Not.Empty);
    }
}
