// DESIGN.md layer 5: Engine.Server sits beside the CLI and uses the engine through Engine.Runtime only.
using System.Reflection;

namespace Engine.Server.Tests;

public class ServerLayeringTests
{
    [Test]
    public void ServerReferencesOnlyRuntimeAmongEngineAssemblies()
    {
        var refs = typeof(EngineServer).Assembly.GetReferencedAssemblies().Select(a => a.Name!).Where(n => n.StartsWith("Engine.")).ToArray();
        Assert.That(refs, Is.EquivalentTo(new[] { "Engine.Runtime" }));
        var runtime = Assembly.Load("Engine.Runtime").GetReferencedAssemblies().Select(a => a.Name!);
        Assert.That(runtime, Has.None.EqualTo("Engine.Server"), "the runtime must not know the server");
    }
}
