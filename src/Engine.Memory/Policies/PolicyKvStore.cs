// Owns: the decorator that applies a KV policy to any float32 IKvStore without touching model code, and the storage of
// what the policy keeps. Per (layer, sequence) it holds: the float32 rows of Full-tier tokens only, in blocks of
// BlockTokens slots (RowBlocks) — or packed into the row slots of the inner sequence, the request's block table in the
// shared paged pool (SlotRows, PolicyRowStorage.Slots: the serving path, whose scheduler frees the blocks past SlotsUsed)
// — or, when the inner store keeps rows itself at their positions (a disk tier), in the inner store; Int8 rows
// + scales of Int8-tier tokens in blocks; one KIVI Int4 chunk per quantized token group. Pages() runs the retention plan
// (Planners) over the tokens older than the current write, then settles storage to it — an evicted token's row is freed,
// a demoted token is quantized and its float32 row freed, blocks left empty are returned and mostly-empty ones squeezed —
// and presents the kept tokens as pages of consecutive positions; Attend() (called by PolicyBackend with the query; PageSelector)
// applies the read-time selection (quest / msa) at decode and to prefill chunks (n > 1 queries, when the retention does not
// need attention mass; the chunk then reads sinks + the selected blocks + its own blocks, so ingest is linear in length)
// and feeds attention mass back to heavy-hitter policies.
// Full retention is a pass-through: the inner store holds every row and its pages are presented as they are.
// Invariants: positions stay as cached (RoPE was applied at write); tiers only move down (a rewrite of a position makes
// it Full again); a page holds consecutive positions (token j of a page sits at StartPosition + j, as the kernels'
// causal mask, quest/msa block indexing and the attention-mass feedback all assume) and the page list covers the kept
// tokens in position order; the Int4 positions of a group are a prefix of the group. Owned payload after each Pages():
// ≤ (kept Full tokens + B − 1) float32 rows and ≤ (Int8 tokens + B − 1) int8 rows per (layer, seq) (RowBlocks.Compact).
// HeldBytes / AllocatedBytes count the bytes allocated for K/V payload, scales and quest/msa summaries (plus, when the
// inner store holds the rows, its float32 rows of positions [0, Length)); per-position bookkeeping (tiers, slots, scores)
// grows with the length on demand and is reported apart (MetadataBytes). Row storage and State: PolicyKvStore.Storage.cs;
// the 2/3/4-bit KIVI groups and the byte-budget compositions (kivi2/kivi3, mix2/3/4, auto): PolicyKvStore.Mix.cs.
using System.Runtime.InteropServices;
using Engine.Kernels;

namespace Engine.Memory.Policies;

/// <summary>Where a <see cref="PolicyKvStore"/> keeps the float32 rows of its Full-tier tokens.</summary>
public enum PolicyRowStorage
{
    /// <summary><see cref="Own"/> over a plain in-RAM <see cref="ContiguousKvStore"/>, <see cref="Inner"/> over any other store.</summary>
    Auto,
    /// <summary>In the policy store's own blocks: only Full-tier tokens hold float32 rows, the inner store is not written.</summary>
    Own,
    /// <summary>In the inner store (every position, e.g. on a disk tier): rows of evicted / quantized tokens stay there.</summary>
    Inner,
    /// <summary>In the inner store's row slots, packed (SlotRows): the inner sequence is the request's block table in the
    /// shared paged pool, bound over all its blocks; only kept Full-tier tokens occupy slots [0, SlotsUsed) per layer, so
    /// the table's owner can return the blocks past <see cref="PolicyKvStore.SlotsUsed"/> to the pool after each step.
    /// Requires blockTokens = the paged store's block size.</summary>
    Slots,
}

public sealed unsafe partial class PolicyKvStore : IKvStore
{
    /// <summary>Token slots per owned row block.</summary>
    public const int DefaultBlockTokens = 16;

    // What holds a position; numbered like KvTier (None = Evicted) so "storage matches the plan" is a byte-wise equality
    // of the two arrays (Settle and BuildPages skip settled / evicted runs with vectorized span searches).
    private enum Held : byte { Full = KvTier.Full, Int8 = KvTier.Int8, Int4 = KvTier.Int4, None = KvTier.Evicted, Low = KvTier.LowBit }

    private readonly IKvStore _inner;
    private readonly State?[,] _state;          // [layer, seq]
    private readonly bool _passThrough;         // Full retention: the inner store holds and presents everything
    private readonly bool _own;                 // Full rows in this store's row storage (else at their positions in the inner store)
    private readonly bool _slots;               // ... that storage being the inner store's packed row slots (SlotRows)
    private readonly long _int4Bytes, _int4V, _int4KPrm, _int4VPrm;   // one Int4 group chunk: K nibbles, V nibbles, K (scale, min), V (scale, min)
    private KvPage[] _pageArray = new KvPage[16];
    private int _pageCount;
    private int _lastLayer = -1, _lastSeq = -1;
    private float[] _massBuf = [];
    private float[] _pooledBuf = [];             // SnapKV pooled scores, reused across Pages() calls
    private readonly PageSelector? _selector;   // quest / msa summaries and selection (null: no selection policy)
    private bool _disposed;

    /// <param name="rows">Where Full-tier float32 rows live (see <see cref="PolicyRowStorage"/>).</param>
    /// <param name="blockTokens">Token slots per owned row block (the allocation and free unit).</param>
    public PolicyKvStore(IKvStore inner, KvPolicySpec spec, PolicyRowStorage rows = PolicyRowStorage.Auto, int blockTokens = DefaultBlockTokens)
    {
        ArgumentNullException.ThrowIfNull(inner); ArgumentNullException.ThrowIfNull(spec);
        spec.Validate(inner.KvDim);
        if (blockTokens <= 0) throw new ArgumentOutOfRangeException(nameof(blockTokens), $"row block size {blockTokens} must be positive");
        _inner = inner; Spec = spec; BlockTokens = blockTokens;
        _state = new State?[inner.LayerCount, inner.SequenceCapacity];
        _passThrough = spec.Retention == RetentionKind.Full;
        _slots = !_passThrough && rows == PolicyRowStorage.Slots;
        _own = _slots || (!_passThrough && (rows == PolicyRowStorage.Own || (rows == PolicyRowStorage.Auto && inner.GetType() == typeof(ContiguousKvStore))));
        RowStorage = _slots ? PolicyRowStorage.Slots : _own ? PolicyRowStorage.Own : PolicyRowStorage.Inner;
        int d = inner.KvDim, g = spec.BlockSize;
        _int4V = (long)g * d / 2;
        _int4KPrm = Align64(2L * _int4V);
        _int4VPrm = _int4KPrm + Align64((long)d * 2 * 4);
        _int4Bytes = _int4VPrm + (long)g * (d / g) * 2 * 4;
        if (spec.Selection != SelectionKind.None) _selector = new PageSelector(spec, inner.LayerCount, inner.SequenceCapacity, inner.KvDim);
    }

    /// <summary>The read-time selection (quest / msa) of this store; null without a selection policy.</summary>
    public PageSelector? Selector => _selector;

    private static long Align64(long x) => (x + 63) & ~63L;

    public KvPolicySpec Spec { get; }
    public IKvStore Inner => _inner;
    /// <summary>Where Full-tier rows live for this store (Own or Inner; Full retention always reads the inner store).</summary>
    public PolicyRowStorage RowStorage { get; }
    public int BlockTokens { get; }
    public int LayerCount => _inner.LayerCount;
    public int KvDim => _inner.KvDim;
    public int Capacity => _inner.Capacity;
    public int SequenceCapacity => _inner.SequenceCapacity;

    public int Length(int layer, int seqId)
    {
        Check(layer, seqId);
        return _state[layer, seqId]?.Length ?? 0;
    }

    /// <summary>Tokens attention read in the last Attend call (after selection).</summary>
    public long LastReadTokens { get; private set; }

    /// <summary>K/V bytes attention has read through this store since it was created (payload + scales of the pages read;
    /// a selection read counts its tokens as float32 rows), all layers and sequences: the per-step difference is the bytes
    /// read per decode step.</summary>
    public long ReadBytesTotal { get; private set; }

    private int G => Spec.BlockSize;

    private void Check(int layer, int seqId)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if ((uint)layer >= (uint)LayerCount) throw new ArgumentOutOfRangeException(nameof(layer), $"layer {layer} outside [0, {LayerCount})");
        if ((uint)seqId >= (uint)SequenceCapacity) throw new ArgumentOutOfRangeException(nameof(seqId), $"sequence {seqId} outside [0, {SequenceCapacity})");
    }

    public void Write(int layer, int seqId, ReadOnlySpan<int> positions, ReadOnlySpan<float> k, ReadOnlySpan<float> v)
    {
        Check(layer, seqId);
        int n = positions.Length;
        if (k.Length < (long)n * KvDim || v.Length < (long)n * KvDim)
            throw new ArgumentException($"K/V spans hold {k.Length}/{v.Length} floats, need {n} × {KvDim}");
        int newLength = _state[layer, seqId]?.Length ?? 0;
        foreach (int p in positions)
        {
            if (p < 0) throw new ArgumentOutOfRangeException(nameof(positions), $"negative KV position {p}");
            if (p >= Capacity) throw new KvCapacityException(p, Capacity);
            if (p > newLength) throw new ArgumentException($"KV position {p} leaves a gap after length {newLength} (layer {layer}, sequence {seqId})");
            newLength = Math.Max(newLength, p + 1);
        }
        if (!_own) _inner.Write(layer, seqId, positions, k, v);
        var st = _state[layer, seqId] ??= new State();
        Rebind(st, layer, seqId);
        Grow(st, newLength);
        int first = int.MaxValue;
        foreach (int p in positions) first = Math.Min(first, p);
        for (int i = 0; i < positions.Length; i++)
        {
            int p = positions[i];
            StoreFull(st, p, k.Slice(i * KvDim, KvDim), v.Slice(i * KvDim, KvDim));
            if (p >= st.Length) st.Length = p + 1;
            st.Tiers[p] = KvTier.Full;
            if (st.Mass.Length > 0) { st.Mass[p] = 0; st.Snap[p] = 0; }
        }
        st.NewFrom = Math.Min(first, st.Length);
        _selector?.Write(layer, seqId, positions, k, st.Length);           // quest / msa block summaries
    }

    public ReadOnlySpan<KvPage> Pages(int layer, int seqId)
    {
        Check(layer, seqId);
        _lastLayer = layer; _lastSeq = seqId;
        var st = _state[layer, seqId];
        int len = st?.Length ?? 0;
        _pageCount = 0;
        if (st == null || len == 0) return ReadOnlySpan<KvPage>.Empty;
        Rebind(st, layer, seqId);
        var inner = _own ? ReadOnlySpan<KvPage>.Empty : _inner.Pages(layer, seqId);
        foreach (var pg in inner)
            if (pg.Type != KvElementType.F32) throw new NotSupportedException("PolicyKvStore needs a float32 inner store");
        if (_passThrough)
        {
            // nothing is evicted or quantized — present the inner pages as they are (O(pages), not O(tokens))
            foreach (var pg in inner) Add(pg);
            return new ReadOnlySpan<KvPage>(_pageArray, 0, _pageCount);
        }
        Retain(st, inner, len);
        Settle(st, inner, len);
        BuildPages(st, inner, len);
        return new ReadOnlySpan<KvPage>(_pageArray, 0, _pageCount);
    }

    /// <summary>Runs the retention plan of the spec over positions [0, len) and materializes new Int4 groups.</summary>
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
                if (_pooledBuf.Length < tiers.Length) _pooledBuf = new float[Math.Max(tiers.Length, 2 * _pooledBuf.Length)];
                var pooled = _pooledBuf.AsSpan(0, tiers.Length);
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
                var rowsK = new float[G * KvDim]; var rowsV = new float[G * KvDim];
                for (int g = st.Int4Groups; g < groups; g++)
                {
                    for (int i = g * G; i < (g + 1) * G; i++) tiers[i] = KvTier.Int4;
                    // gather the group's float rows and quantize into a new chunk; the float rows are then freed
                    for (int i = 0; i < G; i++) ReadFull(st, inner, g * G + i, rowsK.AsSpan(i * KvDim, KvDim), rowsV.AsSpan(i * KvDim, KvDim));
                    var chunk = (byte*)NativeMemory.AlignedAlloc((nuint)_int4Bytes, 64);
                    st.Int4[g] = (nint)chunk; st.Int4Chunks++;
                    fixed (float* pk = rowsK, pv = rowsV)
                    {
                        KvQuantizer.Int4Keys(pk, KvDim, G, KvDim, G, chunk, (float*)(chunk + _int4KPrm));
                        KvQuantizer.Int4Values(pv, KvDim, G, KvDim, G, chunk + _int4V, (float*)(chunk + _int4VPrm));
                    }
                    for (int i = g * G; i < (g + 1) * G; i++) { DropFull(st, i); st.Stored[i] = Held.Int4; }
                }
                st.Int4Groups = Math.Max(st.Int4Groups, groups);
                break;
            }
            case RetentionKind.Kivi:
            case RetentionKind.Mix: RetainLow(st, inner, len); break;   // PolicyKvStore.Mix.cs
        }
    }

    /// <summary>Maximal runs of kept positions that are consecutive, of one tier and stored consecutively, in position
    /// order: own Full / Int8 rows split at block boundaries and where storage order breaks; inner Full rows at the inner
    /// store's page boundaries; Int4 at group boundaries.</summary>
    private void BuildPages(State st, ReadOnlySpan<KvPage> inner, int len)
    {
        _pageCount = 0;
        int ip = 0;
        var stored = MemoryMarshal.Cast<Held, byte>(st.Stored.AsSpan(0, len));
        for (int p = 0; p < len;)
        {
            var held = st.Stored[p];
            int q = p + 1;
            switch (held)
            {
                case Held.None:
                    int next = stored[p..].IndexOfAnyExcept((byte)Held.None);   // skip the evicted run
                    p = next < 0 ? len : p + next;
                    continue;
                case Held.Full when !_own:
                    while (q < len && st.Stored[q] == Held.Full) q++;
                    for (int a = p; a < q;)
                    {
                        while (ip < inner.Length && inner[ip].StartPosition + inner[ip].TokenCount <= a) ip++;
                        if (ip == inner.Length || inner[ip].StartPosition > a) throw new InvalidOperationException($"position {a} is not in the inner store's pages");
                        var pg = inner[ip];
                        int count = Math.Min(q, pg.StartPosition + pg.TokenCount) - a;
                        Add(KvPages.Slice(pg, a - pg.StartPosition, count));
                        a += count;
                    }
                    break;
                case Held.Full:
                case Held.Int8:
                {
                    int B = held == Held.Full ? st.Rows!.B : st.Int8Rows!.B;
                    int slot = st.Slot[p], room = B - slot % B;
                    while (q < len && q - p < room && st.Stored[q] == held && st.Slot[q] == slot + (q - p)) q++;
                    Add(held == Held.Full ? FullPage(st, slot, p, q - p) : Int8Page(st, slot, p, q - p));
                    break;
                }
                case Held.Int4:
                {
                    int g = p / G;
                    if (p != g * G) throw new InvalidOperationException($"Int4 run at position {p} does not start its group");
                    while (q < len && q < (g + 1) * G && st.Stored[q] == Held.Int4) q++;
                    Add(Int4Page(st, g, q - p));
                    break;
                }
                case Held.Low:
                {
                    int lg = st.LowG, g = p / lg;
                    while (q < len && q < (g + 1) * lg && st.Stored[q] == Held.Low) q++;
                    Add(LowPage(st, g, p - g * lg, q - p));
                    break;
                }
            }
            p = q;
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
        int len = Length(_lastLayer, _lastSeq), n = qPositions.Length;
        if (_selector != null && (n == 1 || !Spec.NeedsAttentionMass))
        {
            // read-time selection at decode and for prefill chunks (PageSelector): per-KV-head block choice + attention
            // (+ mass feedback at decode; a mass policy's prefill keeps the full path below: SnapKV's observation window)
            float[]? feedback = null;
            if (Spec.NeedsAttentionMass)
            {
                feedback = Spec.Retention == RetentionKind.SnapKV ? st.Snap : st.Mass;
                float dec = Spec.Retention == RetentionKind.SnapKV ? 1f - 1f / Spec.SnapWindow : 1f;
                if (dec != 1f) for (int i = 0; i < len; i++) st.Snap[i] *= dec;
            }
            LastReadTokens = _selector.Attend(backend, _lastLayer, _lastSeq, q, qPositions, pages, p, len,
                allPresent: Spec.Retention == RetentionKind.Full, output, feedback);
            ReadBytesTotal += LastReadTokens * 2L * KvDim * sizeof(float);
            return true;
        }
        ReadOnlySpan<KvPage> read = pages;
        long total = 0;
        foreach (var pg in read) { total += pg.TokenCount; ReadBytesTotal += PageBytes(pg); }
        LastReadTokens = total;
        if (!Spec.NeedsAttentionMass) { backend.Attention(q, qPositions, read, p, output); return true; }

        if (Spec.Retention == RetentionKind.Mix && st.LowBits == 0) CountQueries(st, qPositions);   // auto's first plan
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

    /// <summary>Bytes allocated now for (layer, seq): owned K/V payload blocks (float32 rows, int8 rows + scales, Int4
    /// group chunks) + quest/msa block summaries; when the inner store holds the rows (pass-through, disk tiers), its
    /// float32 rows of positions [0, Length).</summary>
    public double HeldBytes(int layer, int seqId)
    {
        Check(layer, seqId);
        var st = _state[layer, seqId];
        if (st == null) return 0;
        long bytes = (st.Rows?.AllocatedBytes ?? 0) + (st.Int8Rows?.AllocatedBytes ?? 0) + st.Int4Chunks * _int4Bytes + st.LowBytes
            + (_selector?.HeldBytes(layer, seqId) ?? 0);
        if (!_own) bytes += (long)st.Length * 2 * KvDim * sizeof(float);
        return bytes;
    }

    /// <summary>Σ <see cref="HeldBytes"/> over every layer and sequence.</summary>
    public long AllocatedBytes
    {
        get
        {
            long sum = 0;
            for (int l = 0; l < LayerCount; l++)
                for (int s = 0; s < SequenceCapacity; s++) sum += (long)HeldBytes(l, s);
            return sum;
        }
    }

    /// <summary>Slots storage: the row slots <paramref name="seqId"/> uses in its inner sequence, the most over layers (holes
    /// included; after each Pages() at most one block above the layer's kept Full rows). The inner sequence's blocks past
    /// ceil(SlotsUsed / B) hold no row. 0 for other storages.</summary>
    public int SlotsUsed(int seqId)
    {
        Check(0, seqId);
        int used = 0;
        if (_slots)
            for (int l = 0; l < LayerCount; l++)
                if (_state[l, seqId]?.Rows is SlotRows r) used = Math.Max(used, r.Used);
        return used;
    }

    /// <summary>Bytes this store holds for <paramref name="seqId"/> outside the inner store, all layers: own float32 row
    /// blocks (Own storage), int8 rows + scales, Int4 chunks, low-bit (2/3/4-bit KIVI) chunks, quest/msa summaries.</summary>
    public long OwnBytes(int seqId)
    {
        Check(0, seqId);
        long bytes = 0;
        for (int l = 0; l < LayerCount; l++)
            if (_state[l, seqId] is { } st)
                bytes += (_slots ? 0 : st.Rows?.AllocatedBytes ?? 0) + (st.Int8Rows?.AllocatedBytes ?? 0) + st.Int4Chunks * _int4Bytes + st.LowBytes
                    + (_selector?.HeldBytes(l, seqId) ?? 0);
        return bytes;
    }

    /// <summary>Bytes of per-position bookkeeping (tiers, slots, attention scores, Int4 chunk table), all layers and
    /// sequences — grown on demand with the length, not counted in <see cref="HeldBytes"/>.</summary>
    public long MetadataBytes
    {
        get
        {
            long sum = 0;
            foreach (var st in _state)
                if (st != null)
                    sum += 2L * st.Tiers.Length + 4L * (st.Slot.Length + st.Mass.Length + st.Snap.Length) + 8L * (st.Int4.Length + st.Low.Length);
            return sum;
        }
    }

    /// <summary>The tiers of (layer, seq) positions [0, Length) (for tests and reports).</summary>
    public KvTier[] Tiers(int layer, int seqId)
    {
        Check(layer, seqId);
        var st = _state[layer, seqId];
        return st == null ? [] : st.Tiers.AsSpan(0, st.Length).ToArray();
    }

    public void Truncate(int seqId, int length)
    {
        Check(0, seqId);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (!_own) _inner.Truncate(seqId, length);
        for (int l = 0; l < LayerCount; l++)
            if (_state[l, seqId] is { } st)
            {
                if (length == 0) { _selector?.Truncate(l, seqId, 0, ReadOnlySpan<KvPage>.Empty); st.Dispose(); _state[l, seqId] = null; continue; }
                if (length >= st.Length) continue;
                for (int p = length; p < st.Length; p++)
                {
                    if (st.Stored[p] == Held.Full) DropFull(st, p);
                    else if (st.Stored[p] == Held.Int8) st.Int8Rows!.Remove(st.Slot[p]);
                    st.Stored[p] = Held.None; st.Tiers[p] = KvTier.Full;
                    if (st.Mass.Length > 0) { st.Mass[p] = 0; st.Snap[p] = 0; }
                }
                // Int4 groups at or past the new end are freed; a group cut in two keeps its quantized prefix
                int keep = (length + G - 1) / G;
                for (int g = keep; g < st.Int4.Length; g++)
                    if (st.Int4[g] != 0) { NativeMemory.AlignedFree((void*)st.Int4[g]); st.Int4[g] = 0; st.Int4Chunks--; }
                st.Int4Groups = Math.Min(st.Int4Groups, keep);
                if (LowBitTier) TruncateLow(st, length);
                st.Rows?.Compact(st.Slot);
                st.Int8Rows?.Compact(st.Slot);
                st.Length = length;
                st.NewFrom = Math.Min(st.NewFrom, length);
                if (_selector == null || length % G == 0) continue;   // a block boundary: no summary changes
                Rebind(st, l, seqId);
                // re-summarise the block the new end falls in from its remaining rows (kept tokens, decoded; evicted ones are
                // gone, so unlike the write-time summary they no longer count)
                var inner = _own ? ReadOnlySpan<KvPage>.Empty : _inner.Pages(l, seqId);
                var rk = new float[KvDim]; var rv = new float[KvDim];
                var state = st; var innerArr = inner.ToArray();
                _selector.Truncate(l, seqId, length, (pos, k) =>
                {
                    if (!ReadRow(state, innerArr, pos, rk, rv)) return false;
                    rk.CopyTo(k);
                    return true;
                });
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
}
