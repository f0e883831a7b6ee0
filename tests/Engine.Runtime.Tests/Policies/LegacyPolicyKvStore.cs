// Owns: a frozen copy of PolicyKvStore as it was before it owned its storage (commit 05e2119) — the reference semantics
// for PolicyEquivalenceTests: every row stays in the float32 inner store and only the page presentation applies the
// policy. Do not "fix" it: the new store must present the same tokens with the same values.
// (Original header: writes go to the inner store; Pages() runs the retention plan and presents only kept tokens, as
// slices of the inner pages (Full) or of quantized copies (Int8 per token, Int4 KIVI groups); Attend() applies quest/msa
// selection and feeds attention mass back to heavy-hitter policies.)
using System.Runtime.InteropServices;
using Engine.Kernels;
using Engine.Memory;
using Engine.Memory.Policies;

namespace Engine.Runtime.Tests.Policies;

public sealed unsafe class LegacyPolicyKvStore : IKvStore
{
    private readonly IKvStore _inner;
    private readonly State?[,] _state;          // [layer, seq]
    private readonly List<KvPage> _pages = [];  // pages of the last Pages() call
    private KvPage[] _pageArray = new KvPage[16];
    private int _pageCount;
    private int _lastLayer = -1, _lastSeq = -1;
    private float[] _massBuf = [];
    private bool _disposed;

    public LegacyPolicyKvStore(IKvStore inner, KvPolicySpec spec)
    {
        ArgumentNullException.ThrowIfNull(inner); ArgumentNullException.ThrowIfNull(spec);
        spec.Validate(inner.KvDim);
        _inner = inner; Spec = spec;
        _state = new State?[inner.LayerCount, inner.SequenceCapacity];
    }

    public KvPolicySpec Spec { get; }
    public IKvStore Inner => _inner;
    public int LayerCount => _inner.LayerCount;
    public int KvDim => _inner.KvDim;
    public int Capacity => _inner.Capacity;
    public int SequenceCapacity => _inner.SequenceCapacity;
    public int Length(int layer, int seqId) => _inner.Length(layer, seqId);

    /// <summary>Tokens attention read in the last Attend call (after selection).</summary>
    public long LastReadTokens { get; private set; }

    private int G => Spec.BlockSize;

    public void Write(int layer, int seqId, ReadOnlySpan<int> positions, ReadOnlySpan<float> k, ReadOnlySpan<float> v)
    {
        _inner.Write(layer, seqId, positions, k, v);
        var st = _state[layer, seqId] ??= new State(Capacity, KvDim, G);
        int first = int.MaxValue;
        foreach (int p in positions) first = Math.Min(first, p);
        st.NewFrom = Math.Min(first, _inner.Length(layer, seqId));
        for (int i = 0; i < positions.Length; i++)
        {
            int p = positions[i];
            st.Tiers[p] = KvTier.Full; st.Mass[p] = 0; st.Snap[p] = 0;
            var row = k.Slice(i * KvDim, KvDim);
            int b = p / G;
            var mn = st.BlockMin.AsSpan(b * KvDim, KvDim); var mx = st.BlockMax.AsSpan(b * KvDim, KvDim); var sm = st.BlockSum.AsSpan(b * KvDim, KvDim);
            if (p % G == 0) { row.CopyTo(mn); row.CopyTo(mx); row.CopyTo(sm); }
            else for (int c = 0; c < KvDim; c++) { mn[c] = MathF.Min(mn[c], row[c]); mx[c] = MathF.Max(mx[c], row[c]); sm[c] += row[c]; }
        }
    }

    public ReadOnlySpan<KvPage> Pages(int layer, int seqId)
    {
        var inner = _inner.Pages(layer, seqId);
        int len = _inner.Length(layer, seqId);
        _lastLayer = layer; _lastSeq = seqId;
        var st = _state[layer, seqId];
        if (st == null || len == 0) { _pageCount = 0; return ReadOnlySpan<KvPage>.Empty; }
        foreach (var pg in inner)
            if (pg.Type != KvElementType.F32) throw new NotSupportedException("PolicyKvStore needs a float32 inner store");
        if (Spec.Retention == RetentionKind.Full)
        {
            // fast path: nothing is evicted or quantized — present the inner pages as they are (O(pages), not O(tokens))
            _pageCount = 0;
            foreach (var pg in inner) Add(pg);
            return new ReadOnlySpan<KvPage>(_pageArray, 0, _pageCount);
        }
        Retain(st, inner, len);
        BuildPages(st, inner, len);
        return new ReadOnlySpan<KvPage>(_pageArray, 0, _pageCount);
    }

    /// <summary>Runs the retention plan of the spec over positions [0, len) and materializes new quantized tokens.</summary>
    private void Retain(State st, ReadOnlySpan<KvPage> inner, int len)
    {
        // Tokens written by the current call are always presented (the queries of this call may need them); the plan
        // covers the older prefix with what the budget leaves: eviction happens after the step that wrote a token, so a
        // prompt is compressed once its prefill is done (SnapKV's timing) and decode keeps exactly the budget.
        int fresh = len - Math.Min(st.NewFrom, len);
        var tiers = st.Tiers.AsSpan(0, len - fresh);
        int budget = Math.Max(0, Planners.TokenBudget(Spec.Budget, len) - fresh);
        switch (Spec.Retention)
        {
            case RetentionKind.Full: break;
            case RetentionKind.Sinks: Planners.Sinks(tiers, budget, Spec.SinkTokens); break;
            case RetentionKind.H2O: Planners.HeavyHitters(tiers, st.Mass.AsSpan(0, tiers.Length), budget); break;
            case RetentionKind.SnapKV:
            {
                var pooled = new float[tiers.Length];
                Planners.MaxPool(st.Snap.AsSpan(0, tiers.Length), Spec.SnapPool, pooled);
                Planners.HeavyHitters(tiers, pooled, budget);
                break;
            }
            case RetentionKind.Arkv:
            {
                double cost = KvDecode.BytesPerToken(KvElementType.Int8, KvDim, G) / KvDecode.BytesPerToken(KvElementType.F32, KvDim, G);
                Planners.Arkv(tiers, st.Mass.AsSpan(0, tiers.Length), budget, st.FullShare, cost);
                break;
            }
            case RetentionKind.Int8:
                tiers = st.Tiers.AsSpan(0, len);
                for (int i = 0; i < len - Spec.RecentFullPrecision; i++) if (tiers[i] == KvTier.Full) tiers[i] = KvTier.Int8;
                break;
            case RetentionKind.Kivi4:
            {
                tiers = st.Tiers.AsSpan(0, len);
                int groups = Math.Max(0, len - Spec.RecentFullPrecision) / G;     // complete groups older than the residual window
                for (int g = st.Int4Groups; g < groups; g++)
                {
                    st.EnsureInt4();
                    for (int i = g * G; i < (g + 1) * G; i++) tiers[i] = KvTier.Int4;
                    // gather the group's float rows and quantize
                    var rowsK = new float[G * KvDim]; var rowsV = new float[G * KvDim];
                    for (int i = 0; i < G; i++) CopyRow(inner, g * G + i, rowsK.AsSpan(i * KvDim, KvDim), rowsV.AsSpan(i * KvDim, KvDim));
                    fixed (float* pk = rowsK, pv = rowsV)
                    {
                        KvQuantizer.Int4Keys(pk, KvDim, G, KvDim, G, st.K4 + (long)g * G * KvDim / 2, st.K4p + (long)g * KvDim * 2);
                        KvQuantizer.Int4Values(pv, KvDim, G, KvDim, G, st.V4 + (long)g * G * KvDim / 2, st.V4p + (long)g * G * (KvDim / G) * 2);
                    }
                }
                st.Int4Groups = Math.Max(st.Int4Groups, groups);
                break;
            }
        }
        // quantize every token that has just become Int8
        if (Spec.Retention is RetentionKind.Arkv or RetentionKind.Int8)
        for (int i = 0; i < tiers.Length; i++)
            if (tiers[i] == KvTier.Int8 && !st.HasInt8(i))
            {
                st.EnsureInt8();
                var rk = new float[KvDim]; var rv = new float[KvDim];
                CopyRow(inner, i, rk, rv);
                fixed (float* pk = rk, pv = rv)
                {
                    KvQuantizer.Int8(pk, KvDim, 1, KvDim, G, st.K8 + (long)i * KvDim, st.K8s + (long)i * (KvDim / G));
                    KvQuantizer.Int8(pv, KvDim, 1, KvDim, G, st.V8 + (long)i * KvDim, st.V8s + (long)i * (KvDim / G));
                }
                st.MarkInt8(i);
            }
    }

    private void CopyRow(ReadOnlySpan<KvPage> inner, int pos, Span<float> k, Span<float> v)
    {
        foreach (var pg in inner)
            if (pos >= pg.StartPosition && pos < pg.StartPosition + pg.TokenCount)
            {
                long o = (long)(pos - pg.StartPosition) * pg.RowStride;
                new ReadOnlySpan<float>((float*)pg.K + o, KvDim).CopyTo(k);
                new ReadOnlySpan<float>((float*)pg.V + o, KvDim).CopyTo(v);
                return;
            }
        throw new InvalidOperationException($"position {pos} is not in the inner store's pages");
    }

    /// <summary>Runs of equal tier (evicted skipped), split at inner page and (for Int4) group boundaries.</summary>
    private void BuildPages(State st, ReadOnlySpan<KvPage> inner, int len)
    {
        _pageCount = 0;
        foreach (var pg in inner)
        {
            int j = 0;
            while (j < pg.TokenCount)
            {
                int p0 = pg.StartPosition + j;
                if (p0 >= len) break;
                var tier = st.Tiers[p0];
                int j1 = j + 1;
                while (j1 < pg.TokenCount && pg.StartPosition + j1 < len && st.Tiers[pg.StartPosition + j1] == tier) j1++;
                int count = j1 - j;
                switch (tier)
                {
                    case KvTier.Full: Add(KvPages.Slice(pg, j, count)); break;
                    case KvTier.Int8:
                        Add(new KvPage((nint)(st.K8 + (long)p0 * KvDim), (nint)(st.V8 + (long)p0 * KvDim), count, p0, KvDim)
                        {
                            Type = KvElementType.Int8, KScale = (nint)(st.K8s + (long)p0 * (KvDim / G)), VScale = (nint)(st.V8s + (long)p0 * (KvDim / G)), GroupSize = G,
                        });
                        break;
                    case KvTier.Int4:
                        var whole = new KvPage((nint)st.K4, (nint)st.V4, st.Int4Groups * G, 0, KvDim)
                        { Type = KvElementType.Int4, KScale = (nint)st.K4p, VScale = (nint)st.V4p, GroupSize = G };
                        Add(KvPages.Slice(whole, p0, count));
                        break;
                }
                j = j1;
            }
        }
    }

    private void Add(in KvPage page)
    {
        if (_pageCount == _pageArray.Length) Array.Resize(ref _pageArray, 2 * _pageArray.Length);
        _pageArray[_pageCount++] = page;
    }

    /// <summary>
    /// Attention over the pages of the last Pages() call with the query known: read-time selection at decode (quest / msa),
    /// and attention mass fed back to heavy-hitter policies. Returns false when <paramref name="pages"/> is not the last
    /// page list this store returned (the caller then runs plain attention).
    /// </summary>
    public bool Attend(IBackend backend, ReadOnlySpan<float> q, ReadOnlySpan<int> qPositions, ReadOnlySpan<KvPage> pages, AttentionParams p, Span<float> output)
    {
        if (_lastLayer < 0 || _pageCount == 0 || pages.Length != _pageCount
            || !System.Runtime.CompilerServices.Unsafe.AreSame(ref MemoryMarshal.GetReference(pages), ref _pageArray[0]))
            return false;
        var st = _state[_lastLayer, _lastSeq]!;
        int len = _inner.Length(_lastLayer, _lastSeq), n = qPositions.Length;
        ReadOnlySpan<KvPage> read = pages;
        if (Spec.Selection != SelectionKind.None && n == 1) read = Select(st, q, p, len, pages);
        long total = 0;
        foreach (var pg in read) total += pg.TokenCount;
        LastReadTokens = total;
        if (!Spec.NeedsAttentionMass) { backend.Attention(q, qPositions, read, p, output); return true; }

        long massLen = (long)p.KvHeadCount * total;
        if (_massBuf.Length < massLen) _massBuf = new float[Math.Max(massLen, 2L * _massBuf.Length)];
        var mass = _massBuf.AsSpan(0, (int)massLen);
        mass.Clear();
        if (Spec.Retention == RetentionKind.SnapKV && n > Spec.SnapWindow)
        {
            // SnapKV: only the last w prompt queries observe; the others attend normally.
            int w = Spec.SnapWindow, row = p.HeadCount * p.HeadDim;
            backend.Attention(q[..((n - w) * row)], qPositions[..(n - w)], read, p, output[..((n - w) * row)]);
            backend.Attention(q[((n - w) * row)..], qPositions[(n - w)..], read, p, output[((n - w) * row)..], mass);
        }
        else backend.Attention(q, qPositions, read, p, output, mass);

        // fold [kvHead, token] mass into per-position scores (summed over KV heads)
        float decay = Spec.Retention == RetentionKind.SnapKV ? 1f - 1f / Spec.SnapWindow : 1f;
        if (decay != 1f) for (int i = 0; i < len; i++) st.Snap[i] *= decay;
        var score = Spec.Retention == RetentionKind.SnapKV ? st.Snap : st.Mass;
        int t = 0;
        foreach (var pg in read)
            for (int j = 0; j < pg.TokenCount; j++, t++)
            {
                float m = 0;
                for (int h = 0; h < p.KvHeadCount; h++) m += mass[(int)(h * total + t)];
                score[pg.StartPosition + j] += m;
            }
        if (Spec.Retention == RetentionKind.Arkv && !st.ShareSet && n > 1)
        {
            // ARKV: layers whose prefill attention is spread out (high entropy) keep a larger full-precision share.
            st.FullShare = 0.25 + 0.5 * Planners.NormalizedEntropy(st.Mass.AsSpan(0, len));
            st.ShareSet = true;
        }
        return true;
    }

    /// <summary>Quest / MSA block selection for one decode query over the kept pages.</summary>
    private ReadOnlySpan<KvPage> Select(State st, ReadOnlySpan<float> q, AttentionParams p, int len, ReadOnlySpan<KvPage> pages)
    {
        int blocks = (len + G - 1) / G, hd = p.HeadDim, group = p.HeadCount / p.KvHeadCount;
        int budget = Planners.TokenBudget(Spec.Budget, len);
        var scores = new float[blocks]; var always = new bool[blocks]; var selected = new bool[blocks];
        for (int b = 0; b < blocks; b++)
        {
            float s = 0;
            for (int h = 0; h < p.HeadCount; h++)
            {
                var qh = q.Slice(h * hd, hd);
                int off = b * KvDim + h / group * hd;
                if (Spec.Selection == SelectionKind.Quest)
                    s += Planners.QuestBound(qh, st.BlockMin.AsSpan(off, hd), st.BlockMax.AsSpan(off, hd));
                else
                {
                    int count = Math.Min(G, len - b * G);
                    float d = 0;
                    for (int c = 0; c < hd; c++) d += qh[c] * st.BlockSum[off + c];
                    s += d / count;                                        // routing key = mean-pooled key of the chunk
                }
            }
            scores[b] = s;
        }
        // always read: the local context (the block holding the query and the one before); quest also the sink block 0
        always[blocks - 1] = true;
        if (blocks >= 2) always[blocks - 2] = true;
        if (Spec.Selection == SelectionKind.Quest) always[0] = true;
        int alwaysCount = always.Count(a => a);
        int topK = Math.Max(1, (budget + G - 1) / G - alwaysCount);          // at least one routed block
        Planners.TopBlocks(scores, always, topK, selected);
        _selPages.Clear();
        foreach (var pg in pages)
        {
            int j = 0;
            while (j < pg.TokenCount)
            {
                int b = (pg.StartPosition + j) / G;
                int end = Math.Min(pg.TokenCount, (b + 1) * G - pg.StartPosition);
                if (selected[b])
                {
                    int j1 = end;
                    while (j1 < pg.TokenCount && selected[(pg.StartPosition + j1) / G]) j1 = Math.Min(pg.TokenCount, ((pg.StartPosition + j1) / G + 1) * G - pg.StartPosition);
                    _selPages.Add(KvPages.Slice(pg, j, j1 - j));
                    j = j1;
                }
                else j = end;
            }
        }
        return CollectionsMarshal.AsSpan(_selPages);
    }

    private readonly List<KvPage> _selPages = [];

    /// <summary>Bytes the tiered layout holds for (layer, seq): Σ tokens × bytes/token of their tier + block summaries.</summary>
    public double HeldBytes(int layer, int seqId)
    {
        var st = _state[layer, seqId];
        int len = _inner.Length(layer, seqId);
        if (st == null) return 0;
        double bytes = 0;
        for (int i = 0; i < len; i++)
            bytes += st.Tiers[i] switch
            {
                KvTier.Full => KvDecode.BytesPerToken(KvElementType.F32, KvDim, G),
                KvTier.Int8 => KvDecode.BytesPerToken(KvElementType.Int8, KvDim, G),
                KvTier.Int4 => KvDecode.BytesPerToken(KvElementType.Int4, KvDim, G),
                _ => 0,
            };
        int blocks = (len + G - 1) / G;
        if (Spec.Selection == SelectionKind.Quest) bytes += blocks * 2.0 * KvDim * 4;
        if (Spec.Selection == SelectionKind.Msa) bytes += blocks * (double)KvDim * 4;
        return bytes;
    }

    /// <summary>The tiers of (layer, seq) positions [0, Length) (for tests and reports).</summary>
    public KvTier[] Tiers(int layer, int seqId)
    {
        var st = _state[layer, seqId];
        return st == null ? [] : st.Tiers.AsSpan(0, _inner.Length(layer, seqId)).ToArray();
    }

    public void Truncate(int seqId, int length)
    {
        _inner.Truncate(seqId, length);
        for (int l = 0; l < LayerCount; l++)
            if (_state[l, seqId] is { } st)
            {
                if (length == 0) { st.Dispose(); _state[l, seqId] = null; continue; }
                st.Int4Groups = Math.Min(st.Int4Groups, length / G);
                // re-summarise the block the new end falls in from the remaining float rows
                int b = (length - 1) / G;
                var inner = _inner.Pages(l, seqId);
                var rk = new float[KvDim]; var rv = new float[KvDim];
                for (int pos = b * G; pos < length; pos++)
                {
                    CopyRow(inner, pos, rk, rv);
                    var mn = st.BlockMin.AsSpan(b * KvDim, KvDim); var mx = st.BlockMax.AsSpan(b * KvDim, KvDim); var sm = st.BlockSum.AsSpan(b * KvDim, KvDim);
                    if (pos == b * G) { rk.CopyTo(mn); rk.CopyTo(mx); rk.CopyTo(sm); }
                    else for (int c = 0; c < KvDim; c++) { mn[c] = MathF.Min(mn[c], rk[c]); mx[c] = MathF.Max(mx[c], rk[c]); sm[c] += rk[c]; }
                }
            }
    }

    public void Clear(int seqId) => Truncate(seqId, 0);

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var st in _state) st?.Dispose();
        _inner.Dispose();
    }

    /// <summary>Per-(layer, sequence) policy state. Buffers are indexed by position.</summary>
    private sealed class State(int capacity, int kvDim, int g) : IDisposable
    {
        public readonly KvTier[] Tiers = new KvTier[capacity];
        public readonly float[] Mass = new float[capacity];           // [capacity] accumulated attention mass (Σ KV heads)
        public readonly float[] Snap = new float[capacity];           // [capacity] SnapKV observation-window score
        public readonly float[] BlockMin = new float[(capacity + g - 1) / g * kvDim];   // [blocks, kvDim]
        public readonly float[] BlockMax = new float[(capacity + g - 1) / g * kvDim];   // [blocks, kvDim]
        public readonly float[] BlockSum = new float[(capacity + g - 1) / g * kvDim];   // [blocks, kvDim]
        private readonly bool[] _int8 = new bool[capacity];
        public double FullShare = 0.5;
        public bool ShareSet;
        public int Int4Groups;
        public int NewFrom;                                            // first position written by the last Write
        public sbyte* K8, V8; public float* K8s, V8s;                 // [capacity, kvDim] sbyte, [capacity, kvDim / g] scales
        public byte* K4, V4; public float* K4p, V4p;                  // [capacity, kvDim / 2]; K4p [groups, kvDim, 2], V4p [capacity, kvDim / g, 2]

        public bool HasInt8(int i) => _int8[i];
        public void MarkInt8(int i) => _int8[i] = true;

        public void EnsureInt8()
        {
            if (K8 != null) return;
            K8 = (sbyte*)Alloc((long)capacity * kvDim); V8 = (sbyte*)Alloc((long)capacity * kvDim);
            K8s = (float*)Alloc((long)capacity * (kvDim / g) * 4); V8s = (float*)Alloc((long)capacity * (kvDim / g) * 4);
        }

        public void EnsureInt4()
        {
            if (K4 != null) return;
            K4 = (byte*)Alloc((long)capacity * kvDim / 2); V4 = (byte*)Alloc((long)capacity * kvDim / 2);
            K4p = (float*)Alloc(((long)capacity / g + 1) * kvDim * 2 * 4); V4p = (float*)Alloc((long)capacity * (kvDim / g) * 2 * 4);
        }

        private static void* Alloc(long bytes) => NativeMemory.AlignedAlloc((nuint)Math.Max(64, bytes), 64);

        public void Dispose()
        {
            foreach (var p in new[] { (nint)K8, (nint)V8, (nint)K8s, (nint)V8s, (nint)K4, (nint)V4, (nint)K4p, (nint)V4p })
                if (p != 0) NativeMemory.AlignedFree((void*)p);
            K8 = V8 = null; K8s = V8s = K4p = V4p = null; K4 = V4 = null;
        }
    }
}

/// <summary>PolicyBackend for the legacy store (same routing: attention over its last pages goes through Attend).</summary>
public sealed class LegacyPolicyBackend(IBackend inner) : IBackend
{
    public IBackend Inner { get; } = inner;
    public LegacyPolicyKvStore? Store { get; set; }
    public string Name => Inner.Name;
    public void MatMul(ReadOnlySpan<float> x, int n, Engine.Tensors.TensorView w, Span<float> y) => Inner.MatMul(x, n, w, y);
    public void GetRows(Engine.Tensors.TensorView table, ReadOnlySpan<int> ids, Span<float> dst) => Inner.GetRows(table, ids, dst);
    public void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> y) => Inner.RmsNorm(x, weight, eps, y);
    public void Rope(Span<float> x, int headCount, int headDim, ReadOnlySpan<int> positions, RopeParams rope) => Inner.Rope(x, headCount, headDim, positions, rope);
    public void Softmax(Span<float> x) => Inner.Softmax(x);
    public void SiluMul(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> dst) => Inner.SiluMul(gate, up, dst);
    public void Add(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> dst) => Inner.Add(a, b, dst);

    public void Attention(ReadOnlySpan<float> q, ReadOnlySpan<int> qPositions, ReadOnlySpan<KvPage> pages, AttentionParams p, Span<float> output)
    {
        if (Store is { } s && s.Attend(Inner, q, qPositions, pages, p, output)) return;
        Inner.Attention(q, qPositions, pages, p, output);
    }

    public void Attention(ReadOnlySpan<float> q, ReadOnlySpan<int> qPositions, ReadOnlySpan<KvPage> pages, AttentionParams p, Span<float> output,
        Span<float> tokenMass) => Inner.Attention(q, qPositions, pages, p, output, tokenMass);

    public void Dispose() { }
}
