// Owns: the measurement behind the disk-tier numbers in the report (Explicit: run by hand, prints a table):
// stories260K driven past its trained context (positions to 4096; quality is irrelevant here, only bytes and time),
// prefill in 256-token chunks then 256 decode steps, ContiguousKvStore vs TieredKvStore at RAM budgets of 25 % and 0 %
// of the total KV. Reports RAM bytes held, disk bytes, ingest and decode tokens/s, and checks the logits agree.
using System.Diagnostics;
using Engine.Formats;
using Engine.Kernels;
using Engine.Memory;
using Engine.Memory.Disk;
using Engine.Model;

namespace Engine.Runtime.Tests.Disk;

public class DiskTierNumbers
{
    [Test, Explicit("measurement; prints the disk-tier table")]
    public void LongRun_RamVsDisk()
    {
        using var file = ModelFile.Open(SharedData.Get("reference/stories260K/stories260K.gguf"));
        using var backend = new CpuBackend(2);
        using var model = ModelLoader.Load(file, backend);
        var c = model.Config;
        const int ctx = 4096, prefill = ctx - 256, chunk = 256, block = 32;
        var rnd = new Random(5);
        var tokens = Enumerable.Range(0, ctx).Select(_ => rnd.Next(3, c.VocabSize)).ToArray();
        long totalKv = 2L * c.BlockCount * ctx * c.KeyDim * 4;
        TestContext.Out.WriteLine($"stories260K: {c.BlockCount} layers, kvDim {c.KeyDim}; {ctx} tokens → total KV {totalKv / 1024} KiB");
        TestContext.Out.WriteLine("| store | RAM budget | RAM held (KiB) | disk (KiB) | ingest tok/s | decode tok/s | logits = contiguous |");
        TestContext.Out.WriteLine("|---|---|---|---|---|---|---|");
        float[]? reference = null;
        foreach (var (name, budget) in new (string, long)[] { ("contiguous", -1), ("tiered", long.MaxValue), ("tiered", totalKv / 4), ("tiered", 0) })
        {
            using IKvStore kv = budget < 0 ? new ContiguousKvStore(c.BlockCount, c.KeyDim, ctx)
                : new TieredKvStore(c.BlockCount, c.KeyDim, ctx, blockSize: block, ramBudgetBytes: budget);
            var logits = new float[c.VocabSize];
            var last = new float[256 * c.VocabSize];
            var sw = Stopwatch.StartNew();
            for (int p = 0; p < prefill; p += chunk)
                model.Forward(ForwardBatch.ForSequence(tokens.AsSpan(p, chunk), p), kv, logits, allLogits: false);
            double ingest = prefill / sw.Elapsed.TotalSeconds;
            sw.Restart();
            for (int t = prefill; t < ctx; t++)
                model.Forward(ForwardBatch.ForSequence(tokens.AsSpan(t, 1), t), kv, last.AsSpan((t - prefill) * c.VocabSize, c.VocabSize), allLogits: false);
            double decode = 256 / sw.Elapsed.TotalSeconds;
            reference ??= last;
            bool same = last.AsSpan().SequenceEqual(reference);
            long ram = kv is TieredKvStore ts ? ts.RamBytes : totalKv;
            long disk = kv is TieredKvStore td ? td.DiskBytes : 0;
            string b = budget < 0 ? "—" : budget == long.MaxValue ? "∞" : $"{budget / 1024} KiB";
            TestContext.Out.WriteLine($"| {name} | {b} | {ram / 1024} | {disk / 1024} | {ingest:F0} | {decode:F0} | {same} |");
            Assert.That(same, "disk-backed pages give the same logits");
        }
    }
}
