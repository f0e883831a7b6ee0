// Owns: the tokenizer files that are not GGUF/tokenizer.json — OpenAI GPT-2 encoder.json + vocab.bpe, SentencePiece
// tokenizer.model (protobuf) and rwkv.cpp models (byte vocabulary). Expected values come from other files of the same
// tokenizer (ggml-vocab-gpt-2.gguf, llama2.c's tokenizer.bin, ggml-vocab-llama-spm.gguf, converted by llama.cpp /
// llama2.c) and from UTF-8 itself; the test-vector checks are in VocabVectorTests. The mutation test checks that a
// damaged tokenizer.model loads or fails with ModelFormatException, never another exception.
using System.Text;
using Engine.Formats;

namespace Engine.Tokenizers.Tests;

public class TokenizerFileTests
{
    private static Tokenizer Load(string relative) => StreamingAndSpecialTests.Load(relative);

    [TestCase("models/tokenizers/gpt2/encoder.json")]
    [TestCase("models/tokenizers/gpt2/vocab.bpe")]
    public void Gpt2EncoderMatchesTheGgufConversion(string relative)
    {
        var ours = Load(relative).Vocabulary;
        var gguf = Load("models/vocab/ggml-vocab-gpt-2.gguf");
        Assert.Multiple(() =>
        {
            Assert.That(ours.Model, Is.EqualTo(TokenizerModel.ByteLevelBpe));
            Assert.That(ours.Tokens, Is.EqualTo(gguf.Vocabulary.Tokens), "tokens by id");
            Assert.That(ours.Merges, Is.EqualTo(gguf.Vocabulary.Merges), "merges in rank order");
            Assert.That(Load(relative).Types, Is.EqualTo(gguf.Types), "token types");
            Assert.That(ours.Bos, Is.EqualTo(50256));
            Assert.That(ours.Eos, Is.EqualTo(50256));
            Assert.That(Load(relative).EogIds, Is.EqualTo(new[] { 50256 }));
            Assert.That(ours.PreTokenizer, Is.EqualTo("gpt-2"));
            Assert.That(ours.AddBos, Is.EqualTo(gguf.AddBos));
        });
    }

    [Test]
    public void SentencePieceModelMatchesTokenizerBin()
    {
        var model = Load("models/llama2c/tokenizer.model");
        var bin = Load("models/llama2c/tokenizer.bin");
        var gguf = Load("models/vocab/ggml-vocab-llama-spm.gguf");
        Assert.Multiple(() =>
        {
            Assert.That(model.Model, Is.EqualTo(TokenizerModel.SentencePiece));
            Assert.That(model.VocabSize, Is.EqualTo(32000));
            Assert.That(model.Vocabulary.Tokens, Is.EqualTo(bin.Vocabulary.Tokens), "pieces equal llama2.c's tokenizer.bin");
            Assert.That(model.Vocabulary.Scores, Is.EqualTo(bin.Vocabulary.Scores), "scores equal llama2.c's tokenizer.bin");
            Assert.That(model.Types, Is.EqualTo(gguf.Types), "types equal llama.cpp's conversion");
            Assert.That((model.Bos, model.Eos, model.Vocabulary.Unk), Is.EqualTo((1, 2, 0)));
            Assert.That(model.AddBos, Is.True);
            Assert.That(model.Encode("Hello world ☃", addSpecial: true), Is.EqualTo(bin.Encode("Hello world ☃", addSpecial: true)));
        });
    }

    /// <summary>A hand-built ModelProto: pieces "a", "b", "c" (ids 0..2 cover the default unk/bos/eos ids) and a
    /// TrainerSpec with the given model_type.</summary>
    private static byte[] TinyModelProto(byte modelType)
    {
        static byte[] Piece(char c) => [0x0A, 10, 0x0A, 0x01, (byte)c, 0x15, 0, 0, 0x80, 0x3F, 0x18, 0x01]; // piece, score 1f, NORMAL
        byte[] trainer = [0x18, modelType];                                                                 // model_type
        return [.. Piece('a'), .. Piece('b'), .. Piece('c'), 0x12, (byte)trainer.Length, .. trainer];
    }

    [Test]
    public void UnigramModelIsRejectedClearly()
    {
        var e = Assert.Throws<ModelFormatException>(() => SentencePieceModelVocabulary.Parse("unigram.model", TinyModelProto(1)));
        Assert.That(e!.Message, Does.Contain("Unigram SentencePiece models are not supported"));
        var v = SentencePieceModelVocabulary.Parse("bpe.model", TinyModelProto(2));
        Assert.That(v.Tokens, Is.EqualTo(new[] { "a", "b", "c" }));
        Assert.That(v.Scores, Is.EqualTo(new[] { 1f, 1f, 1f }));
        Assert.Throws<ModelFormatException>(() => SentencePieceModelVocabulary.Parse("bpe.model", TinyModelProto(2).AsSpan(0, 5)));
    }

    [Test]
    public void DamagedSentencePieceModelLoadsOrFailsCleanly()
    {
        var original = File.ReadAllBytes(SharedData.Get("models/llama2c/tokenizer.model"));
        var rng = new Random(1234);
        int loaded = 0, rejected = 0;
        void Try(byte[] data, string what)
        {
            try
            {
                var tok = Tokenizer.FromVocabulary(SentencePieceModelVocabulary.Parse("mutated.model", data));
                tok.Decode(tok.Encode("Hello world ☃ 123", addSpecial: true));
                loaded++;
            }
            catch (ModelFormatException) { rejected++; }
            catch (ArgumentException) { rejected++; } // the Tokenizer's own vocabulary checks (Tokenizer.Load wraps these)
            catch (Exception e) { Assert.Fail($"{what}: {e.GetType().Name}: {e.Message}"); }
        }
        for (int i = 0; i < 60; i++)
        {
            int length = i < 20 ? i : rng.Next(original.Length);
            Try(original.AsSpan(0, length).ToArray(), $"truncated to {length} bytes");
        }
        for (int i = 0; i < 120; i++)
        {
            var data = (byte[])original.Clone();
            int flips = 1 + rng.Next(8);
            for (int k = 0; k < flips; k++) data[rng.Next(data.Length)] = (byte)rng.Next(256);
            Try(data, $"mutation {i}");
        }
        TestContext.Out.WriteLine($"{loaded} loaded, {rejected} rejected");
        Assert.That(rejected, Is.GreaterThan(0), "truncations must be rejected");
    }

    [Test]
    public void SentencePieceModelThroughTokenizerLoadWrapsEveryError()
    {
        var original = File.ReadAllBytes(SharedData.Get("models/llama2c/tokenizer.model"));
        string path = Path.Combine(Path.GetTempPath(), $"tok-{Guid.NewGuid():N}.model");
        try
        {
            File.WriteAllBytes(path, original.AsSpan(0, original.Length / 2).ToArray());
            var e = Assert.Throws<ModelFormatException>(() => Tokenizer.Load(path));
            Assert.That(e!.Message, Does.Contain("SentencePiece"));
        }
        finally { File.Delete(path); }
    }

    [TestCase("models/rwkv/tiny-rwkv-5v2-730K-FP32.bin")]
    [TestCase("models/rwkv/tiny-rwkv-6v0-3m-Q5_0.bin")]
    [TestCase("models/rwkv/tiny-rwkv-7v0-834K-FP32.bin")]
    public void RwkvModelsGetTheByteTokenizer(string relative)
    {
        var tok = Tokenizer.Load(SharedData.Get(relative));
        const string text = "Hello world ☃\n";
        var expected = Encoding.UTF8.GetBytes(text).Select(b => (int)b).ToArray();
        Assert.Multiple(() =>
        {
            Assert.That(tok, Is.InstanceOf<ByteTokenizer>());
            Assert.That(tok.VocabSize, Is.EqualTo(256));
            Assert.That(tok.Encode(text, addSpecial: true), Is.EqualTo(expected), "id = UTF-8 byte, nothing added");
            Assert.That(tok.Decode(expected), Is.EqualTo(text));
            Assert.That(tok.Bos, Is.Null);
            Assert.That(tok.EogIds, Is.Empty);
        });
    }

    [Test]
    public void BytePiecesArePrintableAsciiOrHex()
    {
        var tok = new ByteTokenizer();
        Assert.Multiple(() =>
        {
            Assert.That(tok.TokenText('A'), Is.EqualTo("A"));
            Assert.That(tok.TokenText(' '), Is.EqualTo(" "));
            Assert.That(tok.TokenText('\n'), Is.EqualTo("<0x0A>"));
            Assert.That(tok.TokenText(0xE2), Is.EqualTo("<0xE2>"));
            Assert.That(tok.TokenPiece(0xE2), Is.EqualTo("<0xE2>"), "a lone non-ASCII byte is shown as hex");
            Assert.That(tok.Encode("<0x0A>"), Is.EqualTo(Encoding.UTF8.GetBytes("<0x0A>").Select(b => (int)b)), "hex text is not a special token");
            Assert.That(tok.Decode([0xE2, 0x98]), Is.EqualTo("\uFFFD"), "an incomplete sequence decodes to U+FFFD");
            Assert.Throws<ArgumentOutOfRangeException>(() => tok.TokenText(256));
        });
    }
}
