// Owns: the KV block pool in device memory — per layer, K and V laid out [blockCount, blockSize, kvDim], F16 (the
// device default: half the bytes) or F32. Block ids are the host's: the paged store / scheduler's block id b is
// device block b, so a block table is shipped to the device as plain ints and read by the kernels.
// Invariants: one allocation per K and V ([layers, blocks, bs, kvDim]); contents of a block are only meaningful for
// slots written through KvWrite; CopyBlock mirrors the host store's copy-on-write.
// Source: vLLM PagedAttention block layout.
using ILGPU;
using ILGPU.Runtime;

namespace Engine.Gpu;

/// <summary>Device KV blocks for every layer.</summary>
public sealed class DeviceKvPool : IDisposable
{
    private readonly MemoryBuffer1D<float, Stride1D.Dense>? _kf, _vf;
    private readonly MemoryBuffer1D<ushort, Stride1D.Dense>? _kh, _vh;
    private readonly MemoryBuffer1D<float, Stride1D.Dense>? _dummyF;
    private readonly MemoryBuffer1D<ushort, Stride1D.Dense>? _dummyH;

    public DeviceKvPool(GpuDevice device, int layerCount, int kvDim, int blockSize, int blockCount, bool f16)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blockCount, 1);
        LayerCount = layerCount; KvDim = kvDim; BlockSize = blockSize; BlockCount = blockCount; F16 = f16;
        long perLayer = (long)blockCount * blockSize * kvDim;
        device.EnsureFree(TotalBytes, $"the KV cache ({blockCount} blocks of {blockSize} tokens, {(f16 ? "F16" : "F32")})");
        var acc = device.Accelerator;
        if (f16)
        {
            _kh = acc.Allocate1D<ushort>(perLayer * layerCount);
            _vh = acc.Allocate1D<ushort>(perLayer * layerCount);
            _dummyF = acc.Allocate1D<float>(1);
        }
        else
        {
            _kf = acc.Allocate1D<float>(perLayer * layerCount);
            _vf = acc.Allocate1D<float>(perLayer * layerCount);
            _dummyH = acc.Allocate1D<ushort>(1);
        }
        _kf?.MemSetToZero(); _vf?.MemSetToZero(); _kh?.MemSetToZero(); _vh?.MemSetToZero();   // never read stale bytes as NaN
    }

    public int LayerCount { get; }
    public int KvDim { get; }
    public int BlockSize { get; }
    public int BlockCount { get; }
    public bool F16 { get; }

    /// <summary>Bytes of K and V for all layers and blocks.</summary>
    public long TotalBytes => BytesFor(LayerCount, KvDim, BlockSize, BlockCount, F16);

    public static long BytesFor(int layers, int kvDim, int blockSize, int blocks, bool f16) => 2L * layers * blocks * blockSize * kvDim * (f16 ? 2 : 4);

    /// <summary>The layer's K/V views; the views of the other element type are 1-element placeholders.</summary>
    public void LayerViews(int layer, out ArrayView<float> kf, out ArrayView<float> vf, out ArrayView<ushort> kh, out ArrayView<ushort> vh)
    {
        long perLayer = (long)BlockCount * BlockSize * KvDim, o = perLayer * layer;
        if (F16)
        {
            kh = _kh!.View.AsContiguous().SubView(o, perLayer); vh = _vh!.View.AsContiguous().SubView(o, perLayer);
            kf = _dummyF!.View; vf = _dummyF.View;
        }
        else
        {
            kf = _kf!.View.AsContiguous().SubView(o, perLayer); vf = _vf!.View.AsContiguous().SubView(o, perLayer);
            kh = _dummyH!.View; vh = _dummyH.View;
        }
    }

    /// <summary>Copies the first <paramref name="tokens"/> slots of block source into destination, every layer.</summary>
    public void CopyBlock(int source, int destination, int tokens)
    {
        long n = (long)tokens * KvDim, bs = (long)BlockSize * KvDim, perLayer = (long)BlockCount * bs;
        for (int l = 0; l < LayerCount; l++)
        {
            long s = l * perLayer + source * bs, d = l * perLayer + destination * bs;
            if (F16)
            {
                _kh!.View.AsContiguous().SubView(s, n).CopyTo(_kh.View.AsContiguous().SubView(d, n));
                _vh!.View.AsContiguous().SubView(s, n).CopyTo(_vh.View.AsContiguous().SubView(d, n));
            }
            else
            {
                _kf!.View.AsContiguous().SubView(s, n).CopyTo(_kf.View.AsContiguous().SubView(d, n));
                _vf!.View.AsContiguous().SubView(s, n).CopyTo(_vf.View.AsContiguous().SubView(d, n));
            }
        }
    }

    public void Dispose()
    {
        _kf?.Dispose(); _vf?.Dispose(); _kh?.Dispose(); _vh?.Dispose(); _dummyF?.Dispose(); _dummyH?.Dispose();
    }
}
