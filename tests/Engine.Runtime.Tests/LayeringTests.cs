// Asserts the layer arrows of DESIGN.md: each assembly references only the Engine assemblies below it — every project,
// Runtime and Cli included. The CLI uses Runtime only (plus Server, which it hosts for `engine serve`, and Evaluation,
// the benchmarks and the eval harness it runs); its project also sets DisableTransitiveProjectReferences, so a direct
// use of a lower layer does not even compile.
using System.Reflection;

namespace Engine.Runtime.Tests;

public class LayeringTests
{
    private static readonly Dictionary<string, string[]> Allowed = new()
    {
        ["Engine.Tensors"] = [],
        ["Engine.Kernels"] = ["Engine.Tensors"],
        ["Engine.Gpu"] = ["Engine.Kernels", "Engine.Tensors"],
        ["Engine.Formats"] = ["Engine.Tensors"],
        ["Engine.Tokenizers"] = ["Engine.Formats", "Engine.Tensors"],
        ["Engine.Memory"] = ["Engine.Kernels", "Engine.Tensors"],
        ["Engine.Model"] = ["Engine.Kernels", "Engine.Formats", "Engine.Memory", "Engine.Tensors"],
        ["Engine.Scheduling"] = ["Engine.Memory", "Engine.Kernels", "Engine.Tensors"],
        ["Engine.Runtime"] = ["Engine.Scheduling", "Engine.Model", "Engine.Memory", "Engine.Tokenizers", "Engine.Formats", "Engine.Gpu", "Engine.Kernels", "Engine.Tensors"],
        // layer 4½: benchmarks and the KV-policy evaluation harness (engine bench / bench-parallel / eval), off Runtime's API
        ["Engine.Evaluation"] = ["Engine.Runtime", "Engine.Scheduling", "Engine.Model", "Engine.Memory", "Engine.Tokenizers", "Engine.Formats", "Engine.Gpu", "Engine.Kernels", "Engine.Tensors"],
        ["Engine.Server"] = ["Engine.Runtime"],   // layer 5 beside the CLI: the HTTP front of the in-process API
        ["Engine.Cli"] = ["Engine.Runtime", "Engine.Server", "Engine.Evaluation"],   // `engine serve` hosts Engine.Server
    };

    [Test]
    public void EveryEngineProjectIsCovered()
    {
        // every src/ project has a row above: a new project cannot slip past the layering check
        var projects = Directory.GetDirectories(Path.Combine(Engine.Tests.Common.SharedData.RepoRoot, "src"))
            .Select(Path.GetFileName).Where(n => File.Exists(Path.Combine(Engine.Tests.Common.SharedData.RepoRoot, "src", n!, n + ".csproj")));
        Assert.That(projects, Is.SubsetOf(Allowed.Keys));
    }

    [Test]
    public void TestHooksAreNotPublicApi()
    {
        foreach (var name in new[] { "PauseServing", "ValidateKvPool", "EvictPrefixCache" })
            Assert.That(typeof(InferenceEngine).GetMethod(name, BindingFlags.Public | BindingFlags.Instance), Is.Null, $"{name} is public");
    }

    [Test]
    public void BenchmarksAndEvaluationAreNotRuntimeApi()
    {
        // they live in Engine.Evaluation (layer 4½), not in Runtime's public surface
        var leaked = typeof(InferenceEngine).Assembly.GetExportedTypes()
            .Where(t => t.Namespace is "Engine.Runtime.Benchmarking" or "Engine.Runtime.Evaluation").Select(t => t.FullName).ToArray();
        Assert.That(leaked, Is.Empty);
        Assert.That(typeof(Engine.Runtime.Evaluation.KvEvaluator).Assembly.GetName().Name, Is.EqualTo("Engine.Evaluation"));
        Assert.That(typeof(Engine.Runtime.Benchmarking.ModelBenchmark).Assembly.GetName().Name, Is.EqualTo("Engine.Evaluation"));
    }

    /// <summary>Process-wide settable statics that are not kernel or engine variants (allowed, with the reason).</summary>
    private static readonly string[] AllowedMutableStatics =
    [
        "Engine.Memory.Documents.MemoryLock.OnWait",   // where "waiting for memory X" lines go (a log hook; MemoryStore.OnLockWait)
    ];

    [TestCaseSource(nameof(Names))]
    public void NoPublicMutableStatics(string name)
    {
        // variants are parameters (CpuKernelOptions, HugePageMemory.Allocate(bytes, hugePages), EngineOptions), not switches
        // a test or benchmark flips for the whole process
        var asm = Assembly.Load(name == "Engine.Cli" ? "engine" : name);
        const BindingFlags flags = BindingFlags.Public | BindingFlags.Static | BindingFlags.DeclaredOnly;
        var found = new List<string>();
        foreach (var t in asm.GetExportedTypes())
        {
            foreach (var p in t.GetProperties(flags))
                if (p.SetMethod is { IsPublic: true }) found.Add($"{t.FullName}.{p.Name}");
            foreach (var f in t.GetFields(flags))
                if (!f.IsInitOnly && !f.IsLiteral) found.Add($"{t.FullName}.{f.Name}");
        }
        Assert.That(found.Except(AllowedMutableStatics), Is.Empty, $"{name} has public mutable statics");
    }

    [TestCaseSource(nameof(Names))]
    public void AssemblyReferencesOnlyLowerLayers(string name)
    {
        var asm = Assembly.Load(name == "Engine.Cli" ? "engine" : name);   // the CLI's assembly is named after its command
        var engineRefs = asm.GetReferencedAssemblies().Select(a => a.Name!).Where(n => n.StartsWith("Engine.")).ToArray();
        var bad = engineRefs.Except(Allowed[name]).ToArray();
        Assert.That(bad, Is.Empty, $"{name} references {string.Join(", ", bad)}, which DESIGN.md's layers forbid");
    }

    public static IEnumerable<string> Names => Allowed.Keys;
}
