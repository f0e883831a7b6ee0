// Issue 13, finding 2 and the mutation goal: every kind of stored file of a persistent memory (header.json, the routing
// file, the kv segment) and the recurrent-state checkpoint file is damaged — random bytes, NaNs, bit flips, truncation,
// edited counts — and then opened/restored. Property (the oracle is the undamaged original): either the damage is
// reported (MemoryFormatException / InvalidDataException, a one-line message) or what is read is bit-identical to the
// original; never another exception, never different data. CI runs a seeded slice (ENGINE_MUTATION_CASES raises it; the
// counts per outcome are printed).
using System.Runtime.InteropServices;
using Engine.Memory.Documents;
using Engine.Memory.Recurrent;
using Engine.Runtime.Memory;

namespace Engine.Reliability.Tests;

[NonParallelizable]
public class StoredFileMutationTests
{
    private static int Cases(int ci) =>
        int.TryParse(Environment.GetEnvironmentVariable("ENGINE_MUTATION_CASES"), out int n) && n > 0 ? n : ci;

    private MemoryModel _model = null!;
    private TempDir _dir = null!;
    private string _original = null!;
    private SortedDictionary<string, byte[]> _content = null!;
    private long _usedKvBytes;

    [OneTimeSetUp]
    public void Build()
    {
        _model = new MemoryModel();
        _dir = new TempDir();
        _model.Add(_dir["orig"], "m", 8, 0, 1, 2);
        _original = Path.Combine(_dir["orig"], "m");
        using var m = MemoryStore.Open(_dir["orig"], "m", _model.Identity, writable: false);
        _content = MemoryModel.Snapshot(m.Memory);
        _usedKvBytes = m.Memory.DiskBytes;   // slots are allocated lowest first: the used ones are the file's first bytes
    }

    [OneTimeTearDown]
    public void Done() { _model.Dispose(); _dir.Dispose(); }

    private enum Kind { RandomBytes, NaNs, BitFlip, Truncate, EditCount }

    [TestCase("header.json", 0)]
    [TestCase("routing", 0)]
    [TestCase("kv.0.bin", 0)]
    public void DamagedMemoryFileIsDetectedOrHarmless(string file, int seed)
    {
        int cases = Cases(150);
        var rng = new Random(HashCode.Combine(file, seed));
        var outcomes = new Dictionary<string, int>();
        string work = Copy("work-" + file);
        string target = file == "routing" ? Directory.GetFiles(Path.Combine(work, "m"), "routing.*.bin").Single() : Path.Combine(work, "m", file);
        // mutate only where data lives: a kv segment is a 64 MiB sparse file whose used slots come first
        long limit = file.StartsWith("kv") ? _usedKvBytes : new FileInfo(target).Length;
        long length = new FileInfo(target).Length;
        byte[] prefix = ReadPrefix(target, limit);
        for (int i = 0; i < cases; i++)
        {
            var kind = (Kind)rng.Next(5);
            var bytes = Mutate(prefix, kind, rng);
            using (var fs = new FileStream(target, FileMode.Open, FileAccess.Write, FileShare.ReadWrite))
            {
                fs.Write(bytes);
                if (bytes.Length < prefix.Length) fs.SetLength(bytes.Length);   // truncated
                else if (limit == length) fs.SetLength(bytes.Length);
            }
            string outcome;
            try
            {
                using var m = MemoryStore.Open(work, "m", _model.Identity, writable: false);
                Assert.That(MemoryModel.Snapshot(m.Memory), Is.EqualTo(_content), $"case {i} ({kind}): opened, so the content must be the original's");
                outcome = "identical";
            }
            catch (MemoryFormatException e)
            {
                Assert.That(e.Message, Does.Not.Contain("\n"));
                outcome = "detected";
            }
            outcomes[$"{kind}/{outcome}"] = outcomes.GetValueOrDefault($"{kind}/{outcome}") + 1;
            using (var fs = new FileStream(target, FileMode.Open, FileAccess.Write, FileShare.ReadWrite))   // undo
            {
                fs.SetLength(length);
                fs.Write(prefix);
            }
        }
        TestContext.Out.WriteLine($"{file}: {cases} cases: " + string.Join(", ", outcomes.OrderBy(k => k.Key).Select(k => $"{k.Key} {k.Value}")));
    }

    [Test]   // the issue's cases, exactly: the first 100 KB of kv.0.bin random or NaN, and a token count 54 → 5000
    public void IssueCasesAreDetected()
    {
        foreach (var fill in new Func<int, byte[]>[] { n => { var b = new byte[n]; new Random(1).NextBytes(b); return b; },
                     n => MemoryMarshal.AsBytes(Enumerable.Repeat(float.NaN, n / 4).ToArray().AsSpan()).ToArray() })
        {
            string work = Copy("issue");
            string kv = Path.Combine(work, "m", "kv.0.bin");
            using (var fs = new FileStream(kv, FileMode.Open)) fs.Write(fill((int)Math.Min(100_000, fs.Length)));
            var e = Assert.Throws<MemoryFormatException>(() => MemoryStore.Open(work, "m", _model.Identity, writable: false));
            Assert.That(e!.Message, Does.Contain("document 'doc0'"), "names the document");
        }
        string w2 = Copy("count");
        string header = Path.Combine(w2, "m", "header.json");
        var text = File.ReadAllText(header);
        int tokens = _model.Encode(MemoryModel.Texts[0]).Length;
        File.WriteAllText(header, text.Replace($"\"Tokens\": {tokens},", "\"Tokens\": 5000,"));
        Assert.That(File.ReadAllText(header), Is.Not.EqualTo(text));
        Assert.That(() => MemoryStore.Open(w2, "m", _model.Identity, writable: false), Throws.TypeOf<MemoryFormatException>());
    }

    [Test]
    public void CorruptDocumentCanBeRemovedAndTheRestStays()
    {
        string work = Copy("rm");
        using (var fs = new FileStream(Path.Combine(work, "m", "kv.0.bin"), FileMode.Open)) fs.Write(new byte[64].Select(_ => (byte)0x7f).ToArray());
        using (var m = MemoryStore.Open(work, "m", _model.Identity))
        {
            Assert.That(m.Memory.CorruptDocuments, Is.EqualTo(new[] { "doc0" }));
            m.Remove("doc0");
            m.Save();
        }
        using var r = MemoryStore.Open(work, "m", _model.Identity, writable: false);
        var expected = new SortedDictionary<string, byte[]>(_content.Where(k => k.Key != "doc0").ToDictionary(), StringComparer.Ordinal);
        Assert.That(MemoryModel.Snapshot(r.Memory), Is.EqualTo(expected));
    }

    [Test]
    public void OldFormatAsksForARebuild()
    {
        string work = Copy("old");
        string header = Path.Combine(work, "m", "header.json");
        File.WriteAllText(header, File.ReadAllText(header).Replace("engine-memory/2", "engine-memory/1"));
        var e = Assert.Throws<MemoryFormatException>(() => MemoryStore.Open(work, "m", _model.Identity, writable: false));
        Assert.That(e!.Message, Does.Contain("rebuild"));
    }

    [Test]   // the recurrent-state checkpoint file: damage → InvalidDataException or a bit-exact state
    public void DamagedCheckpointFileIsDetectedOrHarmless()
    {
        int cases = Cases(300);
        var rng = new Random(7);
        var outcomes = new Dictionary<string, int>();
        string path = _dir["states.bin"];
        for (int i = 0; i < cases; i++)
        {
            using var store = new RecurrentStateStore(2, 64, new RecurrentStoreOptions { CheckpointInterval = 0, DiskPath = path, MemoryBudgetBytes = 1 << 20 });
            var states = new List<(RecurrentCheckpoint Cp, float[] State)>();
            for (int c = 0; c < 3; c++)
            {
                store.Advance(0, [c + 1]);
                var st = store.State(0);
                for (int j = 0; j < st.Length; j++) st[j] = rng.NextSingle();
                states.Add((store.SaveCheckpoint(0), st.ToArray()));
            }
            store.OffloadAll();
            var kind = (Kind)rng.Next(4);   // no counts in this file
            Mutate(path, kind, rng);
            string outcome = "identical";
            foreach (var (cp, expected) in states)
            {
                try
                {
                    store.Restore(0, cp);
                    Assert.That(store.State(0).ToArray(), Is.EqualTo(expected), $"case {i} ({kind}): restored, so the state must be the saved one");
                }
                catch (InvalidDataException) { outcome = "detected"; }
                catch (EndOfStreamException) { outcome = "detected"; }
            }
            outcomes[$"{kind}/{outcome}"] = outcomes.GetValueOrDefault($"{kind}/{outcome}") + 1;
        }
        Assert.That(File.Exists(path), Is.False, "the store deletes its disk file on Dispose");
        TestContext.Out.WriteLine($"checkpoint file: {cases} cases: " + string.Join(", ", outcomes.OrderBy(k => k.Key).Select(k => $"{k.Key} {k.Value}")));
    }

    private string Copy(string name)
    {
        string work = _dir[name + "-" + Guid.NewGuid().ToString("N")[..6]];
        Directory.CreateDirectory(Path.Combine(work, "m"));
        foreach (var f in Directory.GetFiles(_original))
            if (Path.GetFileName(f) != "lock") File.Copy(f, Path.Combine(work, "m", Path.GetFileName(f)));
        return work;
    }

    private static byte[] ReadPrefix(string path, long limit)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var b = new byte[Math.Min(limit, fs.Length)];
        fs.ReadExactly(b);
        return b;
    }

    private static void Mutate(string path, Kind kind, Random rng)
    {
        var bytes = Mutate(ReadPrefix(path, long.MaxValue), kind, rng);
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
        fs.Write(bytes);
        fs.SetLength(bytes.Length);
    }

    private static byte[] Mutate(byte[] original, Kind kind, Random rng)
    {
        var bytes = (byte[])original.Clone();
        switch (kind)
        {
            case Kind.RandomBytes:
            {
                int at = rng.Next(bytes.Length), n = Math.Min(bytes.Length - at, 1 + rng.Next(64));
                for (int i = 0; i < n; i++) bytes[at + i] = (byte)rng.Next(256);
                break;
            }
            case Kind.NaNs:
            {
                int at = rng.Next(bytes.Length / 4) * 4, n = Math.Min((bytes.Length - at) / 4, 1 + rng.Next(16));
                for (int i = 0; i < n; i++) BitConverter.TryWriteBytes(bytes.AsSpan(at + 4 * i), float.NaN);
                break;
            }
            case Kind.BitFlip:
                bytes[rng.Next(bytes.Length)] ^= (byte)(1 << rng.Next(8));
                break;
            case Kind.Truncate:
                bytes = bytes[..rng.Next(bytes.Length)];
                break;
            case Kind.EditCount:
            {
                if (bytes.Length < 4 || bytes[0] != (byte)'{')
                {   // binary file: an int32 at an aligned position replaced by a plausible count
                    BitConverter.TryWriteBytes(bytes.AsSpan(rng.Next(bytes.Length / 4) * 4), rng.Next(1, 5000));
                    break;
                }
                // a number in the JSON (a token count, slot, shape or checksum) replaced by another
                var text = System.Text.Encoding.UTF8.GetString(bytes);
                var numbers = System.Text.RegularExpressions.Regex.Matches(text, @"(?<=: )\d+|(?<=[\[,]\s*)\d+");
                if (numbers.Count == 0) goto case Kind.BitFlip;
                var mt = numbers[rng.Next(numbers.Count)];
                string repl = rng.Next(3) switch { 0 => "0", 1 => (long.Parse(mt.Value[..Math.Min(mt.Value.Length, 18)]) + 1).ToString(), _ => "5000" };
                bytes = System.Text.Encoding.UTF8.GetBytes(text[..mt.Index] + repl + text[(mt.Index + mt.Length)..]);
                break;
            }
        }
        return bytes;
    }
}
