// Issue 13, findings 3 and 9 (files): every disk-writing path on a full filesystem — the paged KV disk tier, a memory's
// kv segments and manifest, the recurrent-state checkpoint file, logits output — fails with a clear error (no crash:
// the files are preallocated, so ENOSPC comes at creation, not as a SIGBUS on first touch) and leaves no file behind.
// The full filesystem is a small tmpfs (needs root and mount; skipped with a message where the sandbox forbids it).
using System.Diagnostics;
using Engine.Cli.Commands;
using Engine.Memory.Disk;
using Engine.Memory.Recurrent;
using Engine.Runtime;
using Engine.Runtime.Memory;

namespace Engine.Reliability.Tests;

[NonParallelizable]
public class FullDiskTests
{
    private static string Sh(string cmd)
    {
        using var p = Process.Start(new ProcessStartInfo("/bin/sh", ["-c", cmd]) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        string o = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        return p.ExitCode == 0 ? o : throw new IOException(o);
    }

    /// <summary>A tmpfs of <paramref name="size"/> (e.g. "64k") mounted for the test, unmounted on Dispose.</summary>
    private sealed class SmallDisk : IDisposable
    {
        public SmallDisk(string size)
        {
            Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "engine-fulldisk-" + Guid.NewGuid().ToString("N")[..8]);
            Directory.CreateDirectory(Path);
            try { Sh($"mount -t tmpfs -o size={size} tmpfs {Path}"); }
            catch (Exception e) when (e is IOException or System.ComponentModel.Win32Exception)
            {
                Directory.Delete(Path);
                Assert.Ignore($"cannot mount a small tmpfs here (needs root and mount): {e.Message.Trim()}");
            }
        }

        public string Path { get; }
        public string[] Files => Directory.GetFileSystemEntries(Path, "*", SearchOption.AllDirectories);

        public void Dispose()
        {
            try { Sh($"umount {Path}"); Directory.Delete(Path); } catch (IOException) { }
        }
    }

    [Test]   // the reproduction: run -n 400 --kv-budget 40K --kv-disk-mb 8 with the temp folder on a 64 KiB tmpfs
    public void PagedDiskTierOnAFullDiskFailsAtCreation()
    {
        using var disk = new SmallDisk("64k");
        var e = Assert.Throws<IOException>(() =>
            InferenceEngine.Load(Cli.DefaultModel, new EngineOptions { KvBudgetBytes = 40 << 10, KvDiskBytes = 8 << 20, KvDiskPath = disk.Path, Threads = 1 }));
        Assert.That(e!.Message, Does.Contain("cannot reserve").And.Contain("disk was full").Or.Contain("No space"));
        Assert.That(disk.Files, Is.Empty, "no leftover file");
    }

    [Test]
    public void MemoryAddOnAFullDiskLeavesNoMemory()
    {
        using var disk = new SmallDisk("1m");
        using var model = new MemoryModel();
        Assert.Throws<IOException>(() => model.Add(disk.Path, "m", 8, 0));
        // the CLI: one line, exit 1, and the memory it started is gone
        string doc = Path.Combine(Path.GetTempPath(), $"engine-doc-{Guid.NewGuid():N}.txt");
        File.WriteAllText(doc, MemoryModel.Texts[0]);
        try
        {
            var r = Cli.Invoke(MemoryCommand.Create(), "memory", "add", "-m", Cli.DefaultModel, "--memory-dir", disk.Path, "--memory", "cli", doc);
            Cli.AssertOneLineError(r, "disk was full");
        }
        finally { File.Delete(doc); }
        // API: OpenOrCreate committed an empty memory before the add failed — it stays, empty and readable, no segment left
        using (var m = MemoryStore.Open(disk.Path, "m", model.Identity, writable: false)) Assert.That(m.List(), Is.Empty);
        Assert.That(disk.Files.Where(f => f.Contains("/kv.")), Is.Empty, "no kv segment left");
        // CLI: the memory it created is removed again
        Assert.That(MemoryStore.Names(disk.Path), Is.EqualTo(new[] { "m" }));
        Assert.That(Directory.Exists(Path.Combine(disk.Path, "cli")), Is.False);
    }

    [Test]
    public void ManifestWriteOnAFullDiskKeepsTheCommittedMemory()
    {
        using var disk = new SmallDisk("6m");
        using var model = new MemoryModel();
        model.Add(disk.Path, "m", 8, 0);   // one 4 MiB segment + manifest
        SortedDictionary<string, byte[]> before;
        using (var m = MemoryStore.Open(disk.Path, "m", model.Identity, writable: false)) before = MemoryModel.Snapshot(m.Memory);
        // fill the disk, then try to add: the add or its commit fails, the committed memory stays readable and unchanged
        Sh($"dd if=/dev/zero of={disk.Path}/filler bs=4k count=100000 2>/dev/null || true");
        Assert.Throws<IOException>(() => model.Add(disk.Path, "m", 8, 1, 2, 3, 4, 5));
        File.Delete(Path.Combine(disk.Path, "filler"));
        using var after = MemoryStore.Open(disk.Path, "m", model.Identity, writable: false);
        Assert.That(MemoryModel.Snapshot(after.Memory), Is.EqualTo(before));
    }

    [Test]
    public void CheckpointOffloadOnAFullDiskIsRolledBack()
    {
        using var disk = new SmallDisk("64k");
        string path = Path.Combine(disk.Path, "states.bin");
        using (var store = new RecurrentStateStore(4, 4096, new RecurrentStoreOptions { CheckpointInterval = 0, DiskPath = path }))
        {
            var saved = new List<(RecurrentCheckpoint, float[])>();
            for (int i = 0; i < 6; i++)
            {
                store.Advance(0, [i + 1]);
                store.State(0).Fill(i + 0.5f);
                saved.Add((store.SaveCheckpoint(0), store.State(0).ToArray()));
            }
            var e = Assert.Throws<IOException>(() => store.OffloadAll(), "6 × 64 KiB of states do not fit in 64 KiB");
            Assert.That(e!.Message, Does.Contain("could not write"));
            foreach (var (cp, expected) in saved)
            {
                store.Restore(0, cp);
                Assert.That(store.State(0).ToArray(), Is.EqualTo(expected), "offloaded ones reload bit-exact, the others stayed in memory");
            }
        }
        Assert.That(disk.Files, Is.Empty, "the checkpoint file is deleted on Dispose");
    }

    [Test]
    public void LogitsOnAFullDiskLeavesNoPartialFile()
    {
        using var disk = new SmallDisk("16k");
        var ids = string.Join(",", Enumerable.Range(1, 40));   // 40 × 512 floats = 80 KiB
        var r = Cli.Invoke(LogitsCommand.Create(), "logits", "-m", Cli.DefaultModel, "--tokens", ids, "--out", Path.Combine(disk.Path, "l.bin"));
        Cli.AssertOneLineError(r, "error:");
        Assert.That(disk.Files, Is.Empty);
    }

    [Test]   // finding 9: a disk tier that cannot be created leaves no 0-byte engine-kv-*.bin behind
    public void FailedDiskTierCreationLeavesNoFile()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir["not-a-folder"], "x");
        Assert.That(() => InferenceEngine.Load(Cli.DefaultModel, new EngineOptions { KvDiskBytes = 1 << 20, KvDiskPath = dir["not-a-folder"], Threads = 1 }),
            Throws.InstanceOf<IOException>());
        Assert.That(Directory.GetFiles(dir.Path), Is.EqualTo(new[] { dir["not-a-folder"] }));
    }

    [Test]   // the reservation is real: a new region's blocks are allocated (not a sparse file)
    public void RegionBlocksAreReservedOnCreation()
    {
        using var dir = new TempDir();
        string path = dir["r.bin"];
        using var region = new MappedRegion(path, 4 << 20, create: true, deleteOnDispose: true);
        long blocks = long.Parse(Sh($"stat -c %b {path}").Trim());
        long blockSize = long.Parse(Sh($"stat -c %B {path}").Trim());
        if (blocks == 0) Assert.Ignore("this filesystem reports no allocated blocks (no fallocate support)");
        Assert.That(blocks * blockSize, Is.GreaterThanOrEqualTo(4L << 20));
    }
}
