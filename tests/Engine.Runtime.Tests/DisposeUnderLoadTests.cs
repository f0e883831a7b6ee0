// Tests that disposing an engine with requests in flight ends every request and never touches freed memory, on every
// engine configuration (issue 13, finding 6: Paged = false used to crash in CpuBackend.GetRows or leave 15 of 16
// requests pending forever). Each seed starts a burst of requests, disposes the engine after a random delay (0–40 ms,
// a third of the seeds up to 250 ms: before, during and after prefill/decode), and checks: every stream ends within the deadline, either normally or
// with ObjectDisposedException / OperationCanceledException (a few requests are also cancelled at random), and a
// request started after Dispose fails with ObjectDisposedException. A crash (access violation) kills the test host,
// which fails the run.
using Engine.Runtime;
using Engine.Tests.Common;

namespace Engine.Runtime.Tests;

[TestFixture]
public class DisposeUnderLoadTests
{
    private static string Stories => SharedData.Get("reference/stories260K/stories260K.gguf");
    private static string Rwkv => SharedData.Get("models/rwkv/tiny-rwkv-5v2-730K-FP32.bin");

    public static IEnumerable<TestCaseData> Configurations()
    {
        yield return new TestCaseData("paged", new EngineOptions { Threads = 2 });
        yield return new TestCaseData("contiguous", new EngineOptions { Threads = 2, Paged = false });
        yield return new TestCaseData("decorated", new EngineOptions { Threads = 2, KvStoreDecorator = kv => kv });
        yield return new TestCaseData("paged-policy", new EngineOptions { Threads = 2, KvPolicy = "h2o", MaxConcurrentSequences = 8 });
        yield return new TestCaseData("single-policy", new EngineOptions { Threads = 2, KvPolicy = "arkv+quest", Paged = false });
        yield return new TestCaseData("disk-tier", new EngineOptions { Threads = 2, KvBudgetBytes = 64 << 10, KvDiskBytes = 1 << 20 });
        yield return new TestCaseData("rwkv", new EngineOptions { Threads = 2 });
        yield return new TestCaseData("rwkv-single", new EngineOptions { Threads = 2, Paged = false });
    }

    [TestCaseSource(nameof(Configurations))]
    public async Task DisposeAtRandomPointsEndsEveryRequest(string name, EngineOptions options)
    {
        string model = name.StartsWith("rwkv") ? Rwkv : Stories;
        const int seeds = 12, requests = 16;
        int endedByDispose = 0, completed = 0;
        for (int seed = 0; seed < seeds; seed++)
        {
            var rng = new Random(seed * 7919 + name.Length);
            var engine = InferenceEngine.Load(model, options);
            using var cancel = new CancellationTokenSource();
            var streams = new Task<string>[requests];
            for (int i = 0; i < requests; i++)
            {
                var prompt = Enumerable.Range(0, 4 + rng.Next(60)).Select(_ => 1 + rng.Next(engine.Config.VocabSize - 1)).ToArray();
                var o = new GenerationOptions { MaxTokens = 20 + rng.Next(60), Sampling = new() { Temperature = 0 }, StopAtEndOfGeneration = false };
                var ct = rng.Next(4) == 0 ? cancel.Token : CancellationToken.None;
                streams[i] = Drain(engine, prompt, o, ct);
            }
            int delay = rng.Next(3) == 0 ? rng.Next(250) : rng.Next(41);
            if (delay > 0) await Task.Delay(delay);
            if (rng.Next(2) == 0) cancel.Cancel();
            var dispose = Task.Run(engine.Dispose);
            var all = Task.WhenAll(streams.Append(dispose.ContinueWith(_ => "")));
            Assert.That(await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(30))), Is.SameAs(all),
                $"{name}, seed {seed}: a request or Dispose still pending 30 s after Dispose (delay {delay} ms)");
            await dispose;   // Dispose itself must not throw
            foreach (var s in streams)
            {
                string outcome = await s;
                Assert.That(outcome, Is.AnyOf("done", "disposed", "cancelled"), $"{name}, seed {seed}");
                if (outcome == "disposed") endedByDispose++;
                if (outcome == "done") completed++;
            }
            var late = Assert.ThrowsAsync<ObjectDisposedException>(async () => await Drain(engine, [1, 2, 3], new GenerationOptions(), default, rethrow: true));
            Assert.That(late, Is.Not.Null);
            engine.Dispose();   // twice is harmless
        }
        TestContext.Out.WriteLine($"{name}: {seeds * requests} requests, {completed} completed, {endedByDispose} ended by Dispose");
        Assert.That(endedByDispose, Is.GreaterThan(0), "no request was in flight at Dispose: the test did not test anything");
    }

    /// <summary>Reads a stream to its end; returns how it ended ("done", "disposed", "cancelled").</summary>
    private static async Task<string> Drain(InferenceEngine engine, int[] prompt, GenerationOptions o, CancellationToken ct, bool rethrow = false)
    {
        await Task.Yield();
        try
        {
            await foreach (var _ in engine.GenerateAsync(prompt, o, ct)) { }
            return "done";
        }
        catch (ObjectDisposedException) when (!rethrow) { return "disposed"; }
        catch (OperationCanceledException) when (!rethrow) { return "cancelled"; }
    }
}
