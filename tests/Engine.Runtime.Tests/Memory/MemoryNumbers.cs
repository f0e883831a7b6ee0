// Owns: the measurement behind the memory-document numbers in the report (Explicit; prints a table): ingest tokens/s,
// disk bytes, and decode ms/token (median, steps interleaved across configurations on this shared machine) of a
// stories260K prompt with no memory vs top-k 4 / 16 / all chunks of a memory of 16 documents (~6K tokens).
using System.Diagnostics;
using Engine.Formats;
using Engine.Kernels;
using Engine.Memory;
using Engine.Memory.Documents;
using Engine.Model;
using Engine.Runtime.Memory;

namespace Engine.Runtime.Tests.Memory;

public class MemoryNumbers
{
    [Test, Explicit("measurement; prints the memory table")]
    public void DecodeOverMemory()
    {
        using var file = ModelFile.Open(SharedData.Get("reference/stories260K/stories260K.gguf"));
        using var backend = new CpuBackend(2);
        using var model = ModelLoader.Load(file, backend);
        var tok = TokenizerAdapter.FromModelFile(file)!;
        var c = model.Config;
        string root = Path.Combine(Path.GetTempPath(), "engine-memnum-" + Guid.NewGuid().ToString("N"));
        try
        {
            using var m = MemoryStore.OpenOrCreate(root, "num", MemoryStore.Identify(file, c), c, chunkSize: 32);
            var rnd = new Random(3);
            var docs = Enumerable.Range(0, 16).Select(i => Enumerable.Range(0, 300 + 20 * i).Select(_ => rnd.Next(3, c.VocabSize)).Prepend(1).ToArray()).ToList();
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < docs.Count; i++) m.Add(model, "d" + i, docs[i]);
            double ingest = docs.Sum(d => d.Length) / sw.Elapsed.TotalSeconds;
            TestContext.Out.WriteLine($"memory: {docs.Count} documents, {docs.Sum(d => d.Length)} tokens, {m.Memory.ChunkCount} chunks, " +
                $"{m.Memory.DiskBytes / 1024} KiB in the disk tier ({m.Memory.DiskBytes / docs.Sum(d => d.Length)} B/token), ingest {ingest:F0} tok/s");
            int[] topKs = [0, 4, 16, m.Memory.ChunkCount];
            var stores = topKs.Select(k => k == 0 ? (IKvStore)new ContiguousKvStore(c.LayerCount, c.KvDim, 256)
                : new MemoryKvStore(new ContiguousKvStore(c.LayerCount, c.KvDim, 256), m.Memory, k)).ToArray();
            var prompt = tok.Encode("Once upon a time, there was a little girl named Lily. She liked to play in the park with her friends.", true, false);
            var logits = new float[c.VocabSize];
            const int steps = 64;
            var ms = topKs.Select(_ => new double[steps]).ToArray();
            foreach (var s in stores) model.Forward(ForwardBatch.ForSequence(prompt, 0), s, logits, allLogits: false);
            for (int t = 0; t < steps; t++)
                for (int s = 0; s < stores.Length; s++)
                {
                    long t0 = Stopwatch.GetTimestamp();
                    model.Forward(ForwardBatch.ForSequence([prompt[t % prompt.Length]], prompt.Length + t), stores[s], logits, allLogits: false);
                    ms[s][t] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
                }
            TestContext.Out.WriteLine("| memory top-k | memory tokens attended / layer | decode median ms/token |");
            TestContext.Out.WriteLine("|---|---|---|");
            for (int s = 0; s < stores.Length; s++)
            {
                int memTokens = stores[s] is MemoryKvStore mk ? mk.Pages(0, 0).ToArray().Where(p => p.StartPosition < 0).Sum(p => p.TokenCount) : 0;
                TestContext.Out.WriteLine($"| {(topKs[s] == 0 ? "none" : topKs[s].ToString())} | {memTokens} | {ms[s].Order().ElementAt(steps / 2):F3} |");
            }
            foreach (var s in stores) s.Dispose();
        }
        finally { Directory.Delete(root, true); }
    }
}
