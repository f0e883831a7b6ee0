// LLamaSharp (llama.cpp) is a benchmark baseline and a test oracle only: no project under src/ may reference it,
// directly or through a package that brings it (checked in every src/ project file and in the central package list
// being used only by bench/ and tests/ projects).
namespace Engine.Oracle.Tests;

public class NoEngineDependencyTests
{
    [Test]
    public void NoSrcProjectReferencesLLamaSharp()
    {
        var src = Path.Combine(SharedData.RepoRoot, "src");
        var projects = Directory.GetFiles(src, "*.csproj", SearchOption.AllDirectories);
        Assert.That(projects, Is.Not.Empty, "src/ projects found");
        var offenders = projects.Where(p => File.ReadAllText(p).Contains("LLamaSharp", StringComparison.OrdinalIgnoreCase)).ToArray();
        Assert.That(offenders, Is.Empty, "src/ must not depend on LLamaSharp (bench/ and tests/ only)");
        var users = Directory.GetFiles(SharedData.RepoRoot, "*.csproj", SearchOption.AllDirectories)
            .Where(p => !p.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}") && File.ReadAllText(p).Contains("LLamaSharp", StringComparison.OrdinalIgnoreCase))
            .Select(p => Path.GetRelativePath(SharedData.RepoRoot, p).Split(Path.DirectorySeparatorChar)[0]).Distinct().ToArray();
        Assert.That(users, Is.SubsetOf(new[] { "bench", "tests" }));
    }
}
