// Owns: streaming decode (equals whole decode for every split point, holds split UTF-8 characters), special-token
// handling (parseSpecial, BOS/EOS, EOG ids), byte-level BPE round trips, and bad-input errors.
using System.Text;
using Engine.Formats;

namespace Engine.Tokenizers.Tests;

public class StreamingAndSpecialTests
{
    private static readonly Dictionary<string, Tokenizer> Cache = new();

    /// <summary>One shared instance per tokenizer file for the whole test run (loading Llama 3 / Qwen once).</summary>
    internal static Tokenizer Load(string relative)
    {
        lock (Cache)
        {
            if (!Cache.TryGetValue(relative, out var t)) Cache[relative] = t = Tokenizer.Load(SharedData.Get(relative));
            return t;
        }
    }

    private static readonly string[] AllTokenizers =
    [
        "models/llama2c/tok512.bin", "models/llama2c/tokenizer.bin", "models/vocab/ggml-vocab-gpt-2.gguf",
        "models/tokenizers/llama3/tokenizer.json", "models/tokenizers/qwen3/tokenizer.json", "models/vocab/ggml-vocab-phi-3.gguf",
    ];

    [TestCaseSource(nameof(AllTokenizers))]
    public void StreamingDecoderEqualsWholeDecodeForEverySplit(string path)
    {
        var tok = Load(path);
        var text = "Hi ☃ 🚀😶‍🌫️ 中文 é\n\t  x" + string.Join(" ", SpmTests.VariedTexts);
        var ids = tok.Encode(text, addSpecial: true);
        var whole = tok.Decode(ids);
        Assert.That(whole, Is.EqualTo(text), "round trip");
        int withheld = 0;
        for (int k = 0; k <= ids.Length; k++)
        {
            var d = tok.CreateDecoder(atTextStart: true);
            var first = d.Append(ids.AsSpan(0, k));
            var rest = d.Append(ids.AsSpan(k)) + d.Flush();
            Assert.That(first + rest, Is.EqualTo(whole), $"split at {k}");
            Assert.That(whole.StartsWith(first, StringComparison.Ordinal), $"prefix at {k} is final text");
            // The emitted prefix is never a broken character: no lone surrogate, no U+FFFD (text has none).
            Assert.That(first.Contains('\uFFFD'), Is.False, $"split at {k} emitted a replacement char");
            if (first.Length > 0 && char.IsHighSurrogate(first[^1])) Assert.Fail($"split at {k} ends in a half surrogate pair");
            if (Encoding.UTF8.GetByteCount(first) < ByteCountOfPieces(tok, ids.AsSpan(0, k))) withheld++;
        }
        TestContext.Out.WriteLine($"{path}: {ids.Length} tokens, {withheld} split points held back a partial character");
        Assert.That(withheld, Is.GreaterThan(0), "the text has characters split across tokens");
    }

    private static int ByteCountOfPieces(Tokenizer tok, ReadOnlySpan<int> ids)
    {
        int n = 0;
        foreach (var id in ids) n += tok.PieceBytes(id).Length;
        return n - (tok.Model == TokenizerModel.SentencePiece && n > 0 ? 1 : 0); // stripped dummy-prefix space
    }

    [Test]
    public void StreamingDecoderHoldsSplitCharacterUntilWhole()
    {
        var tok = Load("models/llama2c/tok512.bin"); // '☃' has no piece: <0xE2><0x98><0x83>
        var d = tok.CreateDecoder();
        Assert.That(d.Append(3 + 0xE2), Is.EqualTo(""));
        Assert.That(d.Append(3 + 0x98), Is.EqualTo(""));
        Assert.That(d.Append(3 + 0x83), Is.EqualTo("☃"));
        Assert.That(d.Append(3 + 0xE2), Is.EqualTo(""));
        Assert.That(d.Flush(), Is.EqualTo("\uFFFD"), "a dangling partial character flushes as U+FFFD");
        // Not at text start: the leading space of a continuation token is kept.
        var c = tok.CreateDecoder(atTextStart: false);
        Assert.That(c.Append(tok.TokenToId("▁t")!.Value), Is.EqualTo(" t"));
    }

    [TestCase("models/tokenizers/llama3/tokenizer.json")]
    [TestCase("models/tokenizers/qwen3/tokenizer.json")]
    [TestCase("models/vocab/ggml-vocab-gpt-2.gguf")]
    public void ByteLevelRoundTrips(string path)
    {
        var tok = Load(path);
        Assert.Multiple(() =>
        {
            foreach (var s in SpmTests.VariedTexts.Append("\u2581 meta space is plain text here").Append("\u0000nul \uFEFFbom"))
                Assert.That(tok.Decode(tok.Encode(s)), Is.EqualTo(s), VocabVectorTests.Escape(s));
        });
    }

    [Test]
    public void Gpt2GgufMatchesEncoderJsonAndVocabBpe()
    {
        var tok = Load("models/vocab/ggml-vocab-gpt-2.gguf");
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(SharedData.Get("models/tokenizers/gpt2/encoder.json")));
        int n = 0;
        foreach (var kv in doc.RootElement.EnumerateObject())
        {
            Assert.That(tok.TokenText(kv.Value.GetInt32()), Is.EqualTo(kv.Name));
            n++;
        }
        Assert.That(n, Is.EqualTo(tok.VocabSize));
        var merges = File.ReadAllText(SharedData.Get("models/tokenizers/gpt2/vocab.bpe"), Encoding.UTF8)
            .Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => !l.StartsWith("#version")).ToArray();
        Assert.That(tok.Vocabulary.Merges, Is.EqualTo(merges));
    }

    [Test]
    public void SpecialTokensAreAtomicOnlyWhenParsed()
    {
        var tok = Load("models/tokenizers/qwen3/tokenizer.json");
        int imStart = tok.TokenToId("<|im_start|>")!.Value, imEnd = tok.TokenToId("<|im_end|>")!.Value;
        var parsed = tok.Encode("<|im_start|>user\nhi<|im_end|>", parseSpecial: true);
        Assert.That(parsed[0], Is.EqualTo(imStart));
        Assert.That(parsed[^1], Is.EqualTo(imEnd));
        Assert.That(parsed.Length, Is.EqualTo(2 + tok.Encode("user\nhi").Length));
        var plain = tok.Encode("<|im_start|>user", parseSpecial: false);
        Assert.That(plain, Does.Not.Contain(imStart));
        Assert.That(tok.Decode(plain), Is.EqualTo("<|im_start|>user"));
        Assert.That(tok.Decode(parsed), Is.EqualTo("user\nhi"), "control tokens decode to nothing by default");
        Assert.That(tok.Decode(parsed, renderSpecial: true), Is.EqualTo("<|im_start|>user\nhi<|im_end|>"));
        Assert.That(tok.IsEog(imEnd), Is.True);
    }

    [Test]
    public void BosAndEogFollowTheVocabulary()
    {
        var llama3 = Load("models/tokenizers/llama3/tokenizer.json");
        Assert.That(llama3.Bos, Is.EqualTo(128000));
        Assert.That(llama3.Encode("hi", addSpecial: true)[0], Is.EqualTo(128000));
        Assert.That(llama3.Encode("hi")[0], Is.Not.EqualTo(128000));
        Assert.That(llama3.EogIds, Does.Contain(128009).And.Contain(128001), "<|eot_id|> and <|end_of_text|>");
        var qwen = Load("models/tokenizers/qwen3/tokenizer.json");
        Assert.That(qwen.Encode("hi", addSpecial: true), Is.EqualTo(qwen.Encode("hi")), "Qwen adds no BOS");
        var tok512 = Load("models/llama2c/tok512.bin");
        Assert.That((tok512.Bos, tok512.Eos), Is.EqualTo(((int?)1, (int?)2)));
        Assert.That(tok512.Encode("", addSpecial: true), Is.EqualTo(new[] { 1 }));
        Assert.That(tok512.Encode(""), Is.Empty);
        Assert.That(tok512.IsEog(2), Is.True);
    }

    [Test]
    public void SpmParseSpecialPrefixesSpaceAfterSpecialToken()
    {
        // llama.cpp: with parse_special, "<s>" becomes id 1 and the text after it gets the dummy "▁" prefix again.
        var tok = Load("models/llama2c/tok512.bin");
        var ids = tok.Encode("<s>a", parseSpecial: true);
        Assert.That(ids, Is.EqualTo(new[] { 1, 261 })); // 261 = "▁a" (tok512_tokenize_cases: "a" → [1, 261])
    }

    [Test]
    public void BadInputGivesClearErrors()
    {
        var dir = Path.Combine(Path.GetTempPath(), "engine-tok-tests-" + Environment.ProcessId);
        Directory.CreateDirectory(dir);
        try
        {
            Assert.Throws<ModelFormatException>(() => Tokenizer.Load(dir), "a folder without tokenizer.json");
            Assert.Throws<ModelFormatException>(() => Tokenizer.Load(Path.Combine(dir, "missing.gguf")));
            var junk = Path.Combine(dir, "junk.bin");
            File.WriteAllBytes(junk, [1, 2, 3]);
            Assert.Throws<ModelFormatException>(() => Tokenizer.Load(junk));
            var json = Path.Combine(dir, "tokenizer.json");
            File.WriteAllText(json, "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}");
            var e = Assert.Throws<ModelFormatException>(() => Tokenizer.Load(json));
            Assert.That(e!.Message, Does.Contain("Unigram"));
            File.WriteAllText(json, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0");
            Assert.Throws<ModelFormatException>(() => Tokenizer.Load(json));
        }
        finally { Directory.Delete(dir, true); }
    }

    [TestCaseSource(nameof(AllTokenizers))]
    public void InvalidUtf16AndBadIdsAreHandled(string path)
    {
        var tok = Load(path);
        var ids = tok.Encode("a\uD800b\uDC00", addSpecial: true, parseSpecial: true);
        Assert.That(ids.All(id => id >= 0 && id < tok.VocabSize), Is.True);
        Assert.That(tok.Decode(ids), Is.EqualTo("a\uFFFDb\uFFFD"), "lone surrogates come back as U+FFFD");
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.Decode([tok.VocabSize]));
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.TokenPiece(-1));
    }

    [Test]
    public void UnknownPreTokenizerIsNamed()
    {
        var v = new Vocabulary { Model = TokenizerModel.ByteLevelBpe, Tokens = ["a", "b"], Merges = [], PreTokenizer = "no-such-family" };
        var e = Assert.Throws<NotSupportedException>(() => Tokenizer.FromVocabulary(v));
        Assert.That(e!.Message, Does.Contain("no-such-family"));
    }
}
