// Tests of `engine tokenize` and `engine inspect` on every tokenizer-bearing file kind in shared/models, in-process:
// each exits 0; ids agree with another file of the same tokenizer (GPT-2 GGUF, llama2.c tokenizer.bin) or with the
// text's UTF-8 bytes (rwkv.cpp byte vocabulary); redirected output carries no ANSI escape codes.
using System.CommandLine;
using System.Text;
using Engine.Cli.Commands;

namespace Engine.Runtime.Tests;

[NonParallelizable]
public class CliTokenizerFileTests
{
    private const string Text = "Hello world ☃";

    private static (int Code, string Out, string Err) Invoke(Command command, params string[] args) => CliInvoker.Invoke(command, args);

    private static string Ids(string relative)
    {
        var (code, stdout, stderr) = Invoke(TokenizeCommand.Create(), "tokenize", "--model", SharedData.Get(relative), "--ids", Text);
        Assert.That(code, Is.EqualTo(0), stderr);
        return stdout.Trim();
    }

    [TestCase("models/tokenizers/gpt2/encoder.json", "models/vocab/ggml-vocab-gpt-2.gguf")]
    [TestCase("models/tokenizers/gpt2/vocab.bpe", "models/vocab/ggml-vocab-gpt-2.gguf")]
    [TestCase("models/llama2c/tokenizer.model", "models/llama2c/tokenizer.bin")]
    public void TokenizeAgreesWithTheSameTokenizerInAnotherFormat(string file, string reference)
        => Assert.That(Ids(file), Is.EqualTo(Ids(reference)));

    [TestCase("models/rwkv/tiny-rwkv-5v2-730K-FP32.bin")]
    [TestCase("models/rwkv/tiny-rwkv-6v0-3m-Q5_1.bin")]
    [TestCase("models/rwkv/tiny-rwkv-7v0-834K-FP32.bin")]
    public void TokenizeRwkvGivesUtf8Bytes(string file)
        => Assert.That(Ids(file), Is.EqualTo(string.Join(' ', Encoding.UTF8.GetBytes(Text))));

    [TestCase("models/tokenizers/gpt2/encoder.json")]
    [TestCase("models/tokenizers/gpt2/vocab.bpe")]
    [TestCase("models/tokenizers/qwen3/tokenizer_config.json")]
    [TestCase("models/llama2c/tokenizer.model")]
    [TestCase("models/rwkv/tiny-rwkv-6v0-3m-Q5_0.bin")]
    [TestCase("models/vocab/ggml-vocab-gpt-2.gguf")]
    public void InspectAndTokenizeTableArePlainText(string file)
    {
        string path = SharedData.Get(file);
        var (code, stdout, stderr) = Invoke(InspectCommand.Create(), "inspect", "--model", path);
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Not.Contain("\u001b"), "no ANSI escape codes in redirected output");
        (code, stdout, stderr) = Invoke(TokenizeCommand.Create(), "tokenize", "--model", path, Text);
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain("tokens").And.Not.Contain("\u001b"));
    }
}
