// Issue 13, finding 1: several writers adding to one memory at once (threads in this process, and separate `engine
// memory add` processes). Oracle: a memory built sequentially from the same documents — every document must be present
// and its content (K/V rows, routing keys, token count) bit-identical, whatever slots it landed in; no writer may fail.
using System.Diagnostics;
using Engine.Memory.Documents;
using Engine.Runtime.Memory;

namespace Engine.Reliability.Tests;

[NonParallelizable]
public class ConcurrentMemoryWriterTests
{
    private MemoryModel _model = null!;
    private TempDir _dir = null!;
    private SortedDictionary<string, byte[]> _sequential = null!;

    [OneTimeSetUp]
    public void Build()
    {
        _model = new MemoryModel();
        _dir = new TempDir();
        _model.Add(_dir["seq"], "m", 8, 0, 1, 2, 3, 4, 5);
        using var m = MemoryStore.Open(_dir["seq"], "m", _model.Identity, writable: false);
        _sequential = MemoryModel.Snapshot(m.Memory);
    }

    [OneTimeTearDown]
    public void Done() { _model.Dispose(); _dir.Dispose(); }

    [TestCase(true, 3)]    // the memory exists before the writers start (one document in it)
    [TestCase(false, 3)]   // the writers race to create it
    public void ThreadsAddingToOneMemoryLoseNothing(bool preexisting, int rounds)
    {
        for (int round = 0; round < rounds; round++)
        {
            string root = _dir[$"threads-{preexisting}-{round}"];
            if (preexisting) _model.Add(root, "m", 8, 0);
            var texts = preexisting ? new[] { 1, 2, 3, 4, 5 } : new[] { 0, 1, 2, 3, 4, 5 };
            var errors = new System.Collections.Concurrent.ConcurrentBag<Exception>();
            var threads = texts.Select(t => new Thread(() =>
            {
                try { _model.Add(root, "m", 8, t); }
                catch (Exception e) { errors.Add(e); }
            })).ToList();
            // the model is shared: the memory lock serialises the writers, so one forward runs at a time
            threads.ForEach(t => t.Start());
            threads.ForEach(t => t.Join());
            Assert.That(errors, Is.Empty, string.Join("\n", errors));
            using var m = MemoryStore.Open(root, "m", _model.Identity, writable: false);
            Assert.That(MemoryModel.Snapshot(m.Memory), Is.EqualTo(_sequential), $"round {round}: content of every document equals the sequential build");
        }
    }

    [Test]
    public void SecondWriterFailsClearlyAfterTheTimeout()
    {
        string root = _dir["timeout"];
        _model.Add(root, "m", 8, 0);
        using var first = MemoryStore.Open(root, "m", _model.Identity);
        var e = Assert.Throws<MemoryLockedException>(() => MemoryStore.Open(root, "m", _model.Identity, lockTimeout: TimeSpan.FromMilliseconds(200)));
        Assert.That(e!.Message, Does.Contain("in use by another").And.Contain("waited"));
        var r = Assert.Throws<MemoryLockedException>(() => MemoryStore.Open(root, "m", _model.Identity, writable: false, lockTimeout: TimeSpan.FromMilliseconds(100)));
        Assert.That(r!.Message, Does.Contain("writer"), "a reader waits for a writer too");
    }

    [Test]
    public void ReadersShareTheMemory()
    {
        string root = _dir["readers"];
        _model.Add(root, "m", 8, 0);
        using var a = MemoryStore.Open(root, "m", _model.Identity, writable: false, lockTimeout: TimeSpan.Zero);
        using var b = MemoryStore.Open(root, "m", _model.Identity, writable: false, lockTimeout: TimeSpan.Zero);
        Assert.That(MemoryModel.Snapshot(a.Memory), Is.EqualTo(MemoryModel.Snapshot(b.Memory)));
        Assert.Throws<InvalidOperationException>(() => a.Remove("doc0"), "a read-only open cannot change the memory");
    }

    [Test]   // the reproduction: `engine memory add` processes in parallel (& … wait), twice
    public void ParallelCliProcessesLoseNothing()
    {
        string engineDll = Path.Combine(AppContext.BaseDirectory, "engine.dll");
        if (!File.Exists(engineDll)) Assert.Ignore($"engine.dll not beside the tests ({engineDll})");
        for (int round = 0; round < 2; round++)
        {
            string root = _dir[$"procs-{round}"];
            var files = MemoryModel.Texts.Select((t, i) => { var f = _dir[$"doc{i}"]; File.WriteAllText(f, t); return f; }).ToArray();
            Assert.That(Run(engineDll, root, files[0]).Code, Is.Zero);
            var procs = files.Skip(1).Select(f => Start(engineDll, root, f)).ToList();
            foreach (var p in procs)
            {
                Assert.That(p.WaitForExit(120_000), Is.True, "no hang");
                Assert.That(p.ExitCode, Is.Zero, p.StandardError.ReadToEnd());
            }
            using var m = MemoryStore.Open(root, "m", _model.Identity, writable: false);
            Assert.That(MemoryModel.Snapshot(m.Memory), Is.EqualTo(_sequential), $"round {round}");
        }
    }

    private static Process Start(string dll, string root, string file)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[] { dll, "memory", "add", "-m", Cli.DefaultModel, "--memory-dir", root, "--memory", "m", "--chunk-size", "8", "--threads", "1", file })
            psi.ArgumentList.Add(a);
        return Process.Start(psi)!;
    }

    private static (int Code, string Err) Run(string dll, string root, string file)
    {
        using var p = Start(dll, root, file);
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, err);
    }
}
