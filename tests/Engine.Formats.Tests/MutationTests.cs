// Tests: robustness of every reader against corrupt input. Shared model files are truncated at many offsets and
// mutated by seeded random byte/bit/field edits concentrated on the header, metadata and tensor-info regions.
// Every case must either load (and reading every byte of every tensor view is then safe) or throw
// ModelFormatException — never another exception type, never a hang (2 s per case), never a huge allocation.
using System.Diagnostics;
using System.Runtime.InteropServices;
using Engine.Formats.Gguf;

namespace Engine.Formats.Tests;

public unsafe class MutationTests
{
    private enum Outcome { Loaded, Rejected }

    private sealed class Fixture : IDisposable
    {
        public Fixture(string name, byte[] original, (long Start, long End, double Weight)[] regions, long requiredLength)
        {
            Name = name; Original = original; Regions = regions; RequiredLength = requiredLength;
            Buffer = (byte*)NativeMemory.AlignedAlloc((nuint)original.Length, 64);
        }
        public string Name { get; }
        public byte[] Original { get; }
        public byte* Buffer { get; }
        /// <summary>Regions to mutate with their relative weights.</summary>
        public (long Start, long End, double Weight)[] Regions { get; }
        /// <summary>A truncation below this length must be rejected (the data no longer fits).</summary>
        public long RequiredLength { get; }
        private readonly List<(long, int)> _touched = [];
        private bool _fresh;
        /// <summary>Restores the original bytes (only the ranges touched since the last reset, after the first full copy).</summary>
        public void Reset()
        {
            if (!_fresh) { Original.CopyTo(new Span<byte>(Buffer, Original.Length)); _fresh = true; _touched.Clear(); return; }
            foreach (var (at, n) in _touched) Original.AsSpan((int)at, n).CopyTo(new Span<byte>(Buffer + at, n));
            _touched.Clear();
        }
        public void Touch(long at, int count) => _touched.Add((at, (int)Math.Min(count, Original.Length - at)));
        public void Dispose() => NativeMemory.AlignedFree(Buffer);
    }

    private static Fixture GgufFixture(string relative)
    {
        var bytes = File.ReadAllBytes(SharedData.Get(relative));
        using var m = GgufReader.Read(bytes, relative, out var layout);
        long end = layout.DataOffset + Enumerable.Range(0, m.Tensors.Count)
            .Select(i => layout.TensorOffsets[i] + m.Tensors[i].ByteLength).DefaultIfEmpty(0).Max();
        return new Fixture(relative, bytes,
        [
            (0, layout.MetadataStart, 0.2),
            (layout.MetadataStart, layout.TensorInfoStart, 0.35),
            (layout.TensorInfoStart, Math.Max(layout.TensorInfoStart + 1, layout.TensorInfoEnd), m.Tensors.Count > 0 ? 0.35 : 0),
            (0, bytes.Length, 0.1),
        ], m.Tensors.Count > 0 ? end : layout.TensorInfoEnd);
    }

    private static Fixture RawFixture(string relative, long headerBytes, long requiredLength)
    {
        var bytes = File.ReadAllBytes(SharedData.Get(relative));
        return new Fixture(relative, bytes, [(0, headerBytes, 0.6), (0, bytes.Length, 0.4)], requiredLength);
    }

    /// <summary>An rwkv.cpp file: header and the first parameter headers weighted most. Until the rwkv branch's reader is
    /// merged, ModelFiles rejects these files outright (the cases still must not throw anything else).</summary>
    private static Fixture RwkvFixture(string relative)
    {
        var bytes = File.ReadAllBytes(SharedData.Get(relative));
        // No parameter count in the format: a cut between parameters may load with fewer tensors (the model loader then
        // reports the missing ones), so truncations only need to load or throw ModelFormatException.
        return new Fixture(relative, bytes, [(0, 24, 0.4), (24, 2048, 0.4), (0, bytes.Length, 0.2)], 0);
    }

    /// <summary>A small safetensors image (3 tensors, F32/F16/BF16) written by the test's own encoder.</summary>
    private static Fixture SafetensorsFixture()
    {
        var path = Path.GetTempFileName();
        try
        {
            SafetensorsTests.WriteSafetensors(path,
            [
                ("model.embed_tokens.weight", "F32", [8, 4], new byte[128]),
                ("model.norm.weight", "F16", [4], new byte[8]),
                ("lm_head.weight", "BF16", [8, 4], new byte[64]),
            ]);
            var bytes = File.ReadAllBytes(path);
            long header = 8 + BitConverter.ToInt64(bytes, 0);
            return new Fixture("synthetic.safetensors", bytes, [(0, 8, 0.2), (8, header, 0.7), (0, bytes.Length, 0.1)], 0);
        }
        finally { File.Delete(path); }
    }

    /// <summary>Parses the fixture's buffer (first <paramref name="length"/> bytes) and touches every tensor byte.</summary>
    private static Outcome RunCase(Fixture f, long length, string description)
    {
        var task = Task.Run(() =>
        {
            try
            {
                using var m = ModelFiles.Parse(f.Name, f.Buffer, length);
                ulong sum = 0;
                foreach (var t in m.Tensors)
                {
                    var span = t.Bytes;
                    Assert.That((byte*)t.Data >= f.Buffer && (byte*)t.Data + t.ByteLength <= f.Buffer + length,
                        $"{description}: tensor {t.Name} lies outside the file");
                    foreach (var v in MemoryMarshal.Cast<byte, ulong>(span)) sum ^= v;
                    for (int i = span.Length & ~7; i < span.Length; i++) sum ^= span[i];
                    _ = t.ElementCount;
                }
                foreach (var v in m.Metadata.Values) _ = v.ToString();
                GC.KeepAlive(sum);
                return (Outcome.Loaded, (Exception?)null);
            }
            catch (ModelFormatException) { return (Outcome.Rejected, null); }
            catch (Exception e) { return (Outcome.Rejected, e); }
        });
        if (!task.Wait(TimeSpan.FromSeconds(2))) Assert.Fail($"{f.Name}: {description}: no result within 2 s (hang?)");
        var (outcome, unexpected) = task.Result;
        if (unexpected != null)
            Assert.Fail($"{f.Name}: {description}: threw {unexpected.GetType().Name} instead of ModelFormatException: {unexpected}");
        return outcome;
    }

    private static IEnumerable<long> TruncationOffsets(Fixture f, Random rng)
    {
        var set = new SortedSet<long>();
        for (long i = 0; i <= Math.Min(256, f.Original.Length); i++) set.Add(i);               // header and first keys, every byte
        foreach (var (start, end, _) in f.Regions)                                              // around every region boundary
            foreach (var b in new[] { start, end })
                for (long d = -8; d <= 8; d++) if (b + d >= 0 && b + d < f.Original.Length) set.Add(b + d);
        for (int i = 0; i < 60; i++) set.Add(rng.NextInt64(f.Original.Length));                 // anywhere
        foreach (var (start, end, w) in f.Regions)
            if (w >= 0.2 && end > start) for (int i = 0; i < 40; i++) set.Add(start + rng.NextInt64(end - start));
        set.Remove(f.Original.Length);
        return set;
    }

    [Test]
    public void Truncation_AtOver200OffsetsPerFile_LoadsOrThrowsModelFormatException()
    {
        var rng = new Random(20261122);
        var fixtures = new[]
        {
            GgufFixture("reference/llama-256x2/rand-llama-Q4_0.gguf"),
            GgufFixture("models/vocab/ggml-vocab-llama-spm.gguf"),
            RawFixture("models/llama2c/stories260K.bin", 28, File.ReadAllBytes(SharedData.Get("models/llama2c/stories260K.bin")).Length),
            RawFixture("models/llama2c/tok512.bin", 64, 4 + 8),
            RwkvFixture("models/rwkv/tiny-rwkv-6v0-3m-Q5_0.bin"),
        };
        int cases = 0, loaded = 0;
        var sw = Stopwatch.StartNew();
        try
        {
            foreach (var f in fixtures)
            {
                f.Reset();
                int perFile = 0;
                foreach (var len in TruncationOffsets(f, rng))
                {
                    var outcome = RunCase(f, len, $"truncated to {len} bytes");
                    if (len < f.RequiredLength)
                        Assert.That(outcome, Is.EqualTo(Outcome.Rejected), $"{f.Name} truncated to {len} < {f.RequiredLength} must be rejected");
                    if (outcome == Outcome.Loaded) loaded++;
                    cases++; perFile++;
                }
                Assert.That(perFile, Is.GreaterThanOrEqualTo(200), f.Name);
            }
        }
        finally { foreach (var f in fixtures) f.Dispose(); }
        TestContext.Out.WriteLine($"truncation: {cases} cases, {loaded} loaded, {cases - loaded} rejected, {sw.ElapsedMilliseconds} ms");
    }

    private static readonly ulong[] Interesting =
        [0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 31, 32, 33, 64, 255, 256, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
         0x100000000, 0x7FFFFFFFFFFFFFFF, 0x8000000000000000, 0xFFFFFFFFFFFFFFFF, 1UL << 40, 1UL << 62];

    private static void Mutate(Fixture f, Random rng)
    {
        int edits = 1 + rng.Next(3);
        for (int e = 0; e < edits; e++)
        {
            double pick = rng.NextDouble() * f.Regions.Sum(r => r.Weight);
            var region = f.Regions.First(r => (pick -= r.Weight) <= 0 || r == f.Regions[^1]);
            long start = region.Start, end = Math.Max(region.Start + 1, region.End);
            long pos = Math.Min(start + rng.NextInt64(end - start), f.Original.Length - 1);
            f.Touch(pos & ~3L, 8);
            switch (rng.Next(4))
            {
                case 0: f.Buffer[pos] = (byte)rng.Next(256); break;                               // random byte
                case 1: f.Buffer[pos] ^= (byte)(1 << rng.Next(8)); break;                         // bit flip
                case 2:                                                                           // 4- or 8-byte field
                {
                    int width = rng.Next(2) == 0 ? 4 : 8;
                    pos &= ~3L;
                    if (pos + width > f.Original.Length) break;
                    ulong v = Interesting[rng.Next(Interesting.Length)];
                    if (rng.Next(4) == 0) v = (ulong)f.Original.Length - (ulong)rng.Next(64);
                    for (int i = 0; i < width; i++) f.Buffer[pos + i] = (byte)(v >> (8 * i));
                    break;
                }
                default:                                                                          // small delta on a byte
                    f.Buffer[pos] = (byte)(f.Buffer[pos] + rng.Next(-3, 4));
                    break;
            }
        }
    }

    [Test]
    public void RandomMutations_6300Cases_LoadOrThrowModelFormatException()
    {
        var rng = new Random(1234567);
        var plan = new (Fixture F, int Cases)[]
        {
            (GgufFixture("reference/llama-256x2/rand-llama-Q4_0.gguf"), 2600),
            (GgufFixture("models/vocab/ggml-vocab-llama-spm.gguf"), 500),
            (RawFixture("models/llama2c/stories260K.bin", 28, 0), 1000),
            (RawFixture("models/llama2c/tok512.bin", 256, 0), 1000),
            (SafetensorsFixture(), 600),
            (RwkvFixture("models/rwkv/tiny-rwkv-6v0-3m-Q5_0.bin"), 600),
        };
        int cases = 0, loaded = 0;
        var perFixture = new List<(string, long)>();
        var sw = Stopwatch.StartNew();
        try
        {
            foreach (var (f, n) in plan)
            {
                long t0 = sw.ElapsedMilliseconds;
                for (int i = 0; i < n; i++)
                {
                    f.Reset();
                    Mutate(f, rng);
                    if (RunCase(f, f.Original.Length, $"mutation case {i}") == Outcome.Loaded) loaded++;
                    cases++;
                }
                perFixture.Add((f.Name, sw.ElapsedMilliseconds - t0));
            }
        }
        finally { foreach (var (f, _) in plan) f.Dispose(); }
        foreach (var (name, ms) in perFixture) TestContext.Out.WriteLine($"  {name}: {ms} ms");
        Assert.That(cases, Is.GreaterThanOrEqualTo(5000));
        TestContext.Out.WriteLine($"mutation: {cases} cases, {loaded} loaded, {cases - loaded} rejected, {sw.ElapsedMilliseconds} ms");
    }
}
