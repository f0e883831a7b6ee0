// Tests: ModelFiles.Open detects formats by content and reports unsupported/bad files as ModelFormatException.
using Engine.Formats;

namespace Engine.Formats.Tests;

public class ModelFilesTests
{
    [Test]
    public void Open_DetectsEachSharedKind()
    {
        Assert.Multiple(() =>
        {
            Assert.That(ModelFiles.DetectKind(SharedData.Get("reference/stories260K/stories260K.gguf")), Is.EqualTo("gguf"));
            Assert.That(ModelFiles.DetectKind(SharedData.Get("models/llama2c/stories260K.bin")), Is.EqualTo("llama2c-checkpoint"));
            Assert.That(ModelFiles.DetectKind(SharedData.Get("models/llama2c/tok512.bin")), Is.EqualTo("llama2c-tokenizer"));
            Assert.That(ModelFiles.DetectKind(SharedData.Get("models/llama2c/tokenizer.bin")), Is.EqualTo("llama2c-tokenizer"));
            Assert.That(ModelFiles.DetectKind(SharedData.Get("models/rwkv/tiny-rwkv-5v2-730K-FP32.bin")), Is.EqualTo("rwkv"));
            Assert.That(ModelFiles.DetectKind(SharedData.Get("models/tokenizers/gpt2/encoder.json")), Is.EqualTo("json"));
        });
        using var tok = ModelFiles.Open(SharedData.Get("models/llama2c/tokenizer.bin"));
        Assert.That(tok.GetArray<string>(TokenizerKeys.Tokens), Has.Length.EqualTo(32000));
    }

    [Test]
    public void Open_UnsupportedOrMissing_ThrowsModelFormatException()
    {
        Assert.Throws<ModelFormatException>(() => ModelFiles.Open(SharedData.Get("models/vocab/ggml-vocab-gpt-2.gguf.inp")));
        Assert.Throws<ModelFormatException>(() => ModelFiles.Open("/nonexistent/model.gguf"));
    }

    [Test]
    public void Open_WithTokenizerPath_MergesTokenizerMetadata()
    {
        using var m = ModelFiles.Open(SharedData.Get("reference/llama-256x2/rand-llama-Q4_0.gguf"),
            SharedData.Get("models/llama2c/tok512.bin"));
        Assert.That(m.GetArray<string>(TokenizerKeys.Tokens)![259], Is.EqualTo("\u2581t"));
        Assert.That(m.Tensors, Is.Not.Empty);
    }
}

public class ModelFilesTokenizerMismatchTests
{
    [Test]
    public void Open_WithTokenizerOfWrongSize_Throws()
    {
        var e = Assert.Throws<ModelFormatException>(() => ModelFiles.Open(SharedData.Get("reference/llama-256x2/rand-llama-Q4_0.gguf"),
            SharedData.Get("models/llama2c/tokenizer.bin")));
        Assert.That(e!.Problem, Does.Contain("32000"));
        Assert.Throws<ModelFormatException>(() => ModelFiles.Open(SharedData.Get("models/llama2c/stories260K.bin"),
            SharedData.Get("models/llama2c/tokenizer.bin")));
    }
}
