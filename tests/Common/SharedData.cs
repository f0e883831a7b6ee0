// Owns: locating ../shared (reference fixtures and real models) for tests; skips cleanly when it is absent.
// Linked into every test project by Directory.Build.props.
namespace Engine.Tests.Common;

public static class SharedData
{
    private static readonly Lazy<string?> Root = new(Find);

    /// <summary>The repository root (the folder holding Engine.sln).</summary>
    public static string RepoRoot
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir != null && !File.Exists(Path.Combine(dir.FullName, "Engine.sln"))) dir = dir.Parent;
            return dir?.FullName ?? throw new InvalidOperationException("Engine.sln not found above " + AppContext.BaseDirectory);
        }
    }

    private static string? Find()
    {
        var env = Environment.GetEnvironmentVariable("ENGINE_SHARED");
        if (!string.IsNullOrEmpty(env) && Directory.Exists(env)) return Path.GetFullPath(env);
        var p = Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared"));
        return Directory.Exists(p) ? p : null;
    }

    /// <summary>Full path of a file under ../shared; the test is ignored (skipped) with a clear message when absent.</summary>
    public static string Path_(string relative)
    {
        var root = Root.Value;
        if (root == null) Assert.Ignore("../shared is absent (set ENGINE_SHARED or place shared/ beside the repository); skipping.");
        var p = Path.Combine(root!, relative);
        if (!File.Exists(p) && !Directory.Exists(p)) Assert.Ignore($"shared file {relative} is absent; skipping.");
        return p;
    }

    public static string Get(string relative) => Path_(relative);
}
