// Owns: the device-level ops — each launches one kernel of kernels/ on ArrayViews already on the device, with the
// launch shape for this device's lane mode. These are what the device forward and GpuBackend call.
// Invariants: no op synchronises; views are sized by the caller (shapes in each op's comment); rows/units with no
// work are skipped by the kernels themselves (grids round up).
using ILGPU;
using ILGPU.Runtime;
using Engine.Gpu.Kernels;

namespace Engine.Gpu;

public sealed partial class GpuDevice
{
    /// <summary>Split length of attention's flash-decoding pass on CUDA (tokens per lane group).</summary>
    public int AttentionSplitTokens { get; set; } = 256;

    private Action<KernelConfig, ArrayView<byte>, ArrayView<float>, ArrayView<float>, MatMulArgs> _matMul = null!;
    private Action<Index1D, ArrayView<byte>, ArrayView<int>, ArrayView<float>, int, int, long> _getRows = null!;
    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, float> _rmsNorm = null!;
    private Action<Index1D, ArrayView<float>, ArrayView<int>, ArrayView<double>, int, int, int, int> _rope = null!;
    private Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>> _siluMul = null!;
    private Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> _add = null!;
    private Action<KernelConfig, ArrayView<float>, int, int> _softmax = null!;
    private Action<KernelConfig, ArrayView<float>, ArrayView<int>, int, int> _argmax = null!;
    private Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<int>,
        ArrayView<float>, ArrayView<float>, ArrayView<ushort>, ArrayView<ushort>, KvLayout> _kvWrite = null!;
    private Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<float>,
        ArrayView<ushort>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, AttentionArgs> _attnPartial = null!;
    private Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionArgs> _attnCombine = null!;

    private void LoadKernels()
    {
        var a = Accelerator;
        _matMul = a.LoadStreamKernel<ArrayView<byte>, ArrayView<float>, ArrayView<float>, MatMulArgs>(MatMulKernel.Run);
        _getRows = a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<byte>, ArrayView<int>, ArrayView<float>, int, int, long>(GetRowsKernel.Run);
        _rmsNorm = a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, float>(RmsNormKernel.Run);
        _rope = a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<int>, ArrayView<double>, int, int, int, int>(RopeKernel.Run);
        _siluMul = a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>>(SiluMulKernel.Run);
        _add = a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(AddKernel.Run);
        _softmax = a.LoadStreamKernel<ArrayView<float>, int, int>(SoftmaxKernel.Run);
        _argmax = a.LoadStreamKernel<ArrayView<float>, ArrayView<int>, int, int>(ArgmaxKernel.Run);
        _kvWrite = a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<int>,
            ArrayView<float>, ArrayView<float>, ArrayView<ushort>, ArrayView<ushort>, KvLayout>(KvWriteKernel.Run);
        _attnPartial = a.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<float>,
            ArrayView<ushort>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, AttentionArgs>(PagedAttentionKernel.Partial);
        _attnCombine = a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionArgs>(PagedAttentionKernel.Combine);
    }

    /// <summary>Launch shape for <paramref name="units"/> lane groups.</summary>
    private KernelConfig Units(long units)
    {
        int perGroup = Kind == GpuKind.Cuda ? 4 : 1;                      // lane groups per ILGPU group
        int groupSize = Lanes == LaneMode.Warp ? 32 * perGroup : 1;
        if (Lanes == LaneMode.Single) perGroup = 1;
        long groups = (units + perGroup - 1) / perGroup;
        return new KernelConfig(checked((int)Math.Max(1, groups)), groupSize);
    }

    /// <summary>y[t, r] = Σ_c x[t, c] · W[r, c]. x: [n, cols], y: [n, rows].</summary>
    public void MatMul(DeviceWeight w, ArrayView<float> x, int n, ArrayView<float> y)
    {
        var args = new MatMulArgs { Type = (int)w.Type, Rows = w.Rows, Cols = w.Cols, N = n, RowBytes = w.RowBytes };
        long units = (long)w.Rows * ((n + MatMulKernel.TokenTile - 1) / MatMulKernel.TokenTile);
        _matMul(Units(units), w.View, x, y, args);
    }

    /// <summary>dst[i, :] = row ids[i] of the table. ids: [count], dst: [count, table.Cols].</summary>
    public void GetRows(DeviceWeight table, ArrayView<int> ids, int count, ArrayView<float> dst) =>
        _getRows(count * table.Cols, table.View, ids, dst, (int)table.Type, table.Cols, table.RowBytes);

    /// <summary>RMSNorm over rows of length dim. x, y: [rows, dim]; may alias.</summary>
    public void RmsNorm(ArrayView<float> x, ArrayView<float> weight, float eps, int dim, int rows, ArrayView<float> y) =>
        _rmsNorm(Units(rows), x, weight, y, dim, rows, eps);

    /// <summary>RoPE in place. x: [rows, heads, headDim]; positions: [rows]; invFreq: [dims / 2].</summary>
    public void Rope(ArrayView<float> x, int rows, int heads, int headDim, ArrayView<int> positions, ArrayView<double> invFreq, int dims, bool neox) =>
        _rope(rows * heads * (dims / 2), x, positions, invFreq, heads, headDim, dims, neox ? 1 : 0);

    /// <summary>dst = silu(gate) · up over count elements.</summary>
    public void SiluMul(ArrayView<float> gate, ArrayView<float> up, ArrayView<float> dst, long count) => _siluMul((int)count, gate, up, dst);

    /// <summary>dst = a + b over count elements, b repeated every bLength elements (bLength = count: plain add).</summary>
    public void Add(ArrayView<float> a, ArrayView<float> b, ArrayView<float> dst, long count, int bLength) => _add((int)count, a, b, dst, bLength);

    /// <summary>In-place softmax over rows of length len.</summary>
    public void Softmax(ArrayView<float> x, int len, int rows) => _softmax(Units(rows), x, len, rows);

    /// <summary>result[r] = argmax of logits row r. logits: [rows, len].</summary>
    public void Argmax(ArrayView<float> logits, int len, int rows, ArrayView<int> result) => _argmax(Units(rows), logits, result, len, rows);

    /// <summary>Stores k, v ([rows, kvDim]) into one layer of the pool at the rows' positions through the block tables.</summary>
    public void KvWrite(ArrayView<float> k, ArrayView<float> v, int rows, ArrayView<int> positions, ArrayView<int> rowTable, ArrayView<int> tables,
        DeviceKvPool pool, int layer)
    {
        var lay = new KvLayout { BlockSize = pool.BlockSize, KvDim = pool.KvDim, F16 = pool.F16 ? 1 : 0 };
        pool.LayerViews(layer, out var kf, out var vf, out var kh, out var vh);
        _kvWrite(rows * pool.KvDim, k, v, positions, rowTable, tables, kf, vf, kh, vh, lay);
    }

    /// <summary>Causal GQA attention for rows q ([rows, heads · headDim]) over one pool layer; output like q.
    /// maxPosition bounds every row's position (sizes the context split); scratch is grown as needed.</summary>
    public void Attention(ArrayView<float> q, int rows, ArrayView<int> positions, ArrayView<int> rowTable, ArrayView<int> tables, int maxPosition,
        DeviceKvPool pool, int layer, int heads, int kvHeads, int headDim, float scale, AttentionScratch scratch, ArrayView<float> output)
    {
        int split = Math.Max(AttentionSplitTokens, (maxPosition + 1 + 63) / 64);   // at most 64 splits per row
        int splits = (maxPosition + 1 + split - 1) / split;
        var args = new AttentionArgs
        {
            Rows = rows, Heads = heads, KvHeads = kvHeads, HeadDim = headDim, BlockSize = pool.BlockSize, KvDim = pool.KvDim,
            Splits = splits, SplitTokens = split, F16 = pool.F16 ? 1 : 0, Scale = scale,
        };
        long units = (long)rows * heads * splits;
        scratch.Ensure(this, units * headDim, units * 2);
        pool.LayerViews(layer, out var kf, out var vf, out var kh, out var vh);
        _attnPartial(Units(units), q, positions, rowTable, tables, kf, vf, kh, vh, scratch.Acc, scratch.Ml, args);
        _attnCombine(rows * heads * headDim, scratch.Acc, scratch.Ml, output, args);
    }
}

/// <summary>Attention's split scratch (grown, never shrunk): acc [units, headDim], ml [units, 2].</summary>
public sealed class AttentionScratch : IDisposable
{
    private MemoryBuffer1D<float, Stride1D.Dense>? _acc, _ml;

    public ArrayView<float> Acc => _acc!.View;
    public ArrayView<float> Ml => _ml!.View;

    internal void Ensure(GpuDevice d, long accFloats, long mlFloats)
    {
        if (_acc == null || _acc.Length < accFloats) { _acc?.Dispose(); _acc = d.Accelerator.Allocate1D<float>(Math.Max(accFloats, 1)); }
        if (_ml == null || _ml.Length < mlFloats) { _ml?.Dispose(); _ml = d.Accelerator.Allocate1D<float>(Math.Max(mlFloats, 1)); }
    }

    public void Dispose() { _acc?.Dispose(); _ml?.Dispose(); }
}
