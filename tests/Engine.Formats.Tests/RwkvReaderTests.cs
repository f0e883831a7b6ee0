// Tests: rwkv.cpp files from shared/models load with the parameter counts, types and architecture an independent
// walk of the format (a separate Python script run while writing this test) found; every byte of the file is used.
using Engine.Formats.Rwkv;
using Engine.Tensors;

namespace Engine.Formats.Tests;

public unsafe class RwkvReaderTests
{
    [TestCase("tiny-rwkv-5v2-730K-FP32.bin", "rwkv5", 270, 64, DType.F32)]
    [TestCase("tiny-rwkv-6v0-3m-Q5_0.bin", "rwkv6", 342, 128, DType.Q5_0)]
    [TestCase("tiny-rwkv-6v0-3m-Q5_1.bin", "rwkv6", 342, 128, DType.Q5_1)]
    [TestCase("tiny-rwkv-7v0-834K-FP32.bin", "rwkv7", 339, 64, DType.F32)]
    public void SharedRwkvFiles_Load(string file, string arch, int tensors, int embed, DType keyType)
    {
        string path = SharedData.Get("models/rwkv/" + file);
        using var m = ModelFiles.Open(path);
        Assert.Multiple(() =>
        {
            Assert.That(m.Format, Is.EqualTo(ModelFileFormat.Rwkv));
            Assert.That(m.Architecture, Is.EqualTo(arch));
            Assert.That(m.Tensors, Has.Count.EqualTo(tensors));
            Assert.That(m.GetInteger($"{arch}.vocab_size"), Is.EqualTo(256));
            Assert.That(m.GetInteger($"{arch}.embedding_length"), Is.EqualTo(embed));
            Assert.That(m.GetInteger($"{arch}.block_count"), Is.EqualTo(12));
            Assert.That(m.GetTensor("emb.weight").Shape, Is.EqualTo(new long[] { embed, 256 }));
            Assert.That(m.GetTensor("blocks.0.att.key.weight").Type, Is.EqualTo(keyType));
            var last = m.Tensors[^1];
            var first = m.Tensors[0];
            Assert.That((long)last.Data + last.ByteLength - ((long)first.Data - 24 - 12 - 4 * first.Shape.Length - "emb.weight".Length),
                Is.EqualTo(new FileInfo(path).Length), "the last parameter ends at EOF");
        });
    }

    [Test]
    public void Version100Quantized_IsRejected()
    {
        var bytes = File.ReadAllBytes(SharedData.Get("models/rwkv/tiny-rwkv-6v0-3m-Q5_0.bin"));
        bytes[4] = 100;
        var e = Assert.Throws<ModelFormatException>(() =>
        {
            fixed (byte* p = bytes) ModelFiles.Parse("v100", p, bytes.Length).Dispose();
        });
        Assert.That(e!.Problem, Does.Contain("obsolete"));
    }
}
