// Owns: tests of the paged store's disk tier and of serving with it. PagedKvStore: disk block ids address a memory-mapped
// file, MoveBlock carries a block's rows bit for bit (every layer, K and V), pages never cross the RAM/disk boundary,
// the file exists while the store lives and is gone after Dispose. Serving (stories260K, F32 KV): N concurrent greedy
// requests with RAM for a quarter of their KV plus a disk tier give exactly the tokens of an unconstrained engine,
// with no preemption, blocks really moved to disk (engine stats), an idle pool afterwards and the file removed on
// Dispose; the same RAM without a disk tier does preempt (the disk tier is what avoids it).
using Engine.Memory.Paged;
using Engine.Runtime.Sampling;

namespace Engine.Runtime.Tests.Disk;

public class PagedDiskTierTests
{
    private static float[] Rows(int n, int dim, float offset)
    {
        var x = new float[n * dim];
        for (int i = 0; i < x.Length; i++) x[i] = offset + i * 0.5f;
        return x;
    }

    private static unsafe float[] Read(nint p, int floats) => new ReadOnlySpan<float>((void*)p, floats).ToArray();

    [Test]
    public void DiskBlocksLiveInTheMappedFile_MoveIsExact_PagesSplitAtTheBoundary()
    {
        const int layers = 2, dim = 3, b = 4, ram = 3, disk = 4;
        string dir = Path.Combine(Path.GetTempPath(), "engine-paged-disk-" + Guid.NewGuid().ToString("N"));
        string file = Path.Combine(dir, "kv.bin");
        var kv = new PagedKvStore(layers, dim, b, ram, capacity: 64, sequenceCapacity: 2, diskBlockCount: disk, diskPath: file);
        try
        {
            Assert.That((kv.RamBlockCount, kv.DiskBlockCount, kv.BlockCount), Is.EqualTo((3, 4, 7)));
            Assert.That(kv.DiskFilePath, Is.EqualTo(file));
            Assert.That(File.Exists(file), Is.True);
            Assert.That(new FileInfo(file).Length, Is.EqualTo(kv.DiskBytes));
            Assert.That(kv.DiskBytes, Is.EqualTo(2L * layers * disk * b * dim * sizeof(float)));

            // Sequence 0 writes 12 positions into RAM blocks 0, 1, 2 (every layer).
            var k = new float[layers][];
            var v = new float[layers][];
            kv.Bind(0, [0, 1, 2], 0);
            for (int l = 0; l < layers; l++)
            {
                k[l] = Rows(12, dim, 100 * l);
                v[l] = Rows(12, dim, 100 * l + 5000);
                kv.Write(l, 0, Enumerable.Range(0, 12).ToArray(), k[l], v[l]);
            }
            // Offload blocks 1 and 2 to disk ids 3 and 4, trash the RAM copies (their ids are free now), rebind.
            kv.MoveBlock(1, 3);
            kv.MoveBlock(2, 4);
            Assert.That(kv.BlocksMoved, Is.EqualTo(2));
            kv.Bind(1, [1, 2], 0);
            for (int l = 0; l < layers; l++) kv.Write(l, 1, Enumerable.Range(0, 8).ToArray(), Rows(8, dim, -1), Rows(8, dim, -2));
            // Table [0, 3, 4]: ids 3, 4 are consecutive on disk (one page); 0 → 3 is not consecutive. And [2, 3]
            // below: consecutive ids across the boundary must still be two pages.
            kv.Bind(0, [0, 3, 4], 12);
            for (int l = 0; l < layers; l++)
            {
                var pages = kv.Pages(l, 0).ToArray();
                Assert.That(pages.Select(p => (p.StartPosition, p.TokenCount)), Is.EqualTo(new[] { (0, 4), (4, 8) }));
                Assert.That(Read(pages[0].K, 4 * dim), Is.EqualTo(k[l][..(4 * dim)]));
                Assert.That(Read(pages[1].K, 8 * dim), Is.EqualTo(k[l][(4 * dim)..]), "disk rows equal the rows written to RAM");
                Assert.That(Read(pages[1].V, 8 * dim), Is.EqualTo(v[l][(4 * dim)..]));
            }
            kv.Bind(1, [2, 3], 8);
            var split = kv.Pages(0, 1).ToArray();
            Assert.That(split, Has.Length.EqualTo(2), "ids 2 (last RAM) and 3 (first disk) are two pages");
            Assert.That(Read(split[1].K, 4 * dim), Is.EqualTo(k[0][(4 * dim)..(8 * dim)]));
            // Writing into a disk block works too (the executor never does it, but the store must not corrupt RAM).
            kv.Bind(1, [5], 0);
            kv.Write(0, 1, [0], Rows(1, dim, 42), Rows(1, dim, 43));
            Assert.That(Read(kv.Pages(0, 1)[0].K, dim), Is.EqualTo(Rows(1, dim, 42)));
            Assert.Throws<ArgumentOutOfRangeException>(() => kv.MoveBlock(0, 7));
            Assert.Throws<ArgumentOutOfRangeException>(() => kv.Bind(0, [7], 0));
        }
        finally
        {
            kv.Dispose();
        }
        Assert.That(File.Exists(file), Is.False, "the disk tier's file is deleted on Dispose");
        Directory.Delete(dir, recursive: true);
    }

    private const int BlockSize = 16;
    private static readonly GenerationOptions Greedy = new() { Sampling = SamplingOptions.Greedy, StopAtEndOfGeneration = false };

    private static InferenceEngine Engine(int maxSequences, long budgetBytes = 0, long diskBytes = 0, string? diskDir = null) =>
        InferenceEngine.Load(SharedData.Get("reference/stories260K/stories260K.gguf"), new EngineOptions
        {
            Threads = 2, MaxConcurrentSequences = maxSequences, KvBudgetBytes = budgetBytes, BlockSize = BlockSize,
            KvDiskBytes = diskBytes, KvDiskPath = diskDir,
        });

    private static int[] Prompt(int seed, int length)
    {
        var rng = new Random(seed);
        return [1, .. Enumerable.Range(0, length - 1).Select(_ => rng.Next(3, 512))];
    }

    private static async Task<int[]> Ids(InferenceEngine e, int[] prompt, int maxTokens) =>
        (await e.GenerateTextAsync(e.GenerateAsync(prompt, Greedy with { MaxTokens = maxTokens }))).TokenIds;

    private static long BlockBytes(InferenceEngine e) => (long)BlockSize * 2 * e.Config.LayerCount * e.Config.KvDim * sizeof(float);

    [Test]
    public async Task QuarterRamPlusDiskTier_SameTokens_NoPreemption_BlocksMoved_FileRemoved()
    {
        const int n = 24;
        var prompts = Enumerable.Range(0, n).Select(i => Prompt(4000 + i, 20 + i % 23)).ToArray();
        var maxTokens = Enumerable.Range(0, n).Select(i => 30 + i % 17).ToArray();
        int needed = prompts.Select((p, i) => (p.Length + maxTokens[i] - 1 + BlockSize - 1) / BlockSize).Sum();

        int[][] expected;
        long blockBytes;
        using (var unconstrained = Engine(n))
        {
            expected = await EngineBurst.Run(unconstrained, prompts.Length, i => Ids(unconstrained, prompts[i], maxTokens[i]));
            Assert.That(unconstrained.Stats!.Preemptions, Is.EqualTo(0));
            Assert.That(unconstrained.KvDiskFile, Is.Null);
            blockBytes = BlockBytes(unconstrained);
        }

        int ram = needed / 4, noDiskBatch;
        using (var noDisk = Engine(n, ram * blockBytes))
        {
            var got = await EngineBurst.Run(noDisk, prompts.Length, i => Ids(noDisk, prompts[i], maxTokens[i]));
            for (int i = 0; i < n; i++) Assert.That(got[i], Is.EqualTo(expected[i]), $"request {i} without a disk tier");
            TestContext.Out.WriteLine($"RAM {ram} of {needed} blocks, no disk: {noDisk.Stats}");
            Assert.That(noDisk.Stats!.Preemptions, Is.GreaterThan(0), "a quarter of the KV in RAM alone forces preemption");
            noDiskBatch = noDisk.Stats!.MaxRequestsPerStep;
        }

        string dir = Path.Combine(Path.GetTempPath(), "engine-serving-disk-" + Guid.NewGuid().ToString("N"));
        string file;
        using (var e = Engine(n, ram * blockBytes, needed * blockBytes, dir))
        {
            file = e.KvDiskFile!;
            Assert.That(file, Does.StartWith(dir));
            Assert.That(File.Exists(file), Is.True);
            var got = await EngineBurst.Run(e, prompts.Length, i => Ids(e, prompts[i], maxTokens[i]));
            for (int i = 0; i < n; i++) Assert.That(got[i], Is.EqualTo(expected[i]), $"request {i} with a disk tier");
            var s = e.Stats!;
            TestContext.Out.WriteLine($"RAM {ram} of {needed} blocks + disk {needed}: {s}");
            Assert.Multiple(() =>
            {
                Assert.That(s.Preemptions, Is.EqualTo(0), "cold blocks went to disk instead");
                Assert.That(s.BlocksMovedToDisk, Is.GreaterThan(0));
                Assert.That(s.DiskBlockCount, Is.EqualTo(needed));
                Assert.That(s.BlockCount, Is.EqualTo(ram + needed));
                Assert.That(s.MaxRequestsPerStep, Is.GreaterThanOrEqualTo(noDiskBatch), "at least as many requests share a step as without the disk tier");
            });
            e.ValidateKvPool();
            Assert.Multiple(() =>
            {
                Assert.That(e.Stats!.BlocksInUse, Is.EqualTo(0), "no referenced block after all requests ended");
                Assert.That(e.Stats!.DiskBlocksInUse, Is.EqualTo(0));
                Assert.That(e.Stats!.Running + e.Stats!.Waiting, Is.EqualTo(0));
                Assert.That(e.Stats!.BlocksFree + e.Stats!.BlocksCached, Is.EqualTo(e.Stats!.BlockCount));
            });
            e.EvictPrefixCache();
            Assert.That(e.Stats!.BlocksFree, Is.EqualTo(e.Stats!.BlockCount));
        }
        Assert.That(File.Exists(file), Is.False, "the disk tier's file is removed on Dispose");
        Directory.Delete(dir, recursive: true);
    }

    [Test]
    public void DiskTierSmallerThanOneBlockIsRejected()
    {
        var e = Assert.Throws<ArgumentException>(() => Engine(2, 0, diskBytes: 10));
        Assert.That(e!.Message, Does.Contain("disk tier"));
    }
}
