// Owns: llama.cpp's tokenizer test vectors against our SPM and byte-level BPE tokenizers (encode, no BOS,
// parse_special off — test-tokenizer-0's call), and decode(encode(s)) == s on the same strings.
// Expected ids come from llama.cpp (shared/models/vocab, PROVENANCE.md); nothing here is produced by our code.
using Engine.Formats;

namespace Engine.Tokenizers.Tests;

public class VocabVectorTests
{
    private static Tokenizer Load(string relative) => StreamingAndSpecialTests.Load(relative);

    [TestCase("ggml-vocab-llama-spm", "models/vocab/ggml-vocab-llama-spm.gguf")]
    [TestCase("ggml-vocab-phi-3", "models/vocab/ggml-vocab-phi-3.gguf")]
    [TestCase("ggml-vocab-gpt-2", "models/vocab/ggml-vocab-gpt-2.gguf")]
    [TestCase("ggml-vocab-llama-bpe", "models/tokenizers/llama3/tokenizer.json")]
    [TestCase("ggml-vocab-qwen2", "models/tokenizers/qwen3/tokenizer.json")]
    [TestCase("ggml-vocab-gpt-2", "models/tokenizers/gpt2/encoder.json")]
    [TestCase("ggml-vocab-gpt-2", "models/tokenizers/gpt2/vocab.bpe")]
    [TestCase("ggml-vocab-llama-spm", "models/llama2c/tokenizer.model")]
    public void EncodesEveryTestVector(string vocab, string tokenizerPath)
    {
        var cases = VocabTestVectors.Read(SharedData.Get($"models/vocab/{vocab}.gguf.inp"), SharedData.Get($"models/vocab/{vocab}.gguf.out"));
        var tok = Load(tokenizerPath);
        int pass = 0;
        var failures = new List<string>();
        foreach (var (text, expected) in cases)
        {
            var got = tok.Encode(text, addSpecial: false, parseSpecial: false);
            if (got.SequenceEqual(expected)) pass++;
            else failures.Add($"  {Escape(text)}\n    expected {string.Join(' ', expected)}\n    got      {string.Join(' ', got)}");
        }
        TestContext.Out.WriteLine($"{vocab}: {pass}/{cases.Count} test vectors pass");
        foreach (var f in failures) TestContext.Out.WriteLine(f);
        Assert.That(pass, Is.EqualTo(cases.Count), $"{vocab}: {cases.Count - pass} failures:\n" + string.Join("\n", failures.Take(5)));
    }

    [TestCase("ggml-vocab-llama-spm", "models/vocab/ggml-vocab-llama-spm.gguf")]
    [TestCase("ggml-vocab-phi-3", "models/vocab/ggml-vocab-phi-3.gguf")]
    [TestCase("ggml-vocab-gpt-2", "models/vocab/ggml-vocab-gpt-2.gguf")]
    [TestCase("ggml-vocab-llama-bpe", "models/tokenizers/llama3/tokenizer.json")]
    [TestCase("ggml-vocab-qwen2", "models/tokenizers/qwen3/tokenizer.json")]
    [TestCase("ggml-vocab-gpt-2", "models/tokenizers/gpt2/encoder.json")]
    [TestCase("ggml-vocab-gpt-2", "models/tokenizers/gpt2/vocab.bpe")]
    [TestCase("ggml-vocab-llama-spm", "models/llama2c/tokenizer.model")]
    public void DecodeInvertsEncodeOnTestVectors(string vocab, string tokenizerPath)
    {
        var cases = VocabTestVectors.Read(SharedData.Get($"models/vocab/{vocab}.gguf.inp"), SharedData.Get($"models/vocab/{vocab}.gguf.out"));
        var tok = Load(tokenizerPath);
        Assert.Multiple(() =>
        {
            foreach (var (text, expected) in cases)
                Assert.That(tok.Decode(expected), Is.EqualTo(text), $"decode of llama.cpp's ids for {Escape(text)}");
        });
    }

    internal static string Escape(string s) => "\"" + s.Replace("\\", "\\\\").Replace("\n", "\\n").Replace("\t", "\\t").Replace("\r", "\\r") + "\"";
}
