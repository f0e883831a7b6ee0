// Tests: GgufWriter output reads back identically (every value type, arrays incl. strings and nesting, tensors,
// alignment), and re-writing a real GGUF (stories260K) reproduces its metadata and tensor bytes.
using Engine.Formats;
using Engine.Formats.Gguf;
using Engine.Tensors;

namespace Engine.Formats.Tests;

public class GgufWriterTests
{
    private static Dictionary<string, object> EveryValueType() => new()
    {
        ["u8"] = (byte)255, ["i8"] = (sbyte)-128, ["u16"] = (ushort)65535, ["i16"] = (short)-32768,
        ["u32"] = uint.MaxValue, ["i32"] = int.MinValue, ["f32"] = -1.5e-7f, ["f32.nan"] = BitConverter.Int32BitsToSingle(0x7FC00123),
        ["bool.t"] = true, ["bool.f"] = false, ["str"] = "héllo ▁wörld ☃", ["str.empty"] = "",
        ["u64"] = ulong.MaxValue, ["i64"] = long.MinValue, ["f64"] = Math.PI,
        ["a.u8"] = new byte[] { 0, 1, 255 }, ["a.i8"] = new sbyte[] { -1, 2 }, ["a.u16"] = new ushort[] { 7 },
        ["a.i16"] = new short[] { -7, 7 }, ["a.u32"] = new uint[] { 1, 2, 3 }, ["a.i32"] = new[] { -1, 0, 1 },
        ["a.f32"] = new[] { 0.5f, -0f, float.PositiveInfinity }, ["a.bool"] = new[] { true, false, true },
        ["a.str"] = new[] { "<unk>", "", "▁t", "\n" }, ["a.u64"] = new ulong[] { ulong.MaxValue },
        ["a.i64"] = new long[] { long.MinValue, 5 }, ["a.f64"] = new[] { 1e300, -0.0 },
        ["a.empty"] = Array.Empty<int>(), ["a.str.empty"] = Array.Empty<string>(),
        ["a.nested"] = new object[] { new[] { 1, 2 }, new[] { "x", "y" }, new object[] { new byte[] { 9 } }, Array.Empty<float>() },
    };

    [TestCase(32u, 3u)]
    [TestCase(64u, 3u)]
    [TestCase(32u, 2u)]
    [TestCase(1u, 3u)]
    public void ReadOfWrite_IsIdentity(uint alignment, uint version)
    {
        var rng = new Random(42);
        var f32 = Enumerable.Range(0, 3 * 5).Select(_ => (float)rng.NextDouble()).ToArray();
        var q4 = new byte[2 * 18 * 2]; rng.NextBytes(q4);          // [64, 2] Q4_0: 2 rows × 2 blocks × 18 bytes
        var f16 = new byte[7 * 2]; rng.NextBytes(f16);              // [7] F16
        var w = new GgufWriter(alignment, version);
        var md = EveryValueType();
        w.AddMetadata(md);
        w.AddTensor("a.weight", [5, 3], f32);
        w.AddTensor("b.q4", DType.Q4_0, [64, 2], q4);
        w.AddTensor("c.f16", DType.F16, [7], f16);
        w.AddTensor("d.empty", DType.F32, [0, 4], []);
        using var m = GgufReader.Read(w.ToArray(), "roundtrip", out var layout);

        var expectedKeys = md.Keys.ToList();
        if (alignment != 32) expectedKeys.Insert(0, GgufReader.AlignmentKey);
        Assert.That(m.Metadata.Keys, Is.EqualTo(expectedKeys), "keys in insertion order");
        Assert.That(TestUtil.MetadataDifferences(md, m.Metadata), Is.Empty);
        Assert.Multiple(() =>
        {
            Assert.That(layout.Version, Is.EqualTo(version));
            Assert.That(layout.Alignment, Is.EqualTo(alignment));
            Assert.That(layout.DataOffset % alignment, Is.EqualTo(0));
            Assert.That(m.Tensors.Select(t => t.Name), Is.EqualTo(new[] { "a.weight", "b.q4", "c.f16", "d.empty" }));
            Assert.That(m.GetTensor("a.weight").Shape, Is.EqualTo(new long[] { 5, 3 }));
            Assert.That(m.GetTensor("a.weight").Bytes.SequenceEqual(System.Runtime.InteropServices.MemoryMarshal.AsBytes(f32.AsSpan())));
            Assert.That(m.GetTensor("b.q4").Type, Is.EqualTo(DType.Q4_0));
            Assert.That(m.GetTensor("b.q4").Bytes.SequenceEqual(q4));
            Assert.That(m.GetTensor("c.f16").Bytes.SequenceEqual(f16));
            Assert.That(m.GetTensor("d.empty").ByteLength, Is.EqualTo(0));
            foreach (var o in layout.TensorOffsets) Assert.That(o % alignment, Is.EqualTo(0));
            foreach (var t in m.Tensors) Assert.That((long)t.Data % alignment, Is.EqualTo(0), $"{t.Name} address aligned");
        });
    }

    [Test]
    public void Writer_RejectsInconsistentInput()
    {
        var w = new GgufWriter();
        w.AddMetadata("k", 1);
        Assert.Throws<ArgumentException>(() => w.AddMetadata("k", 2));
        Assert.Throws<ArgumentException>(() => w.AddMetadata("bad", new List<int>()));
        Assert.Throws<ArgumentException>(() => w.AddMetadata(GgufReader.AlignmentKey, 64u));
        Assert.Throws<ArgumentException>(() => w.AddTensor("t", DType.F32, [4], new byte[12]));
        Assert.Throws<ArgumentException>(() => w.AddTensor("q", DType.Q8_0, [16], new byte[17]));
        w.AddTensor("t", DType.F32, [1], new byte[4]);
        Assert.Throws<ArgumentException>(() => w.AddTensor("t", DType.F32, [1], new byte[4]));
        Assert.Throws<ArgumentException>(() => new GgufWriter(alignment: 48));
    }

    [Test]
    public void Rewrite_Stories260K_IsBitIdenticalFile()
    {
        string path = SharedData.Get("reference/stories260K/stories260K.gguf");
        using var m = GgufReader.Read(path);
        var dir = Directory.CreateTempSubdirectory("engine-gguf-");
        try
        {
            var outPath = Path.Combine(dir.FullName, "copy.gguf");
            GgufWriter.Write(m, outPath);
            // gguf-py and this writer lay out the same content identically (v3, alignment 32, tensors in order).
            Assert.That(File.ReadAllBytes(outPath).AsSpan().SequenceEqual(File.ReadAllBytes(path)), Is.True, "rewritten file differs");
        }
        finally { dir.Delete(true); }
    }
}
