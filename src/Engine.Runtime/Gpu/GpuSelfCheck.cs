// Owns: `engine gpu-check` — every GPU op against the CPU backend by NMSE (llama.cpp test-backend-ops style) and a
// whole-model check (logits and greedy ids, device forward vs CPU forward), runnable where `dotnet test` is not
// (the GPU machine has only the .NET runtime). Full sizes for a real GPU; Small sizes for gpu-sim (the test suite
// runs it so it cannot rot). Bounds as the gpu-sim tests: float ops ≤ 1e-10 NMSE (BF16 and quantized weights
// ≤ 2e-4: the CPU rounds activations as llama.cpp does), whole-model logits max |Δ| ≤ 1e-3 (F32 device KV).
using System.Runtime.InteropServices;
using Engine.Formats;
using Engine.Gpu;
using Engine.Kernels;
using Engine.Memory;
using Engine.Model;
using Engine.Tensors;

namespace Engine.Runtime.Gpu;

/// <summary>GPU-vs-CPU correctness checks; each line says PASS/FAIL with its measure.</summary>
public static unsafe class GpuSelfCheck
{
    /// <summary>Runs every check on <paramref name="gpu"/>; returns the number of failures. <paramref name="model"/>:
    /// a GGUF for the whole-model check (null = skipped).</summary>
    /// <summary>Creates the named GPU backend ("gpu" or "gpu-sim") and runs every check on it (<see cref="Run(GpuBackend, bool, string?, Action{string})"/>).</summary>
    public static int RunOn(string backend, bool small, string? model, Action<string> log)
    {
        if (backend is not ("gpu" or "gpu-sim")) throw new ArgumentException($"--backend must be gpu or gpu-sim, not '{backend}'");
        using var gpu = (GpuBackend)Backends.Create(backend);
        return Run(gpu, small, model, log);
    }

    public static int Run(GpuBackend gpu, bool small, string? model, Action<string> log)
    {
        int fails = 0;
        using var cpu = new CpuBackend(0);
        void Check(string what, double value, double bound)
        {
            bool ok = value <= bound && !double.IsNaN(value);
            if (!ok) fails++;
            log($"{(ok ? "PASS" : "FAIL")} {what}: {value:E2} (bound {bound:E0})");
        }
        var sw = System.Diagnostics.Stopwatch.StartNew();
        log($"device {gpu.Device.Label} ({gpu.Device.Lanes} lanes), {(small ? "small" : "full")} sizes");

        DType[] types = [DType.F32, DType.F16, DType.BF16, DType.Q8_0, DType.Q4_0, DType.Q4_K, DType.Q6_K];
        var shapes = small ? new[] { (9, 256, 1), (5, 512, 3) } : new[] { (4099, 2048, 1), (1027, 4096, 7), (2049, 1024, 64) };
        foreach (var t in types)
            foreach (var (rows, cols, n) in shapes)
            {
                var data = Random(rows * cols, rows + cols);
                var w = Encode(t, data);
                fixed (byte* p = w)
                {
                    var view = new TensorView("w", t, [cols, rows], (nint)p, w.Length);
                    var x = Random(n * cols, n);
                    var y = new float[n * rows];
                    var e = new float[n * rows];
                    gpu.MatMul(x, n, view, y);
                    cpu.MatMul(x, n, view, e);
                    gpu.EvictWeights();
                    Check($"matmul {t} [{n}x{cols}]·[{rows}x{cols}]ᵀ", Nmse(y, e), t is DType.F32 or DType.F16 ? 1e-10 : 2e-4);
                }
            }

        int dim = small ? 67 : 2049, rowsN = small ? 3 : 7;
        {
            var x = Random(rowsN * dim, 1); var wn = Random(dim, 2);
            var y = new float[x.Length]; var e = new float[x.Length];
            gpu.RmsNorm(x, wn, 1e-5f, y); cpu.RmsNorm(x, wn, 1e-5f, e);
            Check($"rmsnorm {rowsN}x{dim}", Nmse(y, e), 1e-10);
            var s = Random(small ? 301 : 128257, 3, 8f); var sc = (float[])s.Clone();
            gpu.Softmax(s); cpu.Softmax(sc);
            Check($"softmax {s.Length}", Nmse(s, sc), 1e-10);
            var a = Random(small ? 333 : 8193 * 3, 4, 4f); var b = Random(a.Length, 5, 4f);
            var o = new float[a.Length]; var oc = new float[a.Length];
            gpu.SiluMul(a, b, o); cpu.SiluMul(a, b, oc);
            Check($"silu-mul {a.Length}", Nmse(o, oc), 1e-10);
            gpu.Add(a, b, o); cpu.Add(a, b, oc);
            Check($"add {a.Length}", Nmse(o, oc), 1e-12);
        }
        foreach (var style in new[] { RopeStyle.Normal, RopeStyle.Neox })
        {
            int heads = small ? 3 : 32, hd = small ? 16 : 128;
            var rope = new RopeParams(style, hd, 500000f, 1f, Enumerable.Range(0, hd / 2).Select(i => 1f + i % 7).ToArray());
            int[] pos = small ? [0, 7, 300] : [0, 1, 4095, 100000, 131071];
            var x = Random(pos.Length * heads * hd, 6); var xc = (float[])x.Clone();
            gpu.Rope(x, heads, hd, pos, rope); cpu.Rope(xc, heads, hd, pos, rope);
            Check($"rope {style} {heads}x{hd} to position {pos[^1]}", Nmse(x, xc), 1e-10);
        }
        foreach (var (heads, kvHeads, hd, total, n) in small
                     ? new[] { (4, 2, 16, 70, 1), (4, 2, 16, 40, 9) }
                     : new[] { (32, 8, 64, 4099, 1), (32, 8, 64, 300, 37), (16, 2, 128, 10000, 3) })
        {
            int kvDim = kvHeads * hd;
            var k = Random(total * kvDim, 7); var v = Random(total * kvDim, 8);
            var q = Random(n * heads * hd, 9);
            var qpos = Enumerable.Range(total - n, n).ToArray();
            var y = new float[q.Length]; var e = new float[q.Length];
            var p = new AttentionParams(heads, kvHeads, hd, 1f / MathF.Sqrt(hd));
            fixed (float* pk = k, pv = v)
            {
                KvPage[] pages = [new((nint)pk, (nint)pv, total, 0, kvDim)];
                gpu.Attention(q, qpos, pages, p, y);
                cpu.Attention(q, qpos, pages, p, e);
            }
            Check($"attention h{heads}/kv{kvHeads}/d{hd} over {total} tokens, {n} rows", Nmse(y, e), 1e-9);
        }
        log($"ops: {sw.Elapsed.TotalSeconds:F1} s");

        if (model != null && File.Exists(model)) fails += ModelCheck(gpu, model, small ? 12 : 64, small ? 8 : 100, Check, log);
        else log($"SKIP whole-model check: {(model == null ? "no model given" : $"{model} not found")}");
        log(fails == 0 ? "gpu-check: all passed" : $"gpu-check: {fails} FAILED");
        return fails;
    }

    private static int ModelCheck(GpuBackend gpu, string path, int tokens, int greedy, Action<string, double, double> check, Action<string> log)
    {
        using var file = ModelFiles.Open(path);
        using var cpuBackend = new CpuBackend(0);
        using var cm = ModelLoader.Load(file, cpuBackend);
        using var gm = (TransformerModel)Backends.LoadModel(file, gpu, gpuKvF32: true);
        var exec = (GpuTransformerExecutor)gm.Executor!;
        int vocab = cm.Config.VocabSize;
        var rng = new Random(11);
        var ids = Enumerable.Range(0, tokens).Select(_ => rng.Next(vocab)).ToArray();
        var a = new float[tokens * vocab]; var b = new float[tokens * vocab];
        using (var kv = gm.CreateKvStore(tokens)) gm.Forward(ForwardBatch.ForSequence(ids, 0), kv, a, allLogits: true);
        using (var kv = cm.CreateKvStore(tokens)) cm.Forward(ForwardBatch.ForSequence(ids, 0), kv, b, allLogits: true);
        double max = 0;
        for (int i = 0; i < a.Length; i++) max = Math.Max(max, Math.Abs(a[i] - b[i]));
        bool quantized = file.Tensors.Any(t => t.Type is not (DType.F32 or DType.F16));
        check($"model {Path.GetFileName(path)}: {tokens} logits rows max |Δ| vs cpu", max, quantized ? 0.5 : 1e-3);

        // Greedy from token 1 on both, device argmax vs host argmax.
        var g = new List<int>(); var c = new List<int>();
        using (var kv = gm.CreateKvStore(greedy + 1))
        {
            var next = new int[] { 1 };
            for (int i = 0; i < greedy; i++) { exec.ForwardGreedy(ForwardBatch.ForSequence(next, i), kv, [0], next); g.Add(next[0]); }
        }
        using (var kv = cm.CreateKvStore(greedy + 1))
        {
            var logits = new float[vocab];
            int tok = 1;
            for (int i = 0; i < greedy; i++)
            {
                cm.Forward(ForwardBatch.ForSequence([tok], i), kv, logits, false);
                tok = 0;
                for (int v = 1; v < vocab; v++) if (logits[v] > logits[tok]) tok = v;
                c.Add(tok);
            }
        }
        int same = 0;
        while (same < g.Count && g[same] == c[same]) same++;
        check($"model {Path.GetFileName(path)}: greedy ids differing from cpu (first {greedy}; equal prefix {same})", greedy - same, quantized ? greedy : 0);
        return 0;
    }

    private static float[] Random(int n, int seed, float scale = 1f)
    {
        var r = new Random(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(r.NextDouble() * 2 - 1) * scale;
        return a;
    }

    private static byte[] Encode(DType t, float[] data) => t switch
    {
        DType.F32 => MemoryMarshal.AsBytes(data.AsSpan()).ToArray(),
        DType.F16 => MemoryMarshal.AsBytes(data.Select(v => (Half)v).ToArray().AsSpan()).ToArray(),
        DType.BF16 => MemoryMarshal.AsBytes(data.Select(v => { uint b = BitConverter.SingleToUInt32Bits(v); return (ushort)((b + 0x7FFF + ((b >> 16) & 1)) >> 16); }).ToArray().AsSpan()).ToArray(),
        _ => Engine.Tensors.Quants.Quantize.Row(t, data),
    };

    private static double Nmse(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double num = 0, den = 0;
        for (int i = 0; i < b.Length; i++) { double d = (double)a[i] - b[i]; num += d * d; den += (double)b[i] * b[i]; }
        return den == 0 ? (num == 0 ? 0 : double.PositiveInfinity) : num / den;
    }
}
