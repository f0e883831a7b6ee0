// Owns: pre-tokenizer family splits. Expected word lists are worked out by hand from each family's published
// regex (leftmost alternative wins, matched on code points); they are not produced by the code under test.
// Also: a byte-level vocabulary described only by GGUF-style metadata (pre name, no tokenizer.json patterns)
// reproduces llama.cpp's vectors.
using Engine.Formats;

namespace Engine.Tokenizers.Tests;

public class PreTokenizerTests
{
    private static string[] Split(string family, string text)
    {
        var words = new List<(int Start, int Length)>();
        PreTokenizer.ForName(family).Split(text, words);
        return words.Select(w => text.Substring(w.Start, w.Length)).ToArray();
    }

    [TestCase("gpt-2", "Hello world", new[] { "Hello", " world" })]
    [TestCase("gpt-2", "DON'T stop", new[] { "DON", "'", "T", " stop" })]
    [TestCase("gpt-2", "don't", new[] { "don", "'t" })]
    [TestCase("gpt-2", "a   b", new[] { "a", "  ", " b" })]
    [TestCase("gpt-2", " 12345", new[] { " 12345" })]
    [TestCase("llama-bpe", "DON'T stop", new[] { "DON", "'T", " stop" })]
    [TestCase("llama-bpe", "12345", new[] { "123", "45" })]
    [TestCase("llama-bpe", "hi!!\n\nyo", new[] { "hi", "!!\n\n", "yo" })]
    [TestCase("llama-bpe", "\U0001F600abc", new[] { "\U0001F600abc" })]   // [^\r\n\p{L}\p{N}]?\p{L}+ takes the emoji
    [TestCase("llama-bpe", " \U0001F600\U0001F600 x", new[] { " \U0001F600\U0001F600", " x" })]
    [TestCase("qwen2", "12345", new[] { "1", "2", "3", "4", "5" })]
    [TestCase("qwen2", "x\U0001D518y", new[] { "x\U0001D518y" })]          // 𝔘 is a letter (astral)
    [TestCase("starcoder", "abc123", new[] { "abc", "1", "2", "3" })]
    [TestCase("refact", "x=42", new[] { "x", "=", "4", "2" })]
    [TestCase("mpt", "x=42", new[] { "x", "=", "42" })]
    [TestCase("falcon", "a+b=1234", new[] { "a", "+", "b", "=", "123", "4" })]
    [TestCase("default", "12345", new[] { "123", "45" })]
    [TestCase("deepseek-coder", "Hi, 42\nyo", new[] { "Hi", ",", " ", "4", "2", "\n", "yo" })]
    [TestCase("deepseek-llm", "Hi, 中文42  ", new[] { "Hi", ",", " ", "中文", "42", "  " })]
    [TestCase("tekken", "HelloWorld ABC", new[] { "Hello", "World", " ABC" })]
    [TestCase("tekken", "a/b\n12", new[] { "a", "/b", "\n", "1", "2" })]
    [TestCase("gpt-4o", "I'm HERE's 12345", new[] { "I'm", " HERE's", " ", "123", "45" })]
    [TestCase("gpt-4o", "x\U0001D518\U0001D51Ay", new[] { "x", "\U0001D518\U0001D51Ay" })] // astral Lu then Ll: case split kept
    [TestCase("deepseek-v3", "Hello 12345 世界", new[] { "Hello", " ", "123", "45", " ", "世界" })]
    [TestCase("chatglm-bpe", "12345", new[] { "123", "45" })]
    public void SplitsAsTheFamilyRegexSays(string family, string text, string[] expected)
    {
        Assert.That(Split(family, text), Is.EqualTo(expected));
    }

    [Test]
    public void EveryFamilyCoversItsInputExactly()
    {
        var text = "Hello, y'all! DON'T 12345 3.14\n\n\t  中文 한국어 🚀😶‍🌫️ 𝔘𝔫 ½ — \"x\"+y=z  \r\n end  ";
        Assert.Multiple(() =>
        {
            foreach (var family in PreTokenizer.KnownNames)
            {
                var words = Split(family, text);
                Assert.That(string.Concat(words), Is.EqualTo(text), family);
                Assert.That(words.All(w => w.Length > 0), Is.True, family + ": no empty words");
                Assert.That(words.Any(w => char.IsLowSurrogate(w[0])), Is.False, family + ": no word starts inside a surrogate pair");
            }
        });
    }

    [Test]
    public void UnknownFamilyIsNamed()
    {
        var e = Assert.Throws<NotSupportedException>(() => PreTokenizer.ForName("martian"));
        Assert.That(e!.Message, Does.Contain("martian"));
    }

    [Test]
    public void TokenizerJsonPatternsMapToFamilies()
    {
        Assert.That(((ByteLevelBpeTokenizer)StreamingAndSpecialTests.Load("models/tokenizers/llama3/tokenizer.json")).PreTokenizerName, Is.EqualTo("llama3"));
        Assert.That(((ByteLevelBpeTokenizer)StreamingAndSpecialTests.Load("models/tokenizers/qwen3/tokenizer.json")).PreTokenizerName, Is.EqualTo("qwen2"));
    }

    /// <summary>A GGUF-style description of a tokenizer.json vocabulary: tokens, types, merges, pre name only.</summary>
    private static ModelFile AsGgufMetadata(Tokenizer source, string pre)
    {
        var v = source.Vocabulary;
        var meta = new Dictionary<string, object>
        {
            [TokenizerKeys.Model] = "gpt2",
            [TokenizerKeys.Pre] = pre,
            [TokenizerKeys.Tokens] = v.Tokens,
            [TokenizerKeys.TokenType] = v.Types!.Select(t => (int)t).ToArray(),
            [TokenizerKeys.Merges] = v.Merges!,
        };
        return new ModelFile("<in-memory " + pre + ">", ModelFileFormat.Gguf, meta, [], null);
    }

    [TestCase("ggml-vocab-llama-bpe", "models/tokenizers/llama3/tokenizer.json", "llama-bpe")]
    [TestCase("ggml-vocab-qwen2", "models/tokenizers/qwen3/tokenizer.json", "qwen2")]
    public void GgufMetadataAloneReproducesVectors(string vocab, string json, string pre)
    {
        using var file = AsGgufMetadata(StreamingAndSpecialTests.Load(json), pre);
        var tok = Tokenizer.FromModelFile(file);
        var cases = VocabTestVectors.Read(SharedData.Get($"models/vocab/{vocab}.gguf.inp"), SharedData.Get($"models/vocab/{vocab}.gguf.out"));
        int pass = cases.Count(c => tok.Encode(c.Text).SequenceEqual(c.Ids));
        TestContext.Out.WriteLine($"{vocab} from GGUF-style metadata (pre={pre}): {pass}/{cases.Count}");
        Assert.That(pass, Is.EqualTo(cases.Count));
    }
}
