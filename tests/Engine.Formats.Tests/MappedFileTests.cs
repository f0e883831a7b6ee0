// Tests: MappedFile maps files read-only and zero-copy (bytes equal the file), handles empty files, checks span
// bounds, and disposes idempotently.
using Engine.Tensors;

namespace Engine.Formats.Tests;

public unsafe class MappedFileTests
{
    [Test]
    public void Map_ExposesFileBytes_AndChecksBounds()
    {
        var path = Path.GetTempFileName();
        try
        {
            var data = Enumerable.Range(0, 5000).Select(i => (byte)(i * 7)).ToArray();
            File.WriteAllBytes(path, data);
            using (var map = MappedFile.Open(path))
            {
                Assert.That(map.Length, Is.EqualTo(5000));
                Assert.That(new ReadOnlySpan<byte>(map.Pointer, 5000).SequenceEqual(data), Is.True);
                Assert.That(map.Span(4990, 10).SequenceEqual(data.AsSpan(4990)), Is.True);
                Assert.Throws<ArgumentOutOfRangeException>(() => map.Span(4991, 10));
                Assert.Throws<ArgumentOutOfRangeException>(() => map.Span(-1, 1));
                map.Dispose();
                map.Dispose();
                Assert.Throws<ObjectDisposedException>(() => _ = map.BaseAddress);
            }
            File.WriteAllBytes(path, []);
            using var empty = MappedFile.Open(path);
            Assert.That(empty.Length, Is.EqualTo(0));
            Assert.That(empty.Span(0, 0).Length, Is.EqualTo(0));
        }
        finally { File.Delete(path); }
    }

    [Test]
    public void Map_MissingFile_ThrowsIOException() =>
        Assert.Throws(Is.InstanceOf<IOException>(), () => MappedFile.Open("/nonexistent/engine.bin"));
}
