// Owns: SentencePiece-path tests on llama2.c tokenizers: llama.cpp's tok512 ids (reference/vocab), the Llama 2
// tokenizer.bin against llama.cpp's llama-spm vectors (same vocabulary), and decode(encode(s)) == s.
using System.Text.Json;

namespace Engine.Tokenizers.Tests;

public class SpmTests
{
    internal static readonly string[] VariedTexts =
    [
        "", " ", "  ", "\n", "\t", " \n \n\n", "Once upon a time, there was a little girl named Lily.",
        "Hello world! 123 ☃ é", "   leading and trailing   ", "tabs\tand\r\nCRLF\r\n", "emoji 🚀😶‍🌫️✅ and 👍🏽 done",
        "中文字符和日本語のテキスト、한국어", "Ελληνικά и русский текст", "mixed😀中文 a  b   c    d",
        "<s> not special </s>", "zero\u200Bwidth", "a\u0301 combining", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math",
        "ñ€™", "\"quoted\" 'single' (parens) [brackets] {braces}", "1234567890 3.14159 1e-5",
    ];

    [TestCase("models/llama2c/tok512.bin")]
    [TestCase("reference/vocab/ggml-vocab-tok512.gguf")]
    public void Tok512MatchesLlamaCppIds(string path)
    {
        var tok = StreamingAndSpecialTests.Load(path);
        using var doc = JsonDocument.Parse(File.ReadAllBytes(SharedData.Get("reference/vocab/tok512_tokenize_cases.json")));
        int n = 0, pass = 0;
        Assert.Multiple(() =>
        {
            foreach (var c in doc.RootElement.EnumerateArray())
            {
                var text = c.GetProperty("text").GetString()!;
                var expected = c.GetProperty("ids_with_bos").EnumerateArray().Select(e => e.GetInt32()).ToArray();
                var got = tok.Encode(text, addSpecial: true);
                n++;
                if (got.SequenceEqual(expected)) pass++;
                Assert.That(got, Is.EqualTo(expected), VocabVectorTests.Escape(text));
            }
        });
        TestContext.Out.WriteLine($"{path}: {pass}/{n} tok512 cases pass");
        Assert.That(n, Is.EqualTo(13));
    }

    [Test]
    public void Tok512FileAndGgufAreTheSameVocabulary()
    {
        var a = StreamingAndSpecialTests.Load("models/llama2c/tok512.bin").Vocabulary;
        var b = Tokenizer.Load(SharedData.Get("reference/vocab/ggml-vocab-tok512.gguf")).Vocabulary;
        Assert.Multiple(() =>
        {
            Assert.That(a.Tokens, Is.EqualTo(b.Tokens));
            Assert.That(a.Scores, Is.EqualTo(b.Scores));
            Assert.That(a.Types, Is.EqualTo(b.Types));
            Assert.That((a.Bos, a.Eos, a.Unk, a.AddBos, a.AddEos), Is.EqualTo((b.Bos, b.Eos, b.Unk, b.AddBos, b.AddEos)));
        });
    }

    [Test]
    public void LlamaTokenizerBinMatchesLlamaSpmVectors()
    {
        // llama2.c's tokenizer.bin is Llama 2's SentencePiece vocabulary, the same one ggml-vocab-llama-spm holds.
        var tok = StreamingAndSpecialTests.Load("models/llama2c/tokenizer.bin");
        var cases = VocabTestVectors.Read(SharedData.Get("models/vocab/ggml-vocab-llama-spm.gguf.inp"), SharedData.Get("models/vocab/ggml-vocab-llama-spm.gguf.out"));
        int pass = cases.Count(c => tok.Encode(c.Text).SequenceEqual(c.Ids));
        TestContext.Out.WriteLine($"tokenizer.bin vs llama-spm vectors: {pass}/{cases.Count}");
        Assert.That(pass, Is.EqualTo(cases.Count));
    }

    [TestCase("models/llama2c/tok512.bin")]
    [TestCase("models/llama2c/tokenizer.bin")]
    public void DecodeInvertsEncode(string path)
    {
        var tok = StreamingAndSpecialTests.Load(path);
        Assert.Multiple(() =>
        {
            foreach (var s in VariedTexts)
            {
                Assert.That(tok.Decode(tok.Encode(s)), Is.EqualTo(s), VocabVectorTests.Escape(s));
                Assert.That(tok.Decode(tok.Encode(s, addSpecial: true)), Is.EqualTo(s), "with BOS: " + VocabVectorTests.Escape(s));
            }
        });
    }

    [Test]
    public void ByteFallbackUsesByteTokens()
    {
        // tok512 has no piece for '☃' (U+2603 = E2 98 83): it must come out as <0xE2><0x98><0x83> = ids 3 + byte.
        var tok = StreamingAndSpecialTests.Load("models/llama2c/tok512.bin");
        var ids = tok.Encode("☃");
        Assert.That(ids, Is.EqualTo(new[] { 410, 3 + 0xE2, 3 + 0x98, 3 + 0x83 }));
        Assert.That(tok.TokenText(3 + 0xE2), Is.EqualTo("<0xE2>"));
    }
}
