// Issue 13, finding 9: long-running commands honour SIGINT and SIGTERM — exit 130, "cancelled" on stderr, and nothing
// half-written (a cancelled `memory add` leaves the memory exactly as it was). Runs the built CLI (engine.dll) as a
// child process and signals it with kill(1).
using System.Diagnostics;
using Engine.Runtime.Memory;

namespace Engine.Reliability.Tests;

[NonParallelizable]
public class SignalTests
{
    private static string EngineDll
    {
        get
        {
            string dll = Path.Combine(AppContext.BaseDirectory, "engine.dll");
            if (!File.Exists(dll)) Assert.Ignore($"engine.dll not beside the tests ({dll})");
            return dll;
        }
    }

    private static Process Start(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        psi.ArgumentList.Add(EngineDll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        return Process.Start(psi)!;
    }

    /// <summary>Starts the command, waits until it wrote <paramref name="readyLine"/> to stderr (it is busy), signals it.</summary>
    private static (int Code, string Err) SignalWhenBusy(string signal, string readyLine, params string[] args)
    {
        using var p = Start(args);
        var err = new System.Text.StringBuilder();
        var ready = new ManualResetEventSlim();
        p.ErrorDataReceived += (_, e) => { if (e.Data == null) return; lock (err) err.AppendLine(e.Data); if (e.Data.Contains(readyLine)) ready.Set(); };
        p.BeginErrorReadLine();
        _ = p.StandardOutput.ReadToEndAsync();
        Assert.That(ready.Wait(60_000), Is.True, $"the command got busy: {err}");
        Thread.Sleep(300);
        Process.Start("kill", [$"-{signal}", p.Id.ToString()])!.WaitForExit();
        Assert.That(p.WaitForExit(20_000), Is.True, $"it stops after SIG{signal}");
        p.WaitForExit();
        lock (err) return (p.ExitCode, err.ToString());
    }

    [TestCase("INT")]
    [TestCase("TERM")]
    public void BenchStopsWithExitCode130(string signal)
    {
        var (code, err) = SignalWhenBusy(signal, "rep 1/", "bench", "-m", Cli.DefaultModel, "-p", "64", "-n", "64", "-r", "100000", "--threads", "1");
        Assert.That(code, Is.EqualTo(130), err);
        Assert.That(err, Does.Contain("cancelled"));
    }

    [TestCase("INT")]
    [TestCase("TERM")]
    public void MemoryAddStopsAndLeavesTheMemoryAsItWas(string signal)
    {
        using var dir = new TempDir();
        File.WriteAllText(dir["small.txt"], MemoryModel.Texts[0]);
        File.WriteAllText(dir["big.txt"], string.Concat(Enumerable.Repeat("Lily and Tom went to the park and saw a big red ball. ", 4000)));
        using (var first = Start("memory", "add", "-m", Cli.DefaultModel, "--memory-dir", dir["mem"], "--memory", "m", "--threads", "1", dir["small.txt"]))
        {
            first.WaitForExit();
            Assert.That(first.ExitCode, Is.Zero);
        }
        string folder = Path.Combine(dir["mem"], "m");
        var before = Directory.GetFiles(folder).Order().Select(f => (Path.GetFileName(f), File.ReadAllBytes(f).Length)).ToList();
        string header = File.ReadAllText(Path.Combine(folder, "header.json"));
        var (code, err) = SignalWhenBusy(signal, "adding 1 documents", "memory", "add", "-m", Cli.DefaultModel, "--memory-dir", dir["mem"], "--memory", "m",
            "--threads", "1", dir["big.txt"]);
        Assert.That(code, Is.EqualTo(130), err);
        Assert.That(Directory.GetFiles(folder).Order().Select(f => (Path.GetFileName(f), File.ReadAllBytes(f).Length)), Is.EqualTo(before), "no new or partial file");
        Assert.That(File.ReadAllText(Path.Combine(folder, "header.json")), Is.EqualTo(header));
        using var m = MemoryStore.Open(dir["mem"], "m", expected: null, writable: false);
        Assert.That(m.List().Select(d => d.Name), Is.EqualTo(new[] { "small.txt" }));
    }
}
