// Property test: for 300 seeded random models (random keys, every value type, arrays incl. strings and nested arrays,
// random tensors of every known type with random shapes, random alignment), GgufReader(GgufWriter(x)) == x.
using Engine.Formats.Gguf;
using Engine.Tensors;

namespace Engine.Formats.Tests;

public class GgufRoundTripPropertyTests
{
    private static object RandomScalar(Random r, GgufValueType t) => t switch
    {
        GgufValueType.UInt8 => (byte)r.Next(256),
        GgufValueType.Int8 => (sbyte)r.Next(-128, 128),
        GgufValueType.UInt16 => (ushort)r.Next(65536),
        GgufValueType.Int16 => (short)r.Next(-32768, 32768),
        GgufValueType.UInt32 => (uint)r.NextInt64(0, 1L << 32),
        GgufValueType.Int32 => r.Next(int.MinValue, int.MaxValue),
        GgufValueType.Float32 => BitConverter.Int32BitsToSingle(r.Next(int.MinValue, int.MaxValue)),
        GgufValueType.Bool => r.Next(2) == 1,
        GgufValueType.String => RandomString(r),
        GgufValueType.UInt64 => (ulong)r.NextInt64() * 2 + (ulong)r.Next(2),
        GgufValueType.Int64 => r.NextInt64(long.MinValue, long.MaxValue),
        GgufValueType.Float64 => BitConverter.Int64BitsToDouble(r.NextInt64(long.MinValue, long.MaxValue)),
        _ => throw new ArgumentException(t.ToString()),
    };

    private static string RandomString(Random r)
    {
        const string alphabet = "abcXYZ019 _.▁☃é\n\t<>\u4e2d";
        return new string(Enumerable.Range(0, r.Next(12)).Select(_ => alphabet[r.Next(alphabet.Length)]).ToArray());
    }

    private static Array RandomArray(Random r, int depth)
    {
        var et = (GgufValueType)r.Next(depth < 3 ? 13 : 12);
        if (et == GgufValueType.Array && depth >= 3) et = GgufValueType.String;
        int n = r.Next(6);
        if (et == GgufValueType.Array)
            return Enumerable.Range(0, n).Select(_ => (object)RandomArray(r, depth + 1)).ToArray();
        var sample = RandomScalar(r, et);
        var a = Array.CreateInstance(sample.GetType(), n);
        for (int i = 0; i < n; i++) a.SetValue(RandomScalar(r, et), i);
        return a;
    }

    private static readonly DType[] Types = Enum.GetValues<DType>();

    [Test]
    public void RandomModels_300_RoundTrip()
    {
        for (int seed = 0; seed < 300; seed++)
        {
            var r = new Random(seed);
            uint alignment = new uint[] { 1, 8, 32, 64, 4096 }[r.Next(5)];
            var w = new GgufWriter(alignment, (uint)(2 + r.Next(2)));
            var md = new Dictionary<string, object>();
            for (int k = r.Next(12); k > 0; k--)
            {
                var t = (GgufValueType)r.Next(13);
                md[$"k{md.Count}.{RandomString(r)}"] = t == GgufValueType.Array ? RandomArray(r, 0) : RandomScalar(r, t);
            }
            w.AddMetadata(md);
            var tensors = new List<(string, DType, long[], byte[])>();
            for (int i = r.Next(5); i > 0; i--)
            {
                var type = Types[r.Next(Types.Length)];
                var shape = Enumerable.Range(0, 1 + r.Next(4)).Select(d => (long)(d == 0 ? type.BlockSize() * (1 + r.Next(3)) : 1 + r.Next(3))).ToArray();
                var bytes = new byte[type.ByteCount(shape.Aggregate(1L, (a, b) => a * b))];
                r.NextBytes(bytes);
                string name = $"t{tensors.Count}.{RandomString(r)}";
                tensors.Add((name, type, shape, bytes));
                w.AddTensor(name, type, shape, bytes);
            }
            using var m = GgufReader.Read(w.ToArray(), $"seed {seed}", out var layout);
            Assert.That(TestUtil.MetadataDifferences(md, m.Metadata), Is.Empty, $"seed {seed}");
            Assert.That(m.Metadata.Count, Is.EqualTo(md.Count + (alignment != 32 ? 1 : 0)), $"seed {seed}");
            Assert.That(m.Tensors.Count, Is.EqualTo(tensors.Count), $"seed {seed}");
            foreach (var (name, type, shape, bytes) in tensors)
            {
                var t = m.GetTensor(name);
                Assert.That(t.Type, Is.EqualTo(type), $"seed {seed} {name}");
                Assert.That(t.Shape, Is.EqualTo(shape), $"seed {seed} {name}");
                Assert.That(t.Bytes.SequenceEqual(bytes), Is.True, $"seed {seed} {name}");
                Assert.That(((long)t.Data - (long)m.Tensors[0].Data) % alignment, Is.EqualTo(0), $"seed {seed} {name} aligned");
            }
            Assert.That(layout.DataOffset % alignment, Is.EqualTo(0));
        }
    }
}
