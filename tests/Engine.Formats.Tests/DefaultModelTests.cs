// Tests: the committed default model (models/stories260K.gguf, made by `engine convert`) equals the independently
// produced reference GGUF: tensor bytes bitwise, and every metadata key the reference has.
using Engine.Formats;
using Engine.Formats.Gguf;

namespace Engine.Formats.Tests;

public class DefaultModelTests
{
    [Test]
    public void CommittedStories260K_EqualsReference()
    {
        string committed = Path.Combine(SharedData.RepoRoot, "models", "stories260K.gguf");
        Assert.That(File.Exists(committed), Is.True, "models/stories260K.gguf is committed");
        using var ours = GgufReader.Read(committed);
        using var reference = GgufReader.Read(SharedData.Get("reference/stories260K/stories260K.gguf"));
        Assert.That(TestUtil.MetadataDifferences(reference.Metadata, ours.Metadata), Is.Empty);
        Assert.That(ours.Tensors.Select(t => t.Name), Is.EqualTo(reference.Tensors.Select(t => t.Name)));
        foreach (var r in reference.Tensors)
        {
            var t = ours.GetTensor(r.Name);
            Assert.That((t.Type, t.Shape), Is.EqualTo((r.Type, r.Shape)).Using<(Engine.Tensors.DType, long[])>(
                (a, b) => a.Item1 == b.Item1 && a.Item2.SequenceEqual(b.Item2)), r.Name);
            Assert.That(t.Bytes.SequenceEqual(r.Bytes), Is.True, $"{r.Name} bytes");
        }
    }

    [Test]
    public void ConvertPath_Stories260KBin_ReproducesReferenceFileExactly()
    {
        // The same path `engine convert` takes: ModelFiles.Open(bin, tok) → GgufWriter.
        using var m = ModelFiles.Open(SharedData.Get("models/llama2c/stories260K.bin"), SharedData.Get("models/llama2c/tok512.bin"));
        var dir = Directory.CreateTempSubdirectory("engine-convert-");
        try
        {
            var outPath = Path.Combine(dir.FullName, "s.gguf");
            GgufWriter.Write(m, outPath);
            Assert.That(File.ReadAllBytes(outPath).AsSpan().SequenceEqual(File.ReadAllBytes(SharedData.Get("reference/stories260K/stories260K.gguf"))), Is.True,
                "converted file differs from the reference");
        }
        finally { dir.Delete(true); }
    }
}
