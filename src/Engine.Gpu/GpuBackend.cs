// Owns: the op contract (IBackend) on the GPU device for callers that hold host activations: each op uploads its
// inputs, launches the kernel of kernels/ and reads the result back. This is how the kernels are tested one by one
// against the CPU backend (same test body per backend) and how a host-side forward (e.g. one under a KV policy
// decorator) can still run on the GPU. The fast path is the device-resident forward (DeviceTransformer), which
// uses the same kernels without the per-op transfers.
// Invariants: weights are uploaded once per tensor (cached by data address and type) and stay resident until
// Dispose (a cache keyed by address: call EvictWeights after freeing host tensors); every op synchronises (its result is on the host when it returns); attention pages must be F32 or F16
// and cover positions 0..T-1 in order (the contiguous and paged stores do; gapped policy pages are refused).
using ILGPU;
using ILGPU.Runtime;
using Engine.Kernels;
using Engine.Tensors;

namespace Engine.Gpu;

/// <summary>IBackend on a <see cref="GpuDevice"/>.</summary>
public sealed unsafe class GpuBackend : IBackend
{
    private readonly Dictionary<(nint, DType), DeviceWeight> _weights = new();
    private readonly AttentionScratch _attn = new();
    private readonly bool _ownsDevice;

    public GpuBackend(GpuDevice device, bool ownsDevice = true) { Device = device; _ownsDevice = ownsDevice; }

    public GpuDevice Device { get; }
    public string Name => Device.Kind == GpuKind.Cuda ? "gpu" : "gpu-sim";

    /// <summary>Device bytes held by uploaded weights.</summary>
    public long WeightBytes => _weights.Values.Sum(w => w.ByteLength);

    /// <summary>Drops every uploaded weight (the caller freed or changed host tensors the cache is keyed by).</summary>
    public void EvictWeights()
    {
        foreach (var w in _weights.Values) w.Dispose();
        _weights.Clear();
    }

    private DeviceWeight Weight(TensorView w)
    {
        if (!_weights.TryGetValue((w.Data, w.Type), out var dw)) _weights[(w.Data, w.Type)] = dw = DeviceWeight.Upload(Device, w);
        return dw;
    }

    private MemoryBuffer1D<T, Stride1D.Dense> Up<T>(ReadOnlySpan<T> data) where T : unmanaged
    {
        var b = Device.Accelerator.Allocate1D<T>(Math.Max(data.Length, 1));
        if (data.Length > 0) b.View.AsContiguous().SubView(0, data.Length).CopyFromCPU(data);
        return b;
    }

    private static void Down<T>(MemoryBuffer1D<T, Stride1D.Dense> b, Span<T> dst) where T : unmanaged =>
        b.View.AsContiguous().SubView(0, dst.Length).CopyToCPU(dst);

    public void MatMul(ReadOnlySpan<float> x, int n, TensorView w, Span<float> y)
    {
        var dw = Weight(w);
        if (x.Length < n * dw.Cols || y.Length < n * dw.Rows) throw new ArgumentException($"MatMul: x holds {x.Length}, y {y.Length} floats; [{n}, {dw.Cols}] × {w.Name} needs {n * dw.Cols} and {n * dw.Rows}");
        using var dx = Up(x[..(n * dw.Cols)]);
        using var dy = Device.Accelerator.Allocate1D<float>(Math.Max(n * dw.Rows, 1));
        Device.MatMul(dw, dx.View, n, dy.View);
        Down(dy, y[..(n * dw.Rows)]);
    }

    public void GetRows(TensorView table, ReadOnlySpan<int> ids, Span<float> dst)
    {
        var dw = Weight(table);
        foreach (int id in ids) if ((uint)id >= (uint)dw.Rows) throw new ArgumentOutOfRangeException(nameof(ids), $"row {id} outside 0..{dw.Rows - 1}");
        if (ids.Length == 0) return;
        using var di = Up(ids);
        using var dd = Device.Accelerator.Allocate1D<float>(ids.Length * dw.Cols);
        Device.GetRows(dw, di.View, ids.Length, dd.View);
        Down(dd, dst[..(ids.Length * dw.Cols)]);
    }

    public void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> y)
    {
        int dim = weight.Length, rows = x.Length / dim;
        using var dx = Up(x);
        using var dw = Up(weight);
        Device.RmsNorm(dx.View, dw.View, eps, dim, rows, dx.View);
        Down(dx, y[..x.Length]);
    }

    public void Rope(Span<float> x, int headCount, int headDim, ReadOnlySpan<int> positions, RopeParams rope)
    {
        OpChecks.Rope(x.Length, headCount, headDim, positions.Length, rope);
        using var dx = Up<float>(x);
        using var dp = Up(positions);
        using var df = Up<double>(InverseFrequencies(rope));
        Device.Rope(dx.View, positions.Length, headCount, headDim, dp.View, df.View, rope.Dimensions, rope.Style == RopeStyle.Neox);
        Down(dx, x);
    }

    /// <summary>θ_i per position unit: freqScale · base^(−2i/dims) / factor_i, i &lt; dims/2 (computed in double).</summary>
    public static double[] InverseFrequencies(RopeParams rope)
    {
        var f = new double[rope.Dimensions / 2];
        for (int i = 0; i < f.Length; i++)
        {
            double t = rope.FreqScale * Math.Pow(rope.FreqBase, -2.0 * i / rope.Dimensions);
            if (rope.FreqFactors is { } ff) t /= ff[i];
            f[i] = t;
        }
        return f;
    }

    public void Softmax(Span<float> x)
    {
        if (x.IsEmpty) return;
        using var dx = Up<float>(x);
        Device.Softmax(dx.View, x.Length, 1);
        Down(dx, x);
    }

    public void SiluMul(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> dst)
    {
        OpChecks.SameLength(nameof(SiluMul), gate.Length, up.Length, dst.Length);
        if (gate.IsEmpty) return;
        using var dg = Up(gate);
        using var du = Up(up);
        Device.SiluMul(dg.View, du.View, dg.View, gate.Length);
        Down(dg, dst);
    }

    public void Add(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> dst)
    {
        OpChecks.SameLength(nameof(Add), a.Length, b.Length, dst.Length);
        if (a.IsEmpty) return;
        using var da = Up(a);
        using var db = Up(b);
        Device.Add(da.View, db.View, da.View, a.Length, a.Length);
        Down(da, dst);
    }

    public void Attention(ReadOnlySpan<float> q, ReadOnlySpan<int> qPositions, ReadOnlySpan<KvPage> pages, AttentionParams p, Span<float> output)
    {
        int n = qPositions.Length, kvDim = p.KvHeadCount * p.HeadDim, qd = p.HeadCount * p.HeadDim;
        if (n == 0) return;
        int total = 0;
        foreach (var pg in pages)
        {
            if (pg.StartPosition != total) throw new NotSupportedException($"GPU attention needs pages covering positions 0.. in order; a page starts at {pg.StartPosition}, expected {total}");
            if (pg.Type is not (KvElementType.F32 or KvElementType.F16)) throw new NotSupportedException($"GPU attention reads F32/F16 KV pages, not {pg.Type}");
            total += pg.TokenCount;
        }
        int maxPos = 0;
        foreach (int pos in qPositions)
        {
            if (pos >= total) throw new ArgumentException($"query position {pos} has no cached K/V (pages hold {total} tokens)");
            maxPos = Math.Max(maxPos, pos);
        }
        // Stage the pages as one F32 pool of 16-token blocks (identity block table).
        const int bs = 16;
        int blocks = Math.Max(1, (total + bs - 1) / bs);
        var k = new float[(long)blocks * bs * kvDim];
        var v = new float[k.Length];
        int t0 = 0;
        foreach (var pg in pages)
        {
            for (int t = 0; t < pg.TokenCount; t++)
                for (int e = 0; e < kvDim; e++)
                {
                    long src = (long)t * pg.RowStride + e, dst = (long)(t0 + t) * kvDim + e;
                    if (pg.Type == KvElementType.F32) { k[dst] = ((float*)pg.K)[src]; v[dst] = ((float*)pg.V)[src]; }
                    else { k[dst] = (float)BitConverter.UInt16BitsToHalf(((ushort*)pg.K)[src]); v[dst] = (float)BitConverter.UInt16BitsToHalf(((ushort*)pg.V)[src]); }
                }
            t0 += pg.TokenCount;
        }
        using var pool = new DeviceKvPool(Device, 1, kvDim, bs, blocks, f16: false);
        pool.LayerViews(0, out var kf, out var vf, out _, out _);
        kf.SubView(0, k.Length).CopyFromCPU(k);
        vf.SubView(0, v.Length).CopyFromCPU(v);
        var table = new int[blocks];
        for (int i = 0; i < blocks; i++) table[i] = i;
        using var dq = Up(q[..(n * qd)]);
        using var dpos = Up(qPositions);
        using var drow = Up(new int[n]);
        using var dtab = Up<int>(table);
        using var dout = Device.Accelerator.Allocate1D<float>(n * qd);
        Device.Attention(dq.View, n, dpos.View, drow.View, dtab.View, maxPos, pool, 0, p.HeadCount, p.KvHeadCount, p.HeadDim, p.Scale, _attn, dout.View);
        Down(dout, output[..(n * qd)]);
    }

    public void Dispose()
    {
        EvictWeights();
        _attn.Dispose();
        if (_ownsDevice) Device.Dispose();
    }
}
