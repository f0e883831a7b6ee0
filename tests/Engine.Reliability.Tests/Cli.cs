// Owns: helpers of the reliability suite: the bundled default model's path, running one `engine` command in-process
// with stdout/stderr captured (tests using it are [NonParallelizable]: the console is process-wide), and a temp folder
// that is removed afterwards.
using System.CommandLine;

namespace Engine.Reliability.Tests;

internal static class Cli
{
    /// <summary>models/stories260K.gguf of this repository (always present: it ships with the code).</summary>
    public static string DefaultModel => Path.Combine(SharedData.RepoRoot, "models", "stories260K.gguf");

    /// <summary>Exit code and captured stdout / stderr of <c>command args…</c>.</summary>
    public static (int Code, string Out, string Err) Invoke(Command command, params string[] args)
    {
        var root = new RootCommand { command };
        var (oldOut, oldErr, oldIn) = (Console.Out, Console.Error, Console.In);
        var (o, e) = (new StringWriter(), new StringWriter());
        Console.SetOut(o); Console.SetError(e); Console.SetIn(new StringReader(""));
        try { return (root.Parse(args).Invoke(), o.ToString(), e.ToString()); }
        finally { Console.SetOut(oldOut); Console.SetError(oldErr); Console.SetIn(oldIn); }
    }

    /// <summary>Asserts a failure the CLI way: non-zero exit, exactly one stderr line starting "error:", no stack trace.</summary>
    public static void AssertOneLineError((int Code, string Out, string Err) r, string mustContain)
    {
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith("error:")).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(r.Code, Is.Not.Zero, r.Err);
            Assert.That(lines, Has.Count.EqualTo(1), r.Err);
            Assert.That(r.Err, Does.Contain(mustContain));
            Assert.That(r.Err, Does.Not.Contain("   at "), "no stack trace");
            Assert.That(r.Err, Does.Not.Contain("Unhandled exception"));
        });
    }
}

/// <summary>A fresh folder under the temp directory, deleted on Dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir(string? parent = null)
    {
        Path = System.IO.Path.Combine(parent ?? System.IO.Path.GetTempPath(), "engine-rel-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }
    public string this[string name] => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
