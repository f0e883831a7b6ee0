// Owns: the decorator that lets a prompt attend over a persistent memory: Pages(layer, seq) = the top-k memory chunks
// of that layer (routed) followed by the sequence's own pages from the inner store. Model code does not change.
// Routing (MSA, training-free, pooled form): the query proxy of (layer, seq) is the mean of the sequence's cached keys
// in that layer (RoPE applied, [kvDim] = KV heads side by side); score(chunk) = cosine of (proxy − μ) and
// (routingKey(chunk, layer) − μ), μ = the memory's mean routing key in that layer (Centered; raw dot optional), pooled
// over KV heads (one selection per layer, because a KvPage is shared by all heads); the top-k chunks are presented in
// document order.
// Visibility: attention's causal rule is "cached position ≤ query position"; memory chunks carry doc-local RoPE
// positions (already baked into K), so they are presented with negative StartPositions (-T .. -1 over the T selected
// memory tokens): visible to every query at position ≥ 0, with no kernel change.
// Invariants: Write/Length/Truncate/Clear pass through (memory is read-only here); the inner store must present F32
// pages (the proxy reads keys); the persistent memory must outlive this store.
using Engine.Kernels;

namespace Engine.Memory.Documents;

/// <summary>IKvStore decorator adding the routed top-k chunks of a <see cref="PersistentMemory"/> before each sequence's pages.</summary>
public sealed unsafe class MemoryKvStore : IKvStore
{
    private readonly IKvStore _inner;
    private readonly PersistentMemory _memory;
    private readonly bool _ownsInner;
    private KvPage[] _pages = new KvPage[8];
    private readonly float[] _proxy;            // [kvDim]

    public MemoryKvStore(IKvStore inner, PersistentMemory memory, int topK, bool ownsInner = true)
    {
        if (memory.LayerCount != inner.LayerCount || memory.KvDim != inner.KvDim)
            throw new ArgumentException($"memory is [{memory.LayerCount} layers, kvDim {memory.KvDim}] but the KV store is [{inner.LayerCount}, {inner.KvDim}]");
        ArgumentOutOfRangeException.ThrowIfLessThan(topK, 1);
        _inner = inner; _memory = memory; TopK = topK; _ownsInner = ownsInner;
        _ranked = new int[inner.LayerCount, inner.SequenceCapacity][];
        _proxy = new float[inner.KvDim];
        _centered = new (float[], float[])?[inner.LayerCount];
    }

    private readonly int[,][] _ranked;          // [layer, seq] -> all chunk ids by descending score

    public IKvStore Inner => _inner;
    public PersistentMemory Memory => _memory;
    public int TopK { get; }

    /// <summary>Centered routing (default): cosine between the query proxy and each routing key after subtracting the
    /// memory's mean routing key (per layer) from both. False: MSA's raw proxy · routing key (on stories260K the shared
    /// key direction then decides the ranking: the matching story ranks first in 6/20 (story, layer) cases vs 16/20, document-local placement).</summary>
    public bool Centered { get; init; } = true;
    public int LayerCount => _inner.LayerCount;
    public int KvDim => _inner.KvDim;
    public int Capacity => _inner.Capacity;
    public int SequenceCapacity => _inner.SequenceCapacity;

    public void Write(int layer, int seqId, ReadOnlySpan<int> positions, ReadOnlySpan<float> k, ReadOnlySpan<float> v) =>
        _inner.Write(layer, seqId, positions, k, v);

    public int Length(int layer, int seqId) => _inner.Length(layer, seqId);
    public void Truncate(int seqId, int length) => _inner.Truncate(seqId, length);
    public void Clear(int seqId) => _inner.Clear(seqId);

    /// <summary>Every chunk id ranked by routing score (best first) at the last Pages call of (layer, seq).</summary>
    public IReadOnlyList<int> LastRanking(int layer, int seqId) => _ranked[layer, seqId] ?? [];

    public ReadOnlySpan<KvPage> Pages(int layer, int seqId)
    {
        var own = _inner.Pages(layer, seqId);
        int chunks = _memory.ChunkCount;
        if (chunks == 0 || own.Length == 0) return own;
        var ranked = Rank(layer, own);
        _ranked[layer, seqId] = ranked;
        int k = Math.Min(TopK, chunks);
        var chosen = ranked.AsSpan(0, k).ToArray();
        Array.Sort(chosen);                       // document order
        int memTokens = 0;
        foreach (int c in chosen) memTokens += _memory.ChunkTokens(c);
        if (_pages.Length < k + own.Length) _pages = new KvPage[2 * (k + own.Length)];
        int start = -memTokens;
        for (int i = 0; i < k; i++)
        {
            _pages[i] = _memory.ChunkPage(chosen[i], layer, start);
            start += _pages[i].TokenCount;
        }
        own.CopyTo(_pages.AsSpan(k));
        return _pages.AsSpan(0, k + own.Length);
    }

    private int[] Rank(int layer, ReadOnlySpan<KvPage> own)
    {
        var proxy = _proxy.AsSpan();
        proxy.Clear();
        long n = 0;
        foreach (var p in own)
        {
            if (p.Type != KvElementType.F32) throw new NotSupportedException($"memory routing reads F32 keys; the inner store presents {p.Type} pages");
            for (int j = 0; j < p.TokenCount; j++)
            {
                var row = new ReadOnlySpan<float>((float*)p.K + (long)j * p.RowStride, KvDim);
                System.Numerics.Tensors.TensorPrimitives.Add(proxy, row, proxy);
            }
            n += p.TokenCount;
        }
        int chunks = _memory.ChunkCount;
        System.Numerics.Tensors.TensorPrimitives.Divide(proxy, n, proxy);
        var scores = new float[chunks];
        if (Centered)
        {
            // Keys share a large common direction that otherwise decides the ranking: subtract the memory's mean routing
            // key μ (per layer) from both sides and rank by cosine: (q̄ − μ)·(r − μ) / |r − μ| (|q̄ − μ| is a common factor).
            var (mean, unit) = CenteredKeys(layer);
            System.Numerics.Tensors.TensorPrimitives.Subtract(proxy, mean, proxy);
            for (int c = 0; c < chunks; c++) scores[c] = System.Numerics.Tensors.TensorPrimitives.Dot(proxy, unit.AsSpan(c * KvDim, KvDim));
        }
        else
            for (int c = 0; c < chunks; c++) scores[c] = System.Numerics.Tensors.TensorPrimitives.Dot(proxy, _memory.RoutingKey(c, layer));
        var ids = Enumerable.Range(0, chunks).ToArray();
        Array.Sort(ids, (a, b) => scores[b] != scores[a] ? scores[b].CompareTo(scores[a]) : a.CompareTo(b));
        return ids;
    }

    /// <summary>Per layer: μ [kvDim] and the unit vectors (r − μ)/|r − μ| [chunks, kvDim] (zero rows for r = μ), cached
    /// until the memory changes.</summary>
    private (float[] Mean, float[] Unit) CenteredKeys(int layer)
    {
        if (_centeredVersion != _memory.Version || _centered[layer] == null)
        {
            if (_centeredVersion != _memory.Version) Array.Clear(_centered);
            _centeredVersion = _memory.Version;
            int chunks = _memory.ChunkCount;
            var mean = new float[KvDim];
            var unit = new float[chunks * KvDim];
            for (int c = 0; c < chunks; c++) System.Numerics.Tensors.TensorPrimitives.Add(mean, _memory.RoutingKey(c, layer), mean);
            System.Numerics.Tensors.TensorPrimitives.Divide(mean, chunks, mean);
            for (int c = 0; c < chunks; c++)
            {
                var r = unit.AsSpan(c * KvDim, KvDim);
                System.Numerics.Tensors.TensorPrimitives.Subtract(_memory.RoutingKey(c, layer), mean, r);
                float norm = System.Numerics.Tensors.TensorPrimitives.Norm(r);
                if (norm > 0) System.Numerics.Tensors.TensorPrimitives.Divide(r, norm, r); else r.Clear();
            }
            _centered[layer] = (mean, unit);
        }
        return _centered[layer]!.Value;
    }

    private readonly (float[] Mean, float[] Unit)?[] _centered;   // [layer]
    private int _centeredVersion = -1;

    public void Dispose()
    {
        if (_ownsInner) _inner.Dispose();
    }
}
