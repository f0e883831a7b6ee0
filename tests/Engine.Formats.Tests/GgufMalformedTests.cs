// Tests: hand-built malformed GGUF files (encoded here byte by byte, independently of GgufWriter) are rejected with
// ModelFormatException naming the problem: data past EOF, dimension product overflow, n_dims > 4, unknown type ids,
// misaligned offsets, string/array lengths past the end, duplicate names, bad bools, deep nesting, bad alignment.
using System.Text;
using Engine.Formats.Gguf;

namespace Engine.Formats.Tests;

public class GgufMalformedTests
{
    /// <summary>Minimal GGUF encoder for tests: raw fields, no validation.</summary>
    private sealed class Raw
    {
        private readonly MemoryStream _ms = new();
        private readonly BinaryWriter _w;
        public Raw(ulong tensors, ulong kvs, uint version = 3)
        {
            _w = new BinaryWriter(_ms);
            _w.Write("GGUF"u8); _w.Write(version); _w.Write(tensors); _w.Write(kvs);
        }
        public Raw Str(string s) { var b = Encoding.UTF8.GetBytes(s); _w.Write((ulong)b.Length); _w.Write(b); return this; }
        public Raw U32(uint v) { _w.Write(v); return this; }
        public Raw U64(ulong v) { _w.Write(v); return this; }
        public Raw U8(byte v) { _w.Write(v); return this; }
        public Raw KvU32(string key, uint v) => Str(key).U32(4).U32(v);
        public Raw Tensor(string name, ulong[] dims, uint type, ulong offset)
        {
            Str(name).U32((uint)dims.Length);
            foreach (var d in dims) U64(d);
            return U32(type).U64(offset);
        }
        public Raw PadTo(int alignment) { while (_ms.Length % alignment != 0) _w.Write((byte)0); return this; }
        public Raw Zeros(int n) { _w.Write(new byte[n]); return this; }
        public byte[] Bytes() { _w.Flush(); return _ms.ToArray(); }
    }

    private static string Reject(byte[] bytes)
    {
        var e = Assert.Throws<ModelFormatException>(() => GgufReader.Read(bytes, "crafted"));
        return e!.Problem;
    }

    [Test]
    public void WellFormedBaseline_Loads()
    {
        var ok = new Raw(1, 1).KvU32("a", 1).Tensor("t", [4, 2], 0, 0).PadTo(32).Zeros(32).Bytes();
        using var m = GgufReader.Read(ok);
        Assert.That(m.GetTensor("t").ByteLength, Is.EqualTo(32));
    }

    [Test]
    public void TensorDataPastEndOfFile() =>
        Assert.That(Reject(new Raw(1, 0).Tensor("t", [4, 2], 0, 0).PadTo(32).Zeros(31).Bytes()), Does.Contain("past the end"));

    [Test]
    public void DimensionProductOverflow() =>
        Assert.That(Reject(new Raw(1, 0).Tensor("t", [1UL << 32, 1UL << 32, 4], 0, 0).PadTo(32).Bytes()), Does.Contain("overflow"));

    [Test]
    public void ByteSizeOverflow() =>
        Assert.That(Reject(new Raw(1, 0).Tensor("t", [1UL << 31, 1UL << 31], 0, 0).PadTo(32).Bytes()), Does.Contain("overflow"));

    [Test]
    public void TooManyDimensions() =>
        Assert.That(Reject(new Raw(1, 0).Tensor("t", [1, 1, 1, 1, 1], 0, 0).PadTo(32).Zeros(32).Bytes()), Does.Contain("dimensions"));

    [TestCase(4u)]
    [TestCase(5u)]
    [TestCase(31u)]
    [TestCase(0xFFFFFFFFu)]
    public void UnknownTensorType(uint type) =>
        Assert.That(Reject(new Raw(1, 0).Tensor("t", [32], type, 0).PadTo(32).Zeros(256).Bytes()), Does.Contain("unknown type"));

    [Test]
    public void RowNotMultipleOfBlock() =>
        Assert.That(Reject(new Raw(1, 0).Tensor("t", [16], 2, 0).PadTo(32).Zeros(64).Bytes()), Does.Contain("block size"));

    [Test]
    public void MisalignedOffset() =>
        Assert.That(Reject(new Raw(1, 0).Tensor("t", [1], 0, 4).PadTo(32).Zeros(64).Bytes()), Does.Contain("alignment"));

    [Test]
    public void OverlappingTensors() =>
        Assert.That(Reject(new Raw(2, 0).Tensor("a", [16], 0, 0).Tensor("b", [16], 0, 32).PadTo(32).Zeros(128).Bytes()), Does.Contain("overlaps"));

    [Test]
    public void DuplicateTensorName() =>
        Assert.That(Reject(new Raw(2, 0).Tensor("t", [1], 0, 0).Tensor("t", [1], 0, 32).PadTo(32).Zeros(64).Bytes()), Does.Contain("duplicate"));

    [Test]
    public void DuplicateKey() =>
        Assert.That(Reject(new Raw(0, 2).KvU32("k", 1).KvU32("k", 2).Bytes()), Does.Contain("duplicate"));

    [Test]
    public void StringLengthPastEnd() =>
        Assert.That(Reject(new Raw(0, 1).U64(1000).Zeros(16).Bytes()), Does.Contain("exceeds"));

    [Test]
    public void HugeStringLength_NoAllocation() =>
        Assert.That(Reject(new Raw(0, 1).U64(ulong.MaxValue - 3).Zeros(16).Bytes()), Does.Contain("exceeds"));

    [Test]
    public void ArrayLengthPastEnd() =>
        Assert.That(Reject(new Raw(0, 1).Str("a").U32(9).U32(8).U64(1UL << 60).Bytes()), Does.Contain("claims"));

    [Test]
    public void ArrayOfStrings_ElementPastEnd() =>
        Assert.That(Reject(new Raw(0, 1).Str("a").U32(9).U32(8).U64(2).Str("x").U64(50).Bytes()), Does.Contain("exceeds"));

    [Test]
    public void UnknownValueType() =>
        Assert.That(Reject(new Raw(0, 1).Str("a").U32(13).U32(0).Bytes()), Does.Contain("unknown value type"));

    [Test]
    public void BadBool() =>
        Assert.That(Reject(new Raw(0, 1).Str("a").U32(7).U8(2).Bytes()), Does.Contain("bool"));

    [Test]
    public void DeeplyNestedArrays()
    {
        var r = new Raw(0, 1).Str("a").U32(9);
        for (int i = 0; i < 20; i++) r.U32(9).U64(1);
        Assert.That(Reject(r.U32(4).U64(0).Bytes()), Does.Contain("deeper"));
    }

    [TestCase(0u)]
    [TestCase(48u)]
    public void BadAlignment(uint alignment) =>
        Assert.That(Reject(new Raw(0, 1).KvU32("general.alignment", alignment).Bytes()), Does.Contain("power of two"));

    [Test]
    public void AlignmentOfWrongType() =>
        Assert.That(Reject(new Raw(0, 1).Str("general.alignment").U32(10).U64(32).Bytes()), Does.Contain("expected uint32"));

    [Test]
    public void CountsBeyondFile()
    {
        Assert.That(Reject(new Raw(1UL << 40, 0).Bytes()), Does.Contain("tensor count"));
        Assert.That(Reject(new Raw(0, 1UL << 40).Bytes()), Does.Contain("metadata count"));
    }

    [TestCase(0u)]
    [TestCase(1u)]
    [TestCase(4u)]
    public void BadVersion(uint version) =>
        Assert.That(Reject(new Raw(0, 0, version).Bytes()), Does.Contain("version"));

    [Test]
    public void NestedArrays_ReadAsObjectArrays()
    {
        // [[1, 2], []] of uint32: outer element type 9 (array), each element (type, count, values) with no tag.
        var bytes = new Raw(0, 1).Str("n").U32(9).U32(9).U64(2).U32(4).U64(2).U32(1).U32(2).U32(4).U64(0).Bytes();
        using var m = GgufReader.Read(bytes);
        var outer = (object[])m.Metadata["n"];
        Assert.That(outer[0], Is.EqualTo(new uint[] { 1, 2 }));
        Assert.That(outer[1], Is.EqualTo(Array.Empty<uint>()));
    }
}
