// Owns: the whole forward of a pre-norm Llama-family decoder (Llama, Qwen2 biases, Qwen3 q/k norms) on the device:
// weights uploaded once in their GGUF types, activations resident in device scratch across the forward, K/V
// written into and read from the device block pool through block tables. Per step the host uploads one small int
// array (tokens, positions, per-row table offsets, block tables, logit rows) and reads back only the requested
// logits rows (or one argmax token per row). Nothing synchronises inside the step; the final read waits.
// Math as TransformerModel (the CPU forward): h = x + Wo·Attn(RoPE(Wq·n1(x)), RoPE(Wk·n1(x)), Wv·n1(x));
// x' = h + Wdown·(silu(Wgate·n2(h)) ⊙ Wup·n2(h)); logits = Wout·norm(x_L). Source: Llama paper / llama2.c run.c.
// Invariants: value head dim = head dim; rows of one sequence appear in increasing position order and every
// position ≤ a row's own has its K/V in the pool by the time attention runs (earlier steps or this step's KvWrite).
using ILGPU;
using ILGPU.Runtime;
using Engine.Kernels;
using Engine.Tensors;

namespace Engine.Gpu;

/// <summary>Shape of a decoder as the device forward needs it.</summary>
public sealed record DeviceModelSpec(int LayerCount, int Dim, int HeadCount, int KvHeadCount, int HeadDim, int FeedForward, int Vocab,
    float RmsEpsilon, RopeParams Rope)
{
    public int QueryDim => HeadCount * HeadDim;
    public int KvDim => KvHeadCount * HeadDim;
}

/// <summary>Host weights of one decoder block (null = absent).</summary>
public sealed record DeviceLayerSource(float[] AttentionNorm, TensorView Query, TensorView Key, TensorView Value, TensorView Output,
    float[]? QueryBias, float[]? KeyBias, float[]? ValueBias, float[]? QueryNorm, float[]? KeyNorm,
    float[] FeedForwardNorm, TensorView Gate, TensorView Up, TensorView Down);

/// <summary>One step's rows: token, position, and where the row's sequence block table starts in <see cref="Tables"/>.</summary>
public sealed record DeviceStep(int[] Tokens, int[] Positions, int[] RowTableOffsets, int[] Tables);

/// <summary>A decoder resident on a <see cref="GpuDevice"/>.</summary>
public sealed class DeviceTransformer : IDisposable
{
    private readonly GpuDevice _d;
    private readonly DeviceModelSpec _s;
    private readonly Dictionary<(nint, DType), DeviceWeight> _byAddress = new();
    private readonly DeviceWeight _embedding, _outputNorm, _output;
    private readonly Layer[] _layers;
    private readonly MemoryBuffer1D<double, Stride1D.Dense> _invFreq;
    private readonly AttentionScratch _attn = new();
    private MemoryBuffer1D<float, Stride1D.Dense>? _x, _xn, _q, _k, _v, _att, _gate, _up, _logits;
    private MemoryBuffer1D<int, Stride1D.Dense>? _ints, _argmax;
    private int _capacity, _logitCapacity;
    private long _intCapacity;

    private sealed record Layer(DeviceWeight AttnNorm, DeviceWeight Q, DeviceWeight K, DeviceWeight V, DeviceWeight O,
        DeviceWeight? QBias, DeviceWeight? KBias, DeviceWeight? VBias, DeviceWeight? QNorm, DeviceWeight? KNorm,
        DeviceWeight FfnNorm, DeviceWeight Gate, DeviceWeight Up, DeviceWeight Down);

    /// <summary>Uploads every weight once; checks first that they fit the device's free memory.</summary>
    public DeviceTransformer(GpuDevice device, DeviceModelSpec spec, TensorView embedding, DeviceLayerSource[] layers, float[] outputNorm, TensorView output)
    {
        _d = device; _s = spec;
        var distinct = new Dictionary<(nint, DType), long> { [(embedding.Data, embedding.Type)] = embedding.RowBytes * embedding.RowCount };
        distinct[(output.Data, output.Type)] = output.RowBytes * output.RowCount;
        long vectors = outputNorm.Length * 4L;
        foreach (var l in layers)
        {
            foreach (var t in new[] { l.Query, l.Key, l.Value, l.Output, l.Gate, l.Up, l.Down })
            {
                if (!DeviceWeight.IsSupported(t.Type))
                    throw new NotSupportedException($"tensor '{t.Name}' has type {t.Type}, which the GPU backend does not read (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K)");
                distinct[(t.Data, t.Type)] = t.RowBytes * t.RowCount;
            }
            vectors += 4L * (l.AttentionNorm.Length + l.FeedForwardNorm.Length + (l.QueryBias?.Length ?? 0) + (l.KeyBias?.Length ?? 0)
                + (l.ValueBias?.Length ?? 0) + (l.QueryNorm?.Length ?? 0) + (l.KeyNorm?.Length ?? 0));
        }
        FileWeightBytes = distinct.Values.Sum() + vectors;
        device.EnsureFree(FileWeightBytes, "the model weights");
        try
        {
            _embedding = Upload(embedding);
            _output = Upload(output);
            _outputNorm = Vec(outputNorm)!;
            _layers = new Layer[layers.Length];
            for (int i = 0; i < layers.Length; i++)
            {
                var l = layers[i];
                _layers[i] = new Layer(Vec(l.AttentionNorm)!, Upload(l.Query), Upload(l.Key), Upload(l.Value), Upload(l.Output),
                    Vec(l.QueryBias), Vec(l.KeyBias), Vec(l.ValueBias), Vec(l.QueryNorm), Vec(l.KeyNorm),
                    Vec(l.FeedForwardNorm)!, Upload(l.Gate), Upload(l.Up), Upload(l.Down));
            }
            var inv = GpuBackend.InverseFrequencies(spec.Rope);
            _invFreq = device.Accelerator.Allocate1D<double>(Math.Max(1, inv.Length));
            _invFreq.View.AsContiguous().SubView(0, inv.Length).CopyFromCPU(inv);
        }
        catch { Dispose(); throw; }
    }

    /// <summary>Device bytes the matrices will take (each distinct tensor once; the small F32 vectors are not counted).</summary>
    public static long EstimateWeightBytes(TensorView embedding, TensorView output, IEnumerable<TensorView> matrices)
    {
        var distinct = new Dictionary<(nint, DType), long> { [(embedding.Data, embedding.Type)] = embedding.RowBytes * embedding.RowCount };
        distinct[(output.Data, output.Type)] = output.RowBytes * output.RowCount;
        foreach (var t in matrices) distinct[(t.Data, t.Type)] = t.RowBytes * t.RowCount;
        return distinct.Values.Sum();
    }

    /// <summary>Bytes of the weights as the file stores them (each distinct tensor once).</summary>
    public long FileWeightBytes { get; }

    /// <summary>Device bytes held by the weights (same layout as the file: no repacking).</summary>
    public long DeviceWeightBytes => _byAddress.Values.Sum(w => w.ByteLength) + _vectors.Sum(w => w.ByteLength);

    public GpuDevice Device => _d;
    public DeviceModelSpec Spec => _s;

    private readonly List<DeviceWeight> _vectors = new();

    private DeviceWeight Upload(TensorView t)
    {
        if (!_byAddress.TryGetValue((t.Data, t.Type), out var w)) _byAddress[(t.Data, t.Type)] = w = DeviceWeight.Upload(_d, t);
        return w;
    }

    private DeviceWeight? Vec(float[]? v)
    {
        if (v == null) return null;
        var w = DeviceWeight.Upload(_d, v);
        _vectors.Add(w);
        return w;
    }

    private void EnsureScratch(int n, int rowsOut, long ints)
    {
        var acc = _d.Accelerator;
        if (n > _capacity)
        {
            foreach (var b in new[] { _x, _xn, _q, _k, _v, _att, _gate, _up }) b?.Dispose();
            _capacity = Math.Max(n, 2 * _capacity);
            int c = _capacity;
            _x = acc.Allocate1D<float>((long)c * _s.Dim);
            _xn = acc.Allocate1D<float>((long)c * _s.Dim);
            _q = acc.Allocate1D<float>((long)c * _s.QueryDim);
            _k = acc.Allocate1D<float>((long)c * _s.KvDim);
            _v = acc.Allocate1D<float>((long)c * _s.KvDim);
            _att = acc.Allocate1D<float>((long)c * _s.QueryDim);
            _gate = acc.Allocate1D<float>((long)c * _s.FeedForward);
            _up = acc.Allocate1D<float>((long)c * _s.FeedForward);
        }
        if (rowsOut > _logitCapacity)
        {
            _logits?.Dispose(); _argmax?.Dispose();
            _logitCapacity = Math.Max(rowsOut, 2 * _logitCapacity);
            _logits = acc.Allocate1D<float>((long)_logitCapacity * _s.Vocab);
            _argmax = acc.Allocate1D<int>(_logitCapacity);
        }
        if (ints > _intCapacity)
        {
            _ints?.Dispose();
            _intCapacity = Math.Max(ints, 2 * _intCapacity);
            _ints = acc.Allocate1D<int>(_intCapacity);
        }
    }

    /// <summary>Runs the step and copies logits rows <paramref name="logitRows"/> to <paramref name="logits"/> ([rows, vocab]).</summary>
    public void Forward(DeviceStep step, DeviceKvPool pool, ReadOnlySpan<int> logitRows, Span<float> logits)
    {
        Run(step, pool, logitRows);
        if (logitRows.Length > 0)
            _logits!.View.AsContiguous().SubView(0, (long)logitRows.Length * _s.Vocab).CopyToCPU(logits[..(logitRows.Length * _s.Vocab)]);
    }

    /// <summary>Runs the step and returns the greedy token for each of <paramref name="logitRows"/>: only those ints cross back.</summary>
    public void ForwardArgmax(DeviceStep step, DeviceKvPool pool, ReadOnlySpan<int> logitRows, Span<int> tokens)
    {
        Run(step, pool, logitRows);
        if (logitRows.Length == 0) return;
        _d.Argmax(_logits!.View, _s.Vocab, logitRows.Length, _argmax!.View);
        _argmax.View.AsContiguous().SubView(0, logitRows.Length).CopyToCPU(tokens[..logitRows.Length]);
    }

    private void Run(DeviceStep step, DeviceKvPool pool, ReadOnlySpan<int> logitRows)
    {
        var s = _s;
        int n = step.Tokens.Length;
        if (n == 0) throw new ArgumentException("empty forward step");
        if (pool.LayerCount != s.LayerCount || pool.KvDim != s.KvDim)
            throw new ArgumentException($"KV pool is [{pool.LayerCount} layers, {pool.KvDim}] but the model needs [{s.LayerCount}, {s.KvDim}]");
        int rowsOut = logitRows.Length;
        foreach (int r in logitRows)
            if ((uint)r >= (uint)n) throw new ArgumentOutOfRangeException(nameof(logitRows), $"logit row {r} is outside the batch (0..{n - 1})");
        // One upload of every int the step needs: [tokens n | positions n | row table offsets n | tables m].
        long ints = 3L * n + step.Tables.Length;
        EnsureScratch(n, Math.Max(1, rowsOut), Math.Max(ints, 1));
        var host = new int[ints];
        step.Tokens.CopyTo(host, 0);
        step.Positions.CopyTo(host, n);
        step.RowTableOffsets.CopyTo(host, 2 * n);
        step.Tables.CopyTo(host, 3 * n);
        var iv = _ints!.View.AsContiguous();
        iv.SubView(0, ints).CopyFromCPU(host);
        var tokens = iv.SubView(0, n);
        var positions = iv.SubView(n, n);
        var rowTable = iv.SubView(2L * n, n);
        var tables = step.Tables.Length > 0 ? iv.SubView(3L * n, step.Tables.Length) : iv.SubView(0, 1);
        int maxPos = 0;
        foreach (int p in step.Positions) maxPos = Math.Max(maxPos, p);

        int dim = s.Dim, qd = s.QueryDim, kd = s.KvDim, ff = s.FeedForward;
        var x = _x!.View.AsContiguous().SubView(0, (long)n * dim);       // [n, dim] residual stream
        var xn = _xn!.View.AsContiguous().SubView(0, (long)n * dim);     // [n, dim] normed rows / projection outputs
        var q = _q!.View.AsContiguous().SubView(0, (long)n * qd);        // [n, heads, headDim]
        var k = _k!.View.AsContiguous().SubView(0, (long)n * kd);        // [n, kvHeads, headDim]
        var v = _v!.View.AsContiguous().SubView(0, (long)n * kd);        // [n, kvHeads, headDim]
        var att = _att!.View.AsContiguous().SubView(0, (long)n * qd);    // [n, heads · headDim]
        var gate = _gate!.View.AsContiguous().SubView(0, (long)n * ff);  // [n, ff]
        var up = _up!.View.AsContiguous().SubView(0, (long)n * ff);      // [n, ff]
        bool neox = s.Rope.Style == RopeStyle.Neox;
        float scale = 1f / MathF.Sqrt(s.HeadDim);

        _d.GetRows(_embedding, tokens, n, x);
        for (int li = 0; li < _layers.Length; li++)
        {
            var w = _layers[li];
            _d.RmsNorm(x, w.AttnNorm.Floats, s.RmsEpsilon, dim, n, xn);
            _d.MatMul(w.Q, xn, n, q);
            _d.MatMul(w.K, xn, n, k);
            _d.MatMul(w.V, xn, n, v);
            if (w.QBias != null) _d.Add(q, w.QBias.Floats, q, (long)n * qd, qd);
            if (w.KBias != null) _d.Add(k, w.KBias.Floats, k, (long)n * kd, kd);
            if (w.VBias != null) _d.Add(v, w.VBias.Floats, v, (long)n * kd, kd);
            if (w.QNorm != null) _d.RmsNorm(q, w.QNorm.Floats, s.RmsEpsilon, s.HeadDim, n * s.HeadCount, q);
            if (w.KNorm != null) _d.RmsNorm(k, w.KNorm.Floats, s.RmsEpsilon, s.HeadDim, n * s.KvHeadCount, k);
            _d.Rope(q, n, s.HeadCount, s.HeadDim, positions, _invFreq.View, s.Rope.Dimensions, neox);
            _d.Rope(k, n, s.KvHeadCount, s.HeadDim, positions, _invFreq.View, s.Rope.Dimensions, neox);
            _d.KvWrite(k, v, n, positions, rowTable, tables, pool, li);
            _d.Attention(q, n, positions, rowTable, tables, maxPos, pool, li, s.HeadCount, s.KvHeadCount, s.HeadDim, scale, _attn, att);
            _d.MatMul(w.O, att, n, xn);
            _d.Add(x, xn, x, (long)n * dim, (int)Math.Min(int.MaxValue, (long)n * dim));

            _d.RmsNorm(x, w.FfnNorm.Floats, s.RmsEpsilon, dim, n, xn);
            _d.MatMul(w.Gate, xn, n, gate);
            _d.MatMul(w.Up, xn, n, up);
            _d.SiluMul(gate, up, gate, (long)n * ff);
            _d.MatMul(w.Down, gate, n, xn);
            _d.Add(x, xn, x, (long)n * dim, (int)Math.Min(int.MaxValue, (long)n * dim));
        }
        if (rowsOut == 0) return;
        // Output head only for the requested rows: gather them (device copies), norm, one matmul.
        for (int i = 0; i < rowsOut; i++)
        {
            int r = logitRows[i];
            x.SubView((long)r * dim, dim).CopyTo(xn.SubView((long)i * dim, dim));
        }
        var rows = xn.SubView(0, (long)rowsOut * dim);
        _d.RmsNorm(rows, _outputNorm.Floats, s.RmsEpsilon, dim, rowsOut, rows);
        _d.MatMul(_output, rows, rowsOut, _logits!.View.AsContiguous().SubView(0, (long)rowsOut * s.Vocab));
    }

    public void Dispose()
    {
        foreach (var w in _byAddress.Values) w.Dispose();
        foreach (var w in _vectors) w.Dispose();
        _byAddress.Clear(); _vectors.Clear();
        foreach (var b in new[] { _x, _xn, _q, _k, _v, _att, _gate, _up, _logits }) b?.Dispose();
        _ints?.Dispose(); _argmax?.Dispose(); _invFreq?.Dispose();
        _attn.Dispose();
    }
}
