// Owns: the measurement behind the disk-tier numbers in the report (Explicit: run by hand, prints a table):
// stories260K driven past its trained context (positions to 4096; quality is irrelevant here, only bytes and time),
// prefill in 256-token chunks then 256 decode steps, ContiguousKvStore vs TieredKvStore at RAM budgets of ∞, 25 % and
// 0 % of the total KV. The machine is shared, so decode steps of the four stores are interleaved (step t of every store
// before step t+1) and the median step time is reported. Checks that every store gives the same logits.
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
        const int ctx = 4096, decodeSteps = 256, prefill = ctx - decodeSteps, chunk = 256, block = 32;
        var rnd = new Random(5);
        var tokens = Enumerable.Range(0, ctx).Select(_ => rnd.Next(3, c.VocabSize)).ToArray();
        long totalKv = 2L * c.LayerCount * ctx * c.KvDim * 4;
        var configs = new (string Name, long Budget)[] { ("contiguous", -1), ("tiered", long.MaxValue), ("tiered", totalKv / 4), ("tiered", 0) };
        var stores = configs.Select(cf => cf.Budget < 0 ? (IKvStore)new ContiguousKvStore(c.LayerCount, c.KvDim, ctx)
            : new TieredKvStore(c.LayerCount, c.KvDim, ctx, blockSize: block, ramBudgetBytes: cf.Budget)).ToArray();
        try
        {
            var logits = new float[c.VocabSize];
            var ingest = new double[stores.Length];
            for (int rep = 0; rep < 2; rep++)   // rep 0 warms up (JIT); rep 1 is timed
                for (int s = 0; s < stores.Length; s++)
                {
                    stores[s].Clear(0);
                    var sw = Stopwatch.StartNew();
                    for (int p = 0; p < prefill; p += chunk)
                        model.Forward(ForwardBatch.ForSequence(tokens.AsSpan(p, chunk), p), stores[s], logits, allLogits: false);
                    ingest[s] = prefill / sw.Elapsed.TotalSeconds;
                }
            var steps = new double[stores.Length][];
            var last = new float[stores.Length][];
            for (int s = 0; s < stores.Length; s++) { steps[s] = new double[decodeSteps]; last[s] = new float[decodeSteps * c.VocabSize]; }
            for (int t = prefill; t < ctx; t++)
                for (int s = 0; s < stores.Length; s++)
                {
                    long t0 = Stopwatch.GetTimestamp();
                    model.Forward(ForwardBatch.ForSequence(tokens.AsSpan(t, 1), t), stores[s], last[s].AsSpan((t - prefill) * c.VocabSize, c.VocabSize), allLogits: false);
                    steps[s][t - prefill] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
                }
            TestContext.Out.WriteLine($"stories260K: {c.LayerCount} layers, kvDim {c.KvDim}; {ctx} tokens → total KV {totalKv / 1024} KiB; blocks of {block} tokens");
            TestContext.Out.WriteLine("| store | RAM budget | RAM held (KiB) | disk (KiB) | ingest tok/s | decode median ms/token | logits = contiguous |");
            TestContext.Out.WriteLine("|---|---|---|---|---|---|---|");
            for (int s = 0; s < stores.Length; s++)
            {
                var (name, budget) = configs[s];
                bool same = last[s].AsSpan().SequenceEqual(last[0]);
                long ram = stores[s] is TieredKvStore ts ? ts.RamBytes : totalKv;
                long disk = stores[s] is TieredKvStore td ? td.DiskBytes : 0;
                string b = budget < 0 ? "—" : budget == long.MaxValue ? "∞" : $"{budget / 1024} KiB";
                var sorted = steps[s].Order().ToArray();
                TestContext.Out.WriteLine($"| {name} | {b} | {ram / 1024} | {disk / 1024} | {ingest[s]:F0} | {sorted[decodeSteps / 2]:F3} | {same} |");
                Assert.That(same, "disk-backed pages give the same logits");
            }
        }
        finally { foreach (var s in stores) s.Dispose(); }
    }
}
