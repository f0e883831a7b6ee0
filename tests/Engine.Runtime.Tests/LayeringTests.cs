// Asserts the layer arrows of DESIGN.md: each assembly references only the Engine assemblies below it.
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
    };

    [TestCaseSource(nameof(Names))]
    public void AssemblyReferencesOnlyLowerLayers(string name)
    {
        var asm = Assembly.Load(name);
        var engineRefs = asm.GetReferencedAssemblies().Select(a => a.Name!).Where(n => n.StartsWith("Engine.")).ToArray();
        var bad = engineRefs.Except(Allowed[name]).ToArray();
        Assert.That(bad, Is.Empty, $"{name} references {string.Join(", ", bad)}, which DESIGN.md's layers forbid");
    }

    public static IEnumerable<string> Names => Allowed.Keys;
}
