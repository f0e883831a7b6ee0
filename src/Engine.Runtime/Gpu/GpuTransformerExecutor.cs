// Owns: running a TransformerModel's forward on the GPU device (DeviceTransformer) for whatever IKvStore the runtime
// hands it, by turning the store into block tables for the device KV pool:
//   PagedKvStore bound by the scheduler (the serving loop): the device pool has the store's RAM block count and block
//   size, and block id b is device block b — so prefix caching (shared ids), continuous batching (one batch, many
//   tables), chunked prefill and preemption (ids freed/reused) work unchanged; CopyBlock mirrors copy-on-write.
//   Any other store (single-sequence path: DeviceKvLengths from CreateKvStore, or a contiguous one):
//   the store keeps the lengths (written first, so capacity errors come before any device work) and sequence s owns
//   device blocks s·B .. s·B + B − 1 (B = ceil(capacity / 16)).
// Invariants: the host store never receives K/V rows from here (the bound paged store's host blocks stay untouched);
// the device pool is re-created when the runtime passes a different store; KV is F16 on the device unless F32 asked.
using Engine.Gpu;
using Engine.Memory;
using Engine.Memory.Paged;
using Engine.Model;

namespace Engine.Runtime.Gpu;

/// <summary>The device forward behind <see cref="TransformerModel.Executor"/>.</summary>
public sealed class GpuTransformerExecutor : ITransformerExecutor
{
    private const int PrivateBlockSize = 16;
    private readonly DeviceTransformer _model;
    private readonly ModelConfig _config;
    private DeviceKvPool? _pool;
    private IKvStore? _poolStore;
    private float[] _zeros = [];

    public GpuTransformerExecutor(TransformerModel model, GpuDevice device, bool kvF16 = true)
    {
        var c = model.Config;
        if (c.ValueHeadDim != c.HeadDim) throw new NotSupportedException($"the GPU backend needs value head dim = head dim ({c.ValueHeadDim} vs {c.HeadDim})");
        _config = c; KvF16 = kvF16;
        var w = model.Weights;
        var spec = new DeviceModelSpec(c.LayerCount, c.EmbeddingLength, c.HeadCount, c.KvHeadCount, c.HeadDim, c.FeedForwardLength, c.VocabSize,
            c.RmsEpsilon, new Engine.Kernels.RopeParams(c.RopeStyle, c.RopeDimensions, c.RopeFreqBase, c.RopeFreqScale, w.RopeFreqFactors));
        var layers = w.Layers.Select(l => new DeviceLayerSource(l.AttentionNorm, l.Query, l.Key, l.Value, l.Output, l.QueryBias, l.KeyBias,
            l.ValueBias, l.QueryNorm, l.KeyNorm, l.FeedForwardNorm, l.Gate, l.Up, l.Down)).ToArray();
        _model = new DeviceTransformer(device, spec, w.TokenEmbedding, layers, w.OutputNorm, w.Output);
    }

    public bool KvF16 { get; }
    public GpuDevice Device => _model.Device;
    public DeviceTransformer DeviceModel => _model;

    /// <summary>Device KV bytes per token (K + V, all layers).</summary>
    public long KvBytesPerToken => 2L * _config.LayerCount * _config.KvDim * (KvF16 ? 2 : 4);

    public IKvStore? CreateKvStore(int contextLength, int sequenceCapacity) =>
        new DeviceKvLengths(_config.LayerCount, _config.KvDim, contextLength, sequenceCapacity);

    public void CopyBlock(int source, int destination, int tokens) => _pool?.CopyBlock(source, destination, tokens);

    public void Forward(ForwardBatch batch, IKvStore kv, ReadOnlySpan<int> logitRows, Span<float> logits) =>
        _model.Forward(Prepare(batch, kv, out var pool), pool, logitRows, logits);

    /// <summary>As Forward, but returns one greedy token per logits row (argmax on the device).</summary>
    public void ForwardGreedy(ForwardBatch batch, IKvStore kv, ReadOnlySpan<int> logitRows, Span<int> tokens) =>
        _model.ForwardArgmax(Prepare(batch, kv, out var pool), pool, logitRows, tokens);

    private DeviceStep Prepare(ForwardBatch batch, IKvStore kv, out DeviceKvPool pool)
    {
        int n = batch.Count;
        var offsets = new int[n];
        var tables = new List<int>();
        var seqOffset = new Dictionary<int, int>();
        var paged = kv as PagedKvStore;
        bool bound = paged != null;
        if (!bound) Bookkeep(batch, kv);   // lengths first: capacity / gap errors before any device work
        pool = PoolFor(kv, paged);
        int bs = pool.BlockSize;
        for (int start = 0; start < n;)
        {
            int seq = batch.SequenceIds[start], end = start + 1, maxPos = batch.Positions[start];
            while (end < n && batch.SequenceIds[end] == seq) { maxPos = Math.Max(maxPos, batch.Positions[end]); end++; }
            if (!seqOffset.TryGetValue(seq, out int off))
            {
                off = tables.Count;
                if (paged != null)
                {
                    var t = paged.BlockTable(seq);
                    if ((long)t.Count * bs <= maxPos)
                        throw new InvalidOperationException($"KV position {maxPos} of sequence {seq} is outside its block table ({t.Count} blocks of {bs})");
                    tables.AddRange(t);
                }
                else
                {
                    int per = (kv.Capacity + bs - 1) / bs;
                    for (int b = 0; b < per; b++) tables.Add(seq * per + b);
                }
                seqOffset[seq] = off;
            }
            for (int i = start; i < end; i++) offsets[i] = off;
            start = end;
        }
        return new DeviceStep(batch.Tokens, batch.Positions, offsets, tables.ToArray());
    }

    /// <summary>Records the batch's positions in a store that keeps its own lengths (no K/V bytes for a lengths store).</summary>
    private void Bookkeep(ForwardBatch batch, IKvStore kv)
    {
        int n = batch.Count;
        for (int start = 0; start < n;)
        {
            int seq = batch.SequenceIds[start], end = start + 1;
            while (end < n && batch.SequenceIds[end] == seq) end++;
            var pos = batch.Positions.AsSpan(start, end - start);
            for (int l = 0; l < kv.LayerCount; l++)
            {
                if (kv is DeviceKvLengths d) { d.Advance(l, seq, pos); continue; }
                int need = pos.Length * kv.KvDim;
                if (_zeros.Length < need) _zeros = new float[need];
                kv.Write(l, seq, pos, _zeros.AsSpan(0, need), _zeros.AsSpan(0, need));
            }
            start = end;
        }
    }

    private DeviceKvPool PoolFor(IKvStore kv, PagedKvStore? paged)
    {
        if (_pool != null && ReferenceEquals(_poolStore, kv)) return _pool;
        _pool?.Dispose(); _pool = null;
        if (paged is { DiskBlockCount: > 0 }) throw new NotSupportedException("the KV disk tier is not supported on the GPU backend (its blocks would have to live in device memory)");
        int bs = paged?.BlockSize ?? PrivateBlockSize;
        int blocks = paged?.RamBlockCount ?? checked(kv.SequenceCapacity * ((kv.Capacity + bs - 1) / bs));
        _pool = new DeviceKvPool(_model.Device, _config.LayerCount, _config.KvDim, bs, blocks, KvF16);
        _poolStore = kv;
        return _pool;
    }

    public void Dispose()
    {
        _pool?.Dispose();
        _model.Dispose();
    }
}
