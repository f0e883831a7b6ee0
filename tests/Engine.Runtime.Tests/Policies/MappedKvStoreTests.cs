// Owns: tests of the disk tier (MappedKvStore): it behaves as the in-RAM ContiguousKvStore (same pages content, same
// attention), reports capacity errors the same way, deletes its temporary file, and serves the needle test.
using Engine.Kernels;
using Engine.Memory;
using Engine.Memory.Disk;
using Engine.Memory.Policies;
using Engine.Runtime.Evaluation;

namespace Engine.Runtime.Tests.Policies;

public class MappedKvStoreTests
{
    [Test]
    public unsafe void SameAttentionAsInRamStore_AndFileRemoved()
    {
        const int kvDim = 32, len = 70;
        var r = new Random(5);
        var k = Enumerable.Range(0, len * kvDim).Select(_ => (float)r.NextDouble() - 0.5f).ToArray();
        var v = Enumerable.Range(0, len * kvDim).Select(_ => (float)r.NextDouble() - 0.5f).ToArray();
        var q = Enumerable.Range(0, 4 * 16).Select(_ => (float)r.NextDouble() - 0.5f).ToArray();
        string file;
        using var ram = new ContiguousKvStore(2, kvDim, 100);
        using (var disk = new MappedKvStore(2, kvDim, 100))
        {
            file = disk.FilePath;
            Assert.That(File.Exists(file));
            foreach (IKvStore s in new IKvStore[] { ram, disk })
            {
                s.Write(1, 0, Enumerable.Range(0, 50).ToArray(), k.AsSpan(0, 50 * kvDim), v.AsSpan(0, 50 * kvDim));
                s.Write(1, 0, Enumerable.Range(50, 20).ToArray(), k.AsSpan(50 * kvDim), v.AsSpan(50 * kvDim));
            }
            var p = new AttentionParams(4, 2, 16, 0.25f);
            var a = new float[64]; var b = new float[64];
            var reference = new ReferenceBackend();
            reference.Attention(q, [69], ram.Pages(1, 0), p, a);
            reference.Attention(q, [69], disk.Pages(1, 0), p, b);
            Assert.That(b, Is.EqualTo(a));
            Assert.That(disk.Length(1, 0), Is.EqualTo(70));
            Assert.That(disk.Length(0, 0), Is.EqualTo(0));
            Assert.Throws<KvCapacityException>(() => disk.Write(1, 0, [100], new float[kvDim], new float[kvDim]));
            disk.Truncate(0, 10);
            Assert.That(disk.Pages(1, 0)[0].TokenCount, Is.EqualTo(10));
        }
        Assert.That(File.Exists(file), Is.False, "temporary backing file deleted on Dispose");
    }

    [Test]
    public void Needle_OnDiskTier_IsFoundByQuest()
    {
        using var b = new CpuBackend(1);
        var res = NeedleEvaluator.Run(b, KvPolicySpec.Parse("quest", 0.05), context: 20000, trials: 2, disk: true);
        Assert.That(res.Retrieved, Is.EqualTo(1.0));
    }
}
