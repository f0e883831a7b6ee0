// Tests: llama2.c tokenizer and checkpoint readers against facts in reference README sections A and B and against
// the reference GGUF files produced from the same sources by llama.cpp's tools.
using Engine.Formats;
using Engine.Formats.Gguf;
using Engine.Formats.Llama2c;

namespace Engine.Formats.Tests;

public class Llama2cTests
{
    [Test]
    public void Tok512_FactsFromReadme()
    {
        using var m = Llama2cTokenizerReader.Read(SharedData.Get("models/llama2c/tok512.bin"));
        var tokens = m.GetArray<string>(TokenizerKeys.Tokens)!;
        var types = m.GetArray<int>(TokenizerKeys.TokenType)!;
        var scores = m.GetArray<float>(TokenizerKeys.Scores)!;
        Assert.Multiple(() =>
        {
            Assert.That(tokens, Has.Length.EqualTo(512));
            Assert.That(tokens[0], Is.EqualTo("<unk>"));
            Assert.That(types[0], Is.EqualTo((int)TokenType.Unknown));
            Assert.That(tokens[1], Is.EqualTo("<s>"));
            Assert.That(tokens[2], Is.EqualTo("</s>"));
            Assert.That(types[1], Is.EqualTo((int)TokenType.Control));
            Assert.That(types[2], Is.EqualTo((int)TokenType.Control));
            for (int b = 0; b < 256; b++)
            {
                Assert.That(tokens[3 + b], Is.EqualTo($"<0x{b:X2}>"));
                Assert.That(types[3 + b], Is.EqualTo((int)TokenType.Byte));
            }
            for (int i = 259; i < 512; i++) Assert.That(types[i], Is.EqualTo((int)TokenType.Normal), $"type of {i}");
            Assert.That(tokens[259], Is.EqualTo("\u2581t"));
            Assert.That(tokens[410], Is.EqualTo("\u2581"));
            Assert.That(tokens.Any(t => t.Contains(' ')), Is.False, "every ASCII space becomes U+2581");
            for (int i = 0; i < 259; i++) Assert.That(scores[i], Is.EqualTo(0f));
            for (int i = 259; i < 512; i++) Assert.That(scores[i], Is.EqualTo(-(float)(i - 259)));
            Assert.That(m.GetString(TokenizerKeys.Model), Is.EqualTo("llama"));
            Assert.That(m.Metadata[TokenizerKeys.BosId], Is.EqualTo(1u));
            Assert.That(m.Metadata[TokenizerKeys.EosId], Is.EqualTo(2u));
            Assert.That(m.Metadata[TokenizerKeys.UnkId], Is.EqualTo(0u));
            Assert.That(m.Metadata[TokenizerKeys.AddBos], Is.EqualTo(true));
            Assert.That(m.Metadata[TokenizerKeys.AddEos], Is.EqualTo(false));
            Assert.That(m.Metadata.ContainsKey(TokenizerKeys.Pre), Is.False);
        });
    }

    [Test]
    public void Tok512_EqualsReferenceVocabGguf()
    {
        using var bin = Llama2cTokenizerReader.Read(SharedData.Get("models/llama2c/tok512.bin"));
        using var gguf = GgufReader.Read(SharedData.Get("reference/vocab/ggml-vocab-tok512.gguf"));
        var diff = TestUtil.MetadataDifferences(gguf.Metadata, bin.Metadata, k => k.StartsWith("tokenizer."));
        Assert.That(diff, Is.Empty);
        Assert.That(bin.Metadata.Keys.Where(k => k.StartsWith("tokenizer.")),
            Is.EquivalentTo(gguf.Metadata.Keys.Where(k => k.StartsWith("tokenizer."))));
    }

    [Test]
    public void Stories260KBin_EqualsReferenceGguf_Bitwise()
    {
        using var bin = ModelFiles.Open(SharedData.Get("models/llama2c/stories260K.bin"));
        using var gguf = GgufReader.Read(SharedData.Get("reference/stories260K/stories260K.gguf"));
        Assert.That(bin.Format, Is.EqualTo(ModelFileFormat.Llama2c));
        Assert.That(bin.Tensors.Select(t => t.Name), Is.EqualTo(gguf.Tensors.Select(t => t.Name)), "same names, same order");
        foreach (var g in gguf.Tensors)
        {
            var b = bin.GetTensor(g.Name);
            Assert.That(b.Type, Is.EqualTo(g.Type), g.Name);
            Assert.That(b.Shape, Is.EqualTo(g.Shape), g.Name);
            Assert.That(b.Bytes.SequenceEqual(g.Bytes), Is.True, $"{g.Name} bytes");
        }
        // Tokenizer metadata was picked up from tok512.bin beside the checkpoint.
        var diff = TestUtil.MetadataDifferences(gguf.Metadata, bin.Metadata, k => k != "general.name");
        Assert.That(diff, Is.Empty);
    }

    [Test]
    public void Checkpoint_TruncatedOrInconsistent_Throws()
    {
        var bytes = File.ReadAllBytes(SharedData.Get("models/llama2c/stories260K.bin"));
        var dir = Directory.CreateTempSubdirectory("engine-l2c-");
        try
        {
            var p = Path.Combine(dir.FullName, "cut.bin");
            File.WriteAllBytes(p, bytes.AsSpan(0, bytes.Length - 4).ToArray());
            Assert.Throws<ModelFormatException>(() => Llama2cCheckpoint.Read(p));
            var bad = (byte[])bytes.Clone();
            bad[12] = 7; // n_heads 7: dim 64 not a multiple
            File.WriteAllBytes(p, bad);
            Assert.Throws<ModelFormatException>(() => Llama2cCheckpoint.Read(p));
        }
        finally { dir.Delete(true); }
    }
}

public class Llama2cTokenizerFormsTests
{
    private static byte[] Tokenizer(IEnumerable<(float Score, byte[] Bytes)> tokens)
    {
        var ms = new MemoryStream();
        var w = new BinaryWriter(ms);
        var list = tokens.ToList();
        w.Write(list.Max(t => t.Bytes.Length));
        foreach (var (score, bytes) in list) { w.Write(score); w.Write(bytes.Length); w.Write(bytes); }
        return ms.ToArray();
    }

    [Test]
    public void RawByteTokens_BecomeHexByteTokens()
    {
        var tokens = new List<(float, byte[])> { (0, "<unk>"u8.ToArray()), (0, "\n<s>\n"u8.ToArray()), (0, "\n</s>\n"u8.ToArray()) };
        for (int b = 0; b < 256; b++) tokens.Add((0, [(byte)b]));
        tokens.Add((-1, " the"u8.ToArray()));
        using var m = Llama2cTokenizerReader.Read(Tokenizer(tokens));
        var t = m.GetArray<string>(TokenizerKeys.Tokens)!;
        var types = m.GetArray<int>(TokenizerKeys.TokenType)!;
        Assert.Multiple(() =>
        {
            Assert.That(t[3], Is.EqualTo("<0x00>"));
            Assert.That(t[3 + 0x41], Is.EqualTo("<0x41>"));
            Assert.That(t[3 + 0xE2], Is.EqualTo("<0xE2>"));
            Assert.That(types[3 + 0x20], Is.EqualTo((int)TokenType.Byte));
            Assert.That(t[259], Is.EqualTo("\u2581the"));
            Assert.That(types[259], Is.EqualTo((int)TokenType.Normal));
        });
    }

    [TestCase(new byte[] { 7, 0, 0, 0 })]                                      // no tokens
    [TestCase(new byte[] { 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 65 })]          // max_token_length 0
    [TestCase(new byte[] { 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 65, 66 })]      // token longer than max_token_length
    [TestCase(new byte[] { 4, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 65 })]          // length past the end
    public void Malformed_Throws(byte[] bytes) =>
        Assert.Throws<ModelFormatException>(() => Llama2cTokenizerReader.Read(bytes));
}
