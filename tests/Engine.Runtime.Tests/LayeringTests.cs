// Asserts the layer arrows of DESIGN.md: each assembly references only the Engine assemblies below it — every project,
// Runtime and Cli included. The CLI's target is Runtime only; CliNotYetRouted lists the lower layers its commands still
// use directly (convert/inspect/tokenize/logits/eval/memory: issue 14 step 5 left) — the list may only shrink.
using System.Reflection;

namespace Engine.Runtime.Tests;

public class LayeringTests
{
    /// <summary>Lower layers the CLI still references directly (to be routed through Runtime's API; never to grow).</summary>
    private static readonly string[] CliNotYetRouted = ["Engine.Gpu", "Engine.Formats", "Engine.Tokenizers", "Engine.Model", "Engine.Memory", "Engine.Kernels", "Engine.Tensors"];

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
        ["Engine.Server"] = ["Engine.Runtime"],   // layer 5 beside the CLI: the HTTP front of the in-process API
        ["Engine.Cli"] = ["Engine.Runtime", "Engine.Server", .. CliNotYetRouted],   // `engine serve` hosts Engine.Server
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
