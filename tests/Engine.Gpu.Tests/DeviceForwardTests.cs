// Owns: the whole forward on the device (gpu-sim, one-lane mode) against the shared fixtures and the CPU backend:
//  - llama-256x2, every weight type, and qwen2-256x2 (NEOX RoPE, biases): the first tokens of seq128 (14 as one prefill batch, then 4 decode steps), F32
//    device KV, against the float64 numpy logits (.ref-np-f64) under the README's exact-path rule (max |Δ| ≤ 1e-3:
//    the GPU dequantizes exactly and keeps float activations) and against the CPU backend (≤ 2 × the README main
//    table's max |Δ|, floor 1e-4: the CPU rounds activations as llama.cpp does); F16 device KV (the default) within
//    1e-2 of the reference on F32 weights;
//  - stories260K: greedy ids from the device argmax equal llama.cpp's reference ids and the CPU engine's.
// Short sequences keep the CPU accelerator's time in seconds (positions are causal: row t depends only on 0..t).
using System.Text.Json;
using Engine.Formats;
using Engine.Kernels;
using Engine.Memory;
using Engine.Model;
using Engine.Runtime;
using Engine.Runtime.Gpu;
using Engine.Runtime.Tests;

namespace Engine.Gpu.Tests;

[TestFixture]
public sealed class DeviceForwardTests
{
    private const int Prefill = 14, Decode = 4;   // 18 positions: crosses a 16-token KV block

    // fixture, README main-table max abs Δ (llama.cpp vs float64 numpy)
    private static readonly (string Type, double RefMax)[] Types =
    [
        ("F32", 6.79e-06), ("F16", 4.19e-03), ("BF16", 3.47e-02), ("Q8_0", 1.28e-01), ("Q4_0", 1.23e-01),
        ("Q4_K", 1.80e-01), ("Q6_K", 1.79e-01), ("Q4_K_M", 1.74e-01),
    ];

    public static IEnumerable<TestCaseData> Cases() =>
        Types.Select(t => new TestCaseData($"reference/llama-256x2/rand-llama-{t.Type}", t.RefMax).SetName($"Device_llama256x2_{t.Type}"))
            .Append(new TestCaseData("reference/qwen2-256x2/rand-qwen2-F32", 4.41e-06).SetName("Device_qwen2_256x2_F32"));   // NEOX RoPE, q/k/v biases

    private static (TransformerModel Model, GpuBackend Backend) LoadGpu(ModelFile file, bool kvF32)
    {
        var be = GpuCases.Backend(LaneMode.Single);
        var m = (TransformerModel)Backends.LoadModel(file, be, gpuKvF32: kvF32);
        Assert.That(m.Executor, Is.InstanceOf<GpuTransformerExecutor>(), "the GPU backend runs the device forward");
        return (m, be);
    }

    /// <summary>Prefill as one batch, then one token per forward; all logits rows [n, vocab].</summary>
    private static float[] Run(ILanguageModel m, int[] tokens, int prefill)
    {
        int vocab = m.Config.VocabSize;
        using var kv = m.CreateKvStore(64);
        var logits = new float[tokens.Length * vocab];
        m.Forward(ForwardBatch.ForSequence(tokens.AsSpan(0, prefill), 0), kv, logits.AsSpan(0, prefill * vocab), allLogits: true);
        for (int t = prefill; t < tokens.Length; t++)
            m.Forward(ForwardBatch.ForSequence(tokens.AsSpan(t, 1), t), kv, logits.AsSpan(t * vocab, vocab), allLogits: false);
        return logits;
    }

    [TestCaseSource(nameof(Cases))]
    public void LogitsMatchReferenceAndCpu(string stem, double refMax)
    {
        string type = Path.GetFileName(stem);
        var tokens = Fixtures.Seq128()[..(Prefill + Decode)];
        int vocab = Fixtures.Vocab, rows = tokens.Length;
        var reference = Fixtures.ReadLogits(stem + ".ref-np-f64.logits.f32")[..(rows * vocab)];
        using var file = ModelFiles.Open(SharedData.Get(stem + ".gguf"));
        var (gm, gb) = LoadGpu(file, kvF32: true);
        float[] gpu;
        using (gb) using (gm) gpu = Run(gm, tokens, Prefill);
        float[] cpu;
        using (var cb = new CpuBackend(2)) using (var cm = ModelLoader.Load(file, cb)) cpu = Run(cm, tokens, Prefill);

        var vsRef = Fixtures.Compare(reference, gpu, vocab, marginThreshold: 1e-2);
        var vsCpu = Fixtures.Compare(cpu, gpu, vocab, marginThreshold: 0.1);
        TestContext.Out.WriteLine($"{type}: gpu-sim vs f64 reference: {vsRef}; vs cpu: {vsCpu}");
        Assert.Multiple(() =>
        {
            Assert.That(vsRef.MaxAbs, Is.LessThanOrEqualTo(1e-3), "exact path vs float64 reference: " + vsRef);
            Assert.That(vsRef.MarginAgree, Is.EqualTo(vsRef.MarginPositions), "top-1 where the reference margin > 1e-2: " + vsRef);
            Assert.That(vsCpu.MaxAbs, Is.LessThanOrEqualTo(Math.Max(1e-4, 2 * refMax)), "vs CPU backend: " + vsCpu);
        });
    }

    [Test]
    public void F16DeviceKv_StaysCloseToReference()
    {
        const string stem = "reference/llama-256x2/rand-llama-F32";
        var tokens = Fixtures.Seq128()[..(Prefill + Decode)];
        var reference = Fixtures.ReadLogits(stem + ".ref-np-f64.logits.f32")[..(tokens.Length * Fixtures.Vocab)];
        using var file = ModelFiles.Open(SharedData.Get(stem + ".gguf"));
        var (gm, gb) = LoadGpu(file, kvF32: false);
        float[] gpu;
        using (gb) using (gm) gpu = Run(gm, tokens, Prefill);
        var c = Fixtures.Compare(reference, gpu, Fixtures.Vocab, marginThreshold: 0.1);
        TestContext.Out.WriteLine($"F16 KV: {c}");
        Assert.That(c.MaxAbs, Is.LessThanOrEqualTo(1e-2), c.ToString());
        Assert.That(c.MaxAbs, Is.GreaterThan(0), "F16 rounding of K/V is visible (the F16 pool is in use)");
    }

    [Test]
    public void Stories260K_GreedyOnDevice_EqualsReferenceAndCpu()
    {
        const int steps = 40;
        using var doc = JsonDocument.Parse(File.ReadAllText(SharedData.Get("reference/stories260K/stories260K.greedy.json")));
        var g = doc.RootElement.GetProperty("generations")[1];   // "Once upon a time"
        int[] prompt = g.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        int[] expected = g.GetProperty("generated_ids").EnumerateArray().Select(e => e.GetInt32()).Take(steps).ToArray();

        using var file = ModelFiles.Open(SharedData.Get("reference/stories260K/stories260K.gguf"));
        var (gm, gb) = LoadGpu(file, kvF32: false);   // device defaults: F16 KV
        var ids = new List<int>();
        using (gb) using (gm)
        {
            var exec = (GpuTransformerExecutor)gm.Executor!;
            using var kv = gm.CreateKvStore(prompt.Length + steps);
            var next = new int[1];
            exec.ForwardGreedy(ForwardBatch.ForSequence(prompt, 0), kv, [prompt.Length - 1], next);
            ids.Add(next[0]);
            for (int i = 1; i < steps; i++)
            {
                exec.ForwardGreedy(ForwardBatch.ForSequence([next[0]], prompt.Length + i - 1), kv, [0], next);
                ids.Add(next[0]);
            }
        }
        // The CPU engine, same steps.
        var cpuIds = new List<int>();
        using (var cb = new CpuBackend(2)) using (var cm = ModelLoader.Load(file, cb))
        {
            using var kv = cm.CreateKvStore(prompt.Length + steps);
            var logits = new float[cm.Config.VocabSize];
            cm.Forward(ForwardBatch.ForSequence(prompt, 0), kv, logits, false);
            for (int i = 0; i < steps; i++)
            {
                int best = 0;
                for (int v = 1; v < logits.Length; v++) if (logits[v] > logits[best]) best = v;
                cpuIds.Add(best);
                if (i + 1 < steps) cm.Forward(ForwardBatch.ForSequence([best], prompt.Length + i), kv, logits, false);
            }
        }
        Assert.That(ids, Is.EqualTo(expected), "device greedy vs llama.cpp reference ids");
        Assert.That(ids, Is.EqualTo(cpuIds), "device greedy vs the CPU backend");
    }
}
