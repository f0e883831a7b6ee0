// Tests: GGUF reading against shared files whose contents are documented independently (reference README,
// llama2.c tokenizer.bin as a second source for the Llama 2 vocabulary).
using Engine.Formats;
using Engine.Formats.Gguf;
using Engine.Formats.Llama2c;
using Engine.Tensors;

namespace Engine.Formats.Tests;

public class GgufReaderTests
{
    [Test]
    public void LlamaSpmVocab_MatchesLlama2cTokenizerBin()
    {
        using var gguf = GgufReader.Read(SharedData.Get("models/vocab/ggml-vocab-llama-spm.gguf"), out var layout);
        using var bin = Llama2cTokenizerReader.Read(SharedData.Get("models/llama2c/tokenizer.bin"));
        var tokens = gguf.GetArray<string>(TokenizerKeys.Tokens)!;
        Assert.Multiple(() =>
        {
            Assert.That(layout.Version, Is.EqualTo(3));
            Assert.That(gguf.Tensors, Is.Empty);
            Assert.That(gguf.Architecture, Is.EqualTo("llama"));
            Assert.That(gguf.GetString(TokenizerKeys.Model), Is.EqualTo("llama"));
            Assert.That(tokens, Has.Length.EqualTo(32000));
            Assert.That(tokens[0], Is.EqualTo("<unk>"));
            Assert.That(tokens[1], Is.EqualTo("<s>"));
            Assert.That(tokens[2], Is.EqualTo("</s>"));
            Assert.That(tokens[3 + 0x0A], Is.EqualTo("<0x0A>"));
            Assert.That(gguf.GetArray<int>(TokenizerKeys.TokenType)![3 + 0x0A], Is.EqualTo((int)TokenType.Byte));
            Assert.That(gguf.GetInteger(TokenizerKeys.BosId), Is.EqualTo(1));
            Assert.That(gguf.GetInteger("llama.vocab_size"), Is.EqualTo(32000));
            // Two independent exports of the same SentencePiece model agree token by token.
            Assert.That(tokens, Is.EqualTo(bin.GetArray<string>(TokenizerKeys.Tokens)));
            Assert.That(gguf.GetArray<float>(TokenizerKeys.Scores), Is.EqualTo(bin.GetArray<float>(TokenizerKeys.Scores)));
            Assert.That(gguf.GetArray<int>(TokenizerKeys.TokenType), Is.EqualTo(bin.GetArray<int>(TokenizerKeys.TokenType)));
        });
    }

    [Test]
    public void Stories260KGguf_TensorTable()
    {
        string path = SharedData.Get("reference/stories260K/stories260K.gguf");
        using var m = GgufReader.Read(path, out var layout);
        // Hyper-parameters from reference README section B: dim 64, hidden 172, 5 layers, 8 heads, 4 kv heads (kv dim 32).
        var expected = new List<(string, long[])> { ("token_embd.weight", [64, 512]) };
        for (int l = 0; l < 5; l++)
        {
            expected.Add(($"blk.{l}.attn_norm.weight", [64]));
            expected.Add(($"blk.{l}.attn_q.weight", [64, 64]));
            expected.Add(($"blk.{l}.attn_k.weight", [64, 32]));
            expected.Add(($"blk.{l}.attn_v.weight", [64, 32]));
            expected.Add(($"blk.{l}.attn_output.weight", [64, 64]));
            expected.Add(($"blk.{l}.ffn_norm.weight", [64]));
            expected.Add(($"blk.{l}.ffn_gate.weight", [64, 172]));
            expected.Add(($"blk.{l}.ffn_down.weight", [172, 64]));
            expected.Add(($"blk.{l}.ffn_up.weight", [64, 172]));
        }
        expected.Add(("output_norm.weight", [64]));
        Assert.That(m.Tensors.Select(t => t.Name), Is.EquivalentTo(expected.Select(e => e.Item1)));
        long fileLength = new FileInfo(path).Length;
        Assert.Multiple(() =>
        {
            foreach (var (name, shape) in expected)
            {
                var t = m.GetTensor(name);
                Assert.That(t.Type, Is.EqualTo(DType.F32), name);
                Assert.That(t.Shape, Is.EqualTo(shape), name);
                Assert.That(t.ByteLength, Is.EqualTo(shape.Aggregate(4L, (a, b) => a * b)), name);
            }
            Assert.That(m.TryGetTensor("output.weight", out _), Is.False, "tied embeddings: no output.weight");
            Assert.That(layout.Alignment, Is.EqualTo(32));
            Assert.That(layout.DataOffset % 32, Is.EqualTo(0));
            Assert.That(layout.TensorOffsets.All(o => o % 32 == 0));
            Assert.That(m.Tensors.Max(t => layout.DataOffset + layout.TensorOffsets[m.Tensors.ToList().IndexOf(t)] + t.ByteLength),
                Is.LessThanOrEqualTo(fileLength));
            Assert.That(m.GetInteger("llama.block_count"), Is.EqualTo(5));
            Assert.That(m.GetInteger("llama.rope.dimension_count"), Is.EqualTo(8));
            Assert.That(m.GetNumber("llama.rope.freq_base"), Is.EqualTo(10000));
        });
        // A view is zero-copy: its bytes equal the file bytes at data offset + tensor offset.
        var raw = File.ReadAllBytes(path);
        for (int i = 0; i < m.Tensors.Count; i++)
        {
            long start = layout.DataOffset + layout.TensorOffsets[i];
            Assert.That(m.Tensors[i].Bytes.SequenceEqual(raw.AsSpan((int)start, (int)m.Tensors[i].ByteLength)), m.Tensors[i].Name);
        }
    }

    [Test]
    public void Version1_IsRejectedClearly()
    {
        byte[] v1 = [(byte)'G', (byte)'G', (byte)'U', (byte)'F', 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        var e = Assert.Throws<ModelFormatException>(() => GgufReader.Read(v1));
        Assert.That(e!.Problem, Does.Contain("version 1"));
    }

    [Test]
    public void NotGguf_IsRejected()
    {
        var e = Assert.Throws<ModelFormatException>(() => GgufReader.Read("GGML0000000000000000000000"u8));
        Assert.That(e!.Offset, Is.EqualTo(0));
    }
}
