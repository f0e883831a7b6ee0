// Bench (explicit, not part of CI): tokens/s of the tiny RWKV models in sequence (prefill) and one-token (decode)
// mode on the CPU backend, recurrent state bytes per sequence vs a float32 transformer KV cache of the same width and
// depth at 1K / 16K context, and time-to-first-token saved by prefix reuse. Run:
//   dotnet test tests/Engine.Recurrent.Tests -c Release --filter "FullyQualifiedName~RwkvBench" --logger "console;verbosity=normal"
using System.Diagnostics;
using Engine.Memory.Recurrent;
using Engine.Model;

namespace Engine.Recurrent.Tests;

[Explicit("benchmark")]
public class RwkvBench
{
    [TestCaseSource(typeof(RwkvFixtures), nameof(RwkvFixtures.Files))]
    public void Throughput_StateSize_PrefixReuse(string file)
    {
        using var backend = RwkvFixtures.Backend("cpu");
        using var model = RwkvFixtures.Load(file, backend);
        var rnd = new Random(1);
        var prompt = Enumerable.Range(0, 512).Select(_ => rnd.Next(32, 127)).ToArray();
        var logits = new float[256];
        model.SequenceChunk = 64;
        using (var warm = model.CreateStateStore()) model.Forward(ForwardBatch.ForSequence(prompt.AsSpan(0, 64), 0), warm, logits, false);

        double Prefill(int[] tokens, RecurrentStateStore store, int start = 0)
        {
            var sw = Stopwatch.StartNew();
            model.Forward(ForwardBatch.ForSequence(tokens.AsSpan(start), start), store, logits, false);
            return sw.Elapsed.TotalSeconds;
        }

        using var s1 = model.CreateStateStore(1, new RecurrentStoreOptions { CheckpointInterval = 64 });
        double prefill = Prefill(prompt, s1);
        var sw = Stopwatch.StartNew();
        const int decode = 128;
        for (int i = 0; i < decode; i++)
            model.Forward(ForwardBatch.ForSequence([prompt[i]], prompt.Length + i), s1, logits, false);
        double decodeS = sw.Elapsed.TotalSeconds;

        // Prefix reuse: a second prompt sharing the first 448 tokens.
        var second = prompt.Take(448).Concat(Enumerable.Range(0, 64).Select(_ => rnd.Next(32, 127))).ToArray();
        using var cold = model.CreateStateStore(1, new RecurrentStoreOptions { CheckpointInterval = 64 });
        double ttftCold = Prefill(second, cold);
        sw.Restart();
        int restored = s1.RestoreLongestPrefix(0, second, second.Length - 1);
        model.Forward(ForwardBatch.ForSequence(second.AsSpan(restored), restored), s1, logits, false);
        double ttftWarm = sw.Elapsed.TotalSeconds;

        var c = model.Config;
        long kvPerToken = 2L * c.LayerCount * c.EmbeddingLength * 4; // K and V rows, float32, kvDim = C (no GQA)
        TestContext.Out.WriteLine(
            $"{file}: prefill {prompt.Length / prefill:F0} tok/s (chunk 64), decode {decode / decodeS:F0} tok/s, " +
            $"state {model.StateBytesPerSequence:N0} B/seq; f32 transformer KV (C={c.EmbeddingLength}, L={c.LayerCount}) " +
            $"1K {kvPerToken * 1024:N0} B, 16K {kvPerToken * 16384:N0} B; TTFT 512-token prompt cold {ttftCold * 1e3:F1} ms, " +
            $"with prefix reuse ({restored} restored) {ttftWarm * 1e3:F1} ms");
    }
}
