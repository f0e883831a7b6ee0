// Tests: ModelFile accessors — exact array types, integer widening and range errors, missing tensors.
using Engine.Formats.Gguf;

namespace Engine.Formats.Tests;

public class ModelFileTests
{
    [Test]
    public void Accessors_TypeAndRangeChecks()
    {
        var w = new GgufWriter();
        w.AddMetadata("ints", new[] { 1, 2 });
        w.AddMetadata("big", ulong.MaxValue);
        w.AddMetadata("u16", (ushort)7);
        w.AddMetadata("f", 0.5f);
        w.AddMetadata("s", "x");
        using var m = GgufReader.Read(w.ToArray());
        Assert.Multiple(() =>
        {
            Assert.That(m.GetArray<int>("ints"), Is.EqualTo(new[] { 1, 2 }));
            Assert.That(m.GetArray<uint>("ints"), Is.Null, "int[] is not a uint[]");
            Assert.That(m.GetInteger("u16"), Is.EqualTo(7));
            Assert.That(m.GetNumber("f"), Is.EqualTo(0.5));
            Assert.That(m.GetInteger("absent"), Is.Null);
            Assert.Throws<ModelFormatException>(() => m.GetInteger("big"));
            Assert.Throws<ModelFormatException>(() => m.GetInteger("s"));
            Assert.Throws<ModelFormatException>(() => m.GetTensor("nope.weight"));
        });
    }
}
