// Tests: the rwkv.cpp reader on the shared tiny models (header, architecture detection, head size, tensor types and
// byte accounting) and its typed errors on truncated / unknown-version / unknown-type files.
using System.Buffers.Binary;
using Engine.Formats;
using Engine.Formats.Rwkv;
using Engine.Tensors;

namespace Engine.Formats.Tests;

public class RwkvReaderTests
{
    [TestCase("tiny-rwkv-5v2-730K-FP32.bin", "rwkv5", DType.F32)]
    [TestCase("tiny-rwkv-6v0-3m-Q5_0.bin", "rwkv6", DType.Q5_0)]
    [TestCase("tiny-rwkv-6v0-3m-Q5_1.bin", "rwkv6", DType.Q5_1)]
    [TestCase("tiny-rwkv-7v0-834K-FP32.bin", "rwkv7", DType.F32)]
    public void Open_SharedModel_ArchitectureShapesAndBytesAddUp(string file, string arch, DType mainType)
    {
        string path = SharedData.Get("models/rwkv/" + file);
        using var m = ModelFiles.Open(path);
        long n = m.GetInteger($"{arch}.embedding_length")!.Value;
        Assert.Multiple(() =>
        {
            Assert.That(m.Format, Is.EqualTo(ModelFileFormat.Rwkv));
            Assert.That(m.Architecture, Is.EqualTo(arch));
            Assert.That(m.GetInteger($"{arch}.vocab_size"), Is.EqualTo(256));
            Assert.That(m.GetInteger($"{arch}.wkv.head_size")! * m.GetInteger($"{arch}.attention.head_count")!, Is.EqualTo(n));
            var emb = m.GetTensor("token_embd.weight");
            Assert.That(emb.Shape, Is.EqualTo(new long[] { n, 256 }));
            Assert.That(m.GetTensor("output.weight").Shape, Is.EqualTo(new long[] { n, 256 }));
            Assert.That(m.TryGetTensor("token_embd_norm.weight", out _), Is.True);
            Assert.That(m.GetTensor("blk.0.time_mix_key.weight").Type, Is.EqualTo(mainType));
            // Header + per-tensor records + data must add up to the file length exactly (no padding in this format).
            long total = RwkvReader.HeaderBytes;
            foreach (var t in m.Tensors)
            {
                string raw = RawNameLength(t.Name, m);
                total += 12 + 4 * t.Shape.Length + raw.Length + t.ByteLength;
            }
            Assert.That(total, Is.EqualTo(new FileInfo(path).Length));
        });
    }

    // The rwkv.cpp key of a mapped name is not stored; recover its length by reversing the mapping rule.
    private static string RawNameLength(string name, ModelFile m) => name switch
    {
        "token_embd.weight" => "emb.weight",
        "output.weight" => "head.weight",
        "output_norm.weight" => "ln_out.weight",
        "output_norm.bias" => "ln_out.bias",
        "token_embd_norm.weight" => "blocks.0.ln0.weight",
        "token_embd_norm.bias" => "blocks.0.ln0.bias",
        _ => "blocks." + name[4..].Replace(".attn_norm_2.", ".ln2.").Replace(".attn_norm.", ".ln1.")
            .Replace(".time_mix_", ".att.").Replace(".channel_mix_", ".ffn."),
    };

    [Test]
    public void MapName_FollowsTheDocumentedRule()
    {
        Assert.Multiple(() =>
        {
            Assert.That(RwkvReader.MapName("emb.weight"), Is.EqualTo("token_embd.weight"));
            Assert.That(RwkvReader.MapName("blocks.12.att.key.weight"), Is.EqualTo("blk.12.time_mix_key.weight"));
            Assert.That(RwkvReader.MapName("blocks.0.ffn.x_k"), Is.EqualTo("blk.0.channel_mix_x_k"));
            Assert.That(RwkvReader.MapName("blocks.1.ln2.bias"), Is.EqualTo("blk.1.attn_norm_2.bias"));
        });
    }

    private static byte[] Bytes() => File.ReadAllBytes(SharedData.Get("models/rwkv/tiny-rwkv-5v2-730K-FP32.bin"));

    [Test]
    public void Truncated_ThrowsModelFormatException()
    {
        var b = Bytes();
        foreach (int len in new[] { 0, 3, 10, 23, 24 + 5, b.Length / 2, b.Length - 1 })
        {
            var e = Assert.Throws<ModelFormatException>(() => Parse(b.AsSpan(0, len).ToArray()), $"length {len}");
            if (len >= 4) Assert.That(e!.Message, Does.Contain("bytes").Or.Contain("magic").Or.Contain("header"));
        }
    }

    [Test]
    public void UnknownVersion_ThrowsModelFormatException()
    {
        var b = Bytes();
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(4), 102);
        var e = Assert.Throws<ModelFormatException>(() => Parse(b));
        Assert.That(e!.Problem, Does.Contain("version 102"));
        Assert.That(e.Offset, Is.EqualTo(4));
    }

    [Test]
    public void UnknownTensorType_ThrowsModelFormatException()
    {
        var b = Bytes();
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(24 + 8), 5); // first parameter's data_type: unused Q4_2
        var e = Assert.Throws<ModelFormatException>(() => Parse(b));
        Assert.That(e!.Problem, Does.Contain("data type 5"));
        Assert.That(e.Offset, Is.EqualTo(32));
    }

    [Test]
    public void Version100_QuantizedTensor_IsRejected_FloatAccepted()
    {
        var fp = Bytes();
        BinaryPrimitives.WriteInt32LittleEndian(fp.AsSpan(4), 100);
        using (var m = RwkvReader.Read(fp, "v100.bin")) Assert.That(m.Tensors, Is.Not.Empty);
        var q = File.ReadAllBytes(SharedData.Get("models/rwkv/tiny-rwkv-6v0-3m-Q5_0.bin"));
        BinaryPrimitives.WriteInt32LittleEndian(q.AsSpan(4), 100);
        var e = Assert.Throws<ModelFormatException>(() => RwkvReader.Read(q, "v100q.bin"));
        Assert.That(e!.Problem, Does.Contain("version 100"));
    }

    [Test]
    public void HugeDimension_ThrowsWithoutAllocating()
    {
        var b = Bytes();
        int dims = BinaryPrimitives.ReadInt32LittleEndian(b.AsSpan(24));
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(24 + 12 + 4 * (dims - 1)), 1 << 24);
        Assert.Throws<ModelFormatException>(() => Parse(b));
    }

    [Test]
    public void RandomHeaderAndRecordMutations_GiveModelFormatExceptionOrAValidFile()
    {
        var original = Bytes();
        var rnd = new Random(6);
        for (int iter = 0; iter < 300; iter++)
        {
            var b = (byte[])original.Clone();
            int at = rnd.Next(0, 24 + 200);           // header and the first parameter records
            b[at] = (byte)rnd.Next(256);
            try { Parse(b); }
            catch (ModelFormatException) { }
            catch (Exception e) { Assert.Fail($"mutation of byte {at} threw {e.GetType().Name}: {e.Message}"); }
        }
    }

    private static void Parse(byte[] bytes)
    {
        using var m = RwkvReader.Read(bytes, "mem.bin");
    }
}
