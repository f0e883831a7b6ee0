// Owns: the read-time block selection of PolicyKvStore's selection policies (quest, msa): the per-block key summaries
// (updated on every write, re-summarised on truncation), the block scores of a decode query, the top-K choice under a
// token budget, and the attention over the chosen blocks — one page list per KV head (each KV head picks its own blocks
// from the scores of its own query-head group) or one shared list (score summed over all heads; the pre-per-head rule).
// Layout: summaries are rows of the whole KV width, [block, W] with W = 2·kvDim for quest ([min | max] of the block's keys)
// and W = kvDim for msa (Σ of the block's keys); KV head h owns channels [h·hd, (h+1)·hd) of each half. The store does not
// know the head split at write time (IKvStore has KvDim only), so rows are not regrouped per head: one scoring pass over
// the rows computes every KV head's score of a block, which streams the summaries once (the same bytes a per-head layout
// would stream). Super-blocks of SuperBlocks consecutive blocks carry [min | max] rows (2·kvDim) for both policies:
// quest the min/max of their keys, msa the min/max of their blocks' mean keys.
// Scoring (exact identity, for mn ≤ mx): Σ_{heads j of the group} Σ_c max(q_jc·mn_c, q_jc·mx_c)
//   = Σ_c (Σ_j min(q_jc, 0))·mn_c + (Σ_j max(q_jc, 0))·mx_c, so a group's Quest bound is ONE dot product of length 2·hd
// with a weight vector built once per query; msa's group score is (Σ_j q_j)·sum / count, one dot of length hd.
// Two-level (long contexts): a super-block's score is an upper bound of the scores of its blocks — quest: super min ≤
// block min, super max ≥ block max, so its Quest bound is ≥ every block bound inside; msa: with Q = Σ_j q_j,
// Σ_c max(Q_c·mnMean_c, Q_c·mxMean_c) ≥ Q·mean of every block inside. The top M super-blocks
// (M = max(8, 2·⌈K / SuperBlocks⌉ + 2)) are expanded and only their blocks are scored, so scoring costs
// O(blocks / SuperBlocks + M · SuperBlocks) instead of O(blocks). It is approximate (a block outside the M best
// super-blocks is never read, even if its own score is higher than a chosen one's) and only used when the context has
// more than 4·M super-blocks.
// Invariants: sinks (blocks covering the first SinkTokens tokens) and the local window (the last two blocks) are always
// read; at most ⌈budget / G⌉ blocks are read per KV head (at least one routed block); pages are presented in position
// order; no per-call allocation once the buffers have grown.
// Per-head attention: KV head h's pages are views offset to its channels (K/V pointers + h·hd elements, Int8 scales +
// h·hd/G, Int4 key params + 2·h·hd and value params + 2·h·hd/G; RowStride unchanged) and run with KvHeadCount = 1 over
// the group's query heads; when a presented Int8/Int4 page's channel groups straddle heads (hd % GroupSize ≠ 0) the
// whole call falls back to the shared list. When the budget covers every presented block, one plain attention call
// reads everything (the same for all heads).
// Prefill chunks (n > 1 query rows at positions ≥ qMin): the local window is the block before qMin's block and every
// block from qMin's block on (the chunk's own tokens, read with the kernels' causal mask); sinks as at decode; the
// budget is charged for the sinks, the block before the chunk and the chunk's first block (exactly decode's charge when
// n = 1), so a chunk reads ≤ ⌈budget / G⌉·G + (chunk's blocks − 1)·G tokens per KV head, however long the prefix — ingest
// is linear in length. Chunk score of a block = Σ over the chunk's rows of the decode score, i.e. quest: Σ_rows Σ_heads
// Σ_c max(q·mn, q·mx), an upper bound of Σ_rows max_{k∈block} q·k (the same one-dot identity: the weights are summed
// over rows and heads), msa: (Σ_rows Σ_heads q)·mean key. Chosen over the max over rows of each row's bound because it
// costs O(n·H·hd) to build the weights + O(blocks·hd) to score, not O(blocks·n·hd), and for n = 1 it is decode's score
// exactly; the cost is dilution: a block only one row of a large chunk needs competes with the sum of the other rows'
// bounds (that row's later decode step still selects it). A chunk's own super-blocks are skipped at the top level.
// When the unread prefix fits the budget the chunk runs plain attention over everything (identical to no selection).
// Top-K is a quickselect (Planners.TopK), not a sort; the chosen blocks are then sorted (K log K, K ≈ budget / G).
// Sources: Quest (Tang et al., 2024, "Quest: Query-Aware Sparsity for Efficient Long-Context LLM Inference": per-page
// key min/max, Σ max(q·min, q·max) criticality, fixed token budget, per-head page selection); MSA-style mean-pooled chunk
// routing keys; the two-level bound follows Quest's min/max argument applied to a coarser page.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Engine.Kernels;

namespace Engine.Memory.Policies;

public sealed unsafe class PageSelector
{
    /// <summary>Blocks per super-block of the two-level selection.</summary>
    public const int SuperBlocks = 16;

    private readonly KvPolicySpec _spec;
    private readonly Summary?[,] _sum;       // [layer, seq]
    private readonly int _kvDim, _g, _w, _sw;   // _w: block row width (quest 2·kvDim, msa kvDim); _sw: super row width (2·kvDim)
    private readonly bool _quest;

    // per-call buffers (grown, never shrunk)
    private float[] _weights = [];           // quest [kvHead, 2, hd] (Σ min(q,0) | Σ max(q,0)); msa [kvHead, hd] (Σ q)
    private float[] _superWeights = [];      // msa [kvHead, 2, hd] (min(Σ q, 0) | max(Σ q, 0)); quest uses _weights
    private float[] _scores = [];            // [kvHead, blocks] (flat) or [kvHead, supers] (two-level)
    private float[] _candScores = [];        // [candidates] of one head (two-level)
    private int[] _cand = [], _chosen = [], _superChosen = [], _topScratch = [];
    private int[] _selected = [];            // [kvHead, maxRead] sorted block lists
    private int[] _selCount = [];            // [kvHead]
    private int[] _pageStart = [];           // [kvHead + 1] offsets into _pages
    private KvPage[] _pages = new KvPage[16];
    private bool[] _present = [];            // [blocks] some token of the block is presented (retention may evict)
    private float[] _mass = [];
    private float[] _qHead = [], _oHead = [];  // a chunk's query / output rows of one KV head's group [nq, group, hd]
    private int _lastKvHeads;

    public PageSelector(KvPolicySpec spec, int layerCount, int sequenceCapacity, int kvDim)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (spec.Selection == SelectionKind.None) throw new ArgumentException("PageSelector needs a selection policy (quest or msa)", nameof(spec));
        _spec = spec; _kvDim = kvDim; _g = spec.BlockSize;
        _quest = spec.Selection == SelectionKind.Quest;
        _w = _quest ? 2 * kvDim : kvDim; _sw = 2 * kvDim;
        _sum = new Summary?[layerCount, sequenceCapacity];
    }

    /// <summary>Each KV head picks its own blocks (true, default) or all heads share one choice scored over every head.</summary>
    public bool PerKvHead { get; set; } = true;

    /// <summary>Allow the two-level (super-block) selection on long contexts (default true).</summary>
    public bool TwoLevel { get; set; } = true;

    /// <summary>Whether the last <see cref="Attend"/> selected per KV head (false: shared, or it read everything).</summary>
    public bool LastWasPerHead { get; private set; }

    /// <summary>Whether the last <see cref="Attend"/> used the two-level selection.</summary>
    public bool LastWasTwoLevel { get; private set; }

    /// <summary>The sorted blocks the last <see cref="Attend"/> read for KV head <paramref name="kvHead"/> (shared: every
    /// head returns the shared list). Empty when it read everything.</summary>
    public ReadOnlySpan<int> LastSelection(int kvHead)
    {
        if (_lastKvHeads == 0) return [];
        int h = LastWasPerHead ? kvHead : 0, cap = _selected.Length / Math.Max(1, _lastKvHeads);
        return _selected.AsSpan(h * cap, _selCount[h]);
    }

    // ---------------------------------------------------------------- summaries

    /// <summary>Folds written key rows (k: [positions.Length, kvDim]) into their block summaries; <paramref name="length"/>
    /// is the sequence length after the write. Rows are expected in position order within a block (a block is reset when
    /// its first position is written).</summary>
    public void Write(int layer, int seqId, ReadOnlySpan<int> positions, ReadOnlySpan<float> k, int length)
    {
        if (positions.Length == 0) return;
        var s = _sum[layer, seqId] ??= new Summary();
        int lo = int.MaxValue, hi = 0;
        foreach (int p in positions) { lo = Math.Min(lo, p); hi = Math.Max(hi, p); }
        s.Ensure(Math.Max(hi + 1, length), _g, _w, _sw);
        for (int i = 0; i < positions.Length; i++)
            Fold(s.Rows.AsSpan(positions[i] / _g * _w, _w), k.Slice(i * _kvDim, _kvDim), positions[i] % _g == 0);
        for (int sb = lo / _g / SuperBlocks; sb <= hi / _g / SuperBlocks; sb++) Resummarise(s, sb, Math.Max(hi + 1, length));
    }

    /// <summary>Reads the float32 key row of a kept position into k; false when the position holds no row (evicted).</summary>
    public delegate bool KeyRowReader(int position, Span<float> k);

    /// <summary>After the inner store was truncated to <paramref name="length"/>: re-summarises the block the new end falls
    /// in from the remaining float32 rows (<paramref name="inner"/>, the inner store's pages); length 0 drops the state.</summary>
    public void Truncate(int layer, int seqId, int length, ReadOnlySpan<KvPage> inner)
    {
        var pages = inner.ToArray();
        Truncate(layer, seqId, length, (pos, k) =>
        {
            foreach (var pg in pages)
                if (pos >= pg.StartPosition && pos < pg.StartPosition + pg.TokenCount)
                {
                    if (pg.Type != KvElementType.F32) throw new NotSupportedException("PageSelector re-summarises from a float32 inner store");
                    new ReadOnlySpan<float>((float*)pg.K + (long)(pos - pg.StartPosition) * pg.RowStride, _kvDim).CopyTo(k);
                    return true;
                }
            throw new InvalidOperationException($"position {pos} is not in the inner store's pages");
        });
    }

    /// <summary>After a truncation to <paramref name="length"/>: re-summarises the block the new end falls in from the key
    /// rows <paramref name="read"/> returns (positions it reports as evicted no longer count); length 0 drops the state.</summary>
    public void Truncate(int layer, int seqId, int length, KeyRowReader read)
    {
        if (length == 0) { _sum[layer, seqId] = null; return; }
        if (_sum[layer, seqId] is not { } s) return;
        int b = (length - 1) / _g;
        var row = s.Rows.AsSpan(b * _w, _w);
        var k = new float[_kvDim];
        bool first = true;
        for (int pos = b * _g; pos < length; pos++)
        {
            if (!read(pos, k)) continue;
            Fold(row, k, first);
            first = false;
        }
        Resummarise(s, b / SuperBlocks, length);
    }

    /// <summary>Bytes the summaries of (layer, seq) hold (block rows + super-block rows).</summary>
    public long HeldBytes(int layer, int seqId) =>
        _sum[layer, seqId] is { } s ? 4L * (s.Rows.Length + s.Super.Length) : 0;

    /// <summary>quest: row = [min | max] ∪ k; msa: row = Σ + k (reset: the row becomes k's summary).</summary>
    private void Fold(Span<float> row, ReadOnlySpan<float> k, bool reset)
    {
        int d = _kvDim;
        if (_quest)
        {
            var mn = row[..d]; var mx = row[d..];
            if (reset) { k.CopyTo(mn); k.CopyTo(mx); return; }
            for (int c = 0; c < d; c++) { mn[c] = MathF.Min(mn[c], k[c]); mx[c] = MathF.Max(mx[c], k[c]); }
        }
        else
        {
            if (reset) { k.CopyTo(row); return; }
            for (int c = 0; c < d; c++) row[c] += k[c];
        }
    }

    /// <summary>Super-block <paramref name="sb"/>'s [min | max] row from its blocks below ⌈length / G⌉ (msa: of their mean keys).</summary>
    private void Resummarise(Summary s, int sb, int length)
    {
        int blocks = (length + _g - 1) / _g;
        int b0 = sb * SuperBlocks, b1 = Math.Min(blocks, b0 + SuperBlocks), d = _kvDim;
        if (b1 <= b0) return;
        var dst = s.Super.AsSpan(sb * _sw, _sw);
        for (int b = b0; b < b1; b++)
        {
            var src = s.Rows.AsSpan(b * _w, _w);
            if (_quest)
            {
                if (b == b0) { src.CopyTo(dst); continue; }
                for (int c = 0; c < d; c++) { dst[c] = MathF.Min(dst[c], src[c]); dst[d + c] = MathF.Max(dst[d + c], src[d + c]); }
            }
            else
            {
                float inv = 1f / Math.Min(_g, length - b * _g);
                for (int c = 0; c < d; c++)
                {
                    float m = src[c] * inv;
                    if (b == b0) { dst[c] = m; dst[d + c] = m; }
                    else { dst[c] = MathF.Min(dst[c], m); dst[d + c] = MathF.Max(dst[d + c], m); }
                }
            }
        }
    }

    // ---------------------------------------------------------------- scoring

    /// <summary>
    /// The score of every block for every KV head for one decode query q ([HeadCount, HeadDim]) at sequence length
    /// <paramref name="length"/>: scores[h · blocks + b] (quest: Σ over h's query heads of Σ max(q·min, q·max); msa: Σ over
    /// h's query heads of q · mean key). scores: [KvHeadCount, ⌈length / G⌉]. For tests and reports.
    /// </summary>
    public void BlockScores(int layer, int seqId, ReadOnlySpan<float> q, AttentionParams p, int length, Span<float> scores)
    {
        var s = _sum[layer, seqId] ?? throw new InvalidOperationException($"no summaries for layer {layer}, sequence {seqId}");
        int blocks = (length + _g - 1) / _g;
        if (scores.Length < p.KvHeadCount * blocks) throw new ArgumentException("scores is too short", nameof(scores));
        BuildWeights(q, p);
        fixed (float* rows = s.Rows, w = _weights, sc = scores)
            for (int b = 0; b < blocks; b++)
                for (int h = 0; h < p.KvHeadCount; h++)
                    sc[h * blocks + b] = Score(rows + (long)b * _w, w, h, p.HeadDim, 1f / Math.Min(_g, length - b * _g));
    }

    private void BuildWeights(ReadOnlySpan<float> q, AttentionParams p)
    {
        int hd = p.HeadDim, kvh = p.KvHeadCount, group = p.HeadCount / kvh, per = _quest ? 2 * hd : hd, row = p.HeadCount * hd;
        if (q.Length == 0 || q.Length % row != 0) throw new ArgumentException($"query length {q.Length} is not a whole number of rows of {row}", nameof(q));
        int rows = q.Length / row;
        if (kvh * hd != _kvDim) throw new ArgumentException($"attention shape {kvh}×{hd} does not match the KV width {_kvDim}");
        Grow(ref _weights, kvh * per);
        var w = _weights.AsSpan(0, kvh * per);
        w.Clear();
        // a chunk (rows > 1): the weights are summed over its query rows too (see the header: Σ of per-query bounds)
        for (int r = 0; r < rows; r++)
        for (int h = 0; h < kvh; h++)
            for (int j = h * group; j < (h + 1) * group; j++)
            {
                var qj = q.Slice(r * row + j * hd, hd);
                var wh = w.Slice(h * per, per);
                if (_quest)
                    for (int c = 0; c < hd; c++) { float x = qj[c]; if (x < 0) wh[c] += x; else wh[hd + c] += x; }
                else
                    for (int c = 0; c < hd; c++) wh[c] += qj[c];
            }
        if (_quest) return;
        Grow(ref _superWeights, kvh * 2 * hd);
        for (int h = 0; h < kvh; h++)
            for (int c = 0; c < hd; c++)
            {
                float x = w[h * hd + c];
                _superWeights[h * 2 * hd + c] = MathF.Min(x, 0);
                _superWeights[h * 2 * hd + hd + c] = MathF.Max(x, 0);
            }
    }

    /// <summary>KV head h's upper bound of the scores of the blocks of one super row (w_lo·min + w_hi·max).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private float ScoreSuper(float* row, float* w, int h, int hd) =>
        Dot2(w + 2 * h * hd, row + h * hd, w + 2 * h * hd + hd, row + _kvDim + h * hd, hd);

    /// <summary>KV head h's score of one summary row (quest: w_lo·min + w_hi·max; msa: w·sum · invCount).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private float Score(float* row, float* w, int h, int hd, float invCount) => _quest
        ? Dot2(w + 2 * h * hd, row + h * hd, w + 2 * h * hd + hd, row + _kvDim + h * hd, hd)
        : Dot2(w + h * hd, row + h * hd, null, null, hd) * invCount;

    /// <summary>Σ a0·b0 (+ Σ a1·b1 when a1 is not null) over n floats; AVX-512, Vector256 or scalar.</summary>
    internal static float Dot2(float* a0, float* b0, float* a1, float* b1, int n)
    {
        int i = 0;
        float s = 0;
        if (Avx512F.IsSupported && n >= 16)
        {
            var acc0 = Vector512<float>.Zero; var acc1 = Vector512<float>.Zero;
            for (; i <= n - 16; i += 16)
            {
                acc0 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(a0 + i), Avx512F.LoadVector512(b0 + i), acc0);
                if (a1 != null) acc1 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(a1 + i), Avx512F.LoadVector512(b1 + i), acc1);
            }
            s = Vector512.Sum(acc0 + acc1);
        }
        else if (Vector256.IsHardwareAccelerated && n >= 8)
        {
            var acc0 = Vector256<float>.Zero; var acc1 = Vector256<float>.Zero;
            for (; i <= n - 8; i += 8)
            {
                acc0 = Vector256.FusedMultiplyAdd(Vector256.Load(a0 + i), Vector256.Load(b0 + i), acc0);
                if (a1 != null) acc1 = Vector256.FusedMultiplyAdd(Vector256.Load(a1 + i), Vector256.Load(b1 + i), acc1);
            }
            s = Vector256.Sum(acc0 + acc1);
        }
        for (; i < n; i++) s += a0[i] * b0[i] + (a1 != null ? a1[i] * b1[i] : 0f);
        return s;
    }

    // ---------------------------------------------------------------- selection + attention

    /// <summary>
    /// Decode attention (one query row) over the blocks selected from <paramref name="pages"/> (the presented pages, in
    /// position order; <paramref name="allPresent"/>: every position below length is in them). When <paramref name="score"/>
    /// is not null, adds each read token's attention mass (Σ over heads) to score[position]. Returns the tokens read per
    /// KV head (mean, rounded up).
    /// </summary>
    public long Attend(IBackend backend, int layer, int seqId, ReadOnlySpan<float> q, ReadOnlySpan<int> qPositions, ReadOnlySpan<KvPage> pages,
        AttentionParams p, int length, bool allPresent, Span<float> output, float[]? score)
    {
        var s = _sum[layer, seqId] ?? throw new InvalidOperationException($"no summaries for layer {layer}, sequence {seqId}");
        int g = _g, blocks = (length + g - 1) / g, kvh = p.KvHeadCount, hd = p.HeadDim, nq = qPositions.Length;
        if (nq == 0) throw new ArgumentException("attention needs at least one query row", nameof(qPositions));
        if (q.Length != nq * p.HeadCount * hd)
            throw new ArgumentException($"query length {q.Length} does not match {nq} rows of {p.HeadCount}×{hd}", nameof(q));
        LastWasPerHead = LastWasTwoLevel = false; _lastKvHeads = 0;

        // always-read blocks: sinks and the local window = [localStart, blocks): decode the last two blocks; a chunk the
        // block before its first query and every block it occupies (read with the causal mask)
        int sinkBlocks = Math.Min(blocks, (_spec.SinkTokens + g - 1) / g);
        int qMin = int.MaxValue;
        foreach (int qp in qPositions) qMin = Math.Min(qMin, qp);
        int localStart = nq == 1 ? blocks - 2 : Math.Max(0, Math.Min(blocks - 2, qMin / g - 1));
        if (!allPresent)
        {
            Grow(ref _present, blocks);
            _present.AsSpan(0, blocks).Clear();
            foreach (var pg in pages)
                if (pg.TokenCount > 0)
                    for (int b = pg.StartPosition / g; b <= (pg.StartPosition + pg.TokenCount - 1) / g && b < blocks; b++) _present[b] = true;
        }
        int need = (Math.Min(_spec.SelectionTokens(length), length) + g - 1) / g;
        int always = 0, present = 0, beyond = 0;   // beyond: chunk blocks past the first two local ones (not charged to the budget)
        for (int b = 0; b < blocks; b++)
            if (allPresent || _present[b])
            {
                present++;
                if (IsAlways(b, localStart, sinkBlocks)) always++;
                if (b >= Math.Max(sinkBlocks, localStart + 2)) beyond++;
            }
        int topK = Math.Min(present - always, Math.Max(1, need - (always - beyond)));
        if (topK >= present - always)
        {
            // every presented block is read: plain attention (the same for every head)
            return Full(backend, q, qPositions, pages, p, output, score);
        }

        bool perHead = PerKvHead && kvh > 1 && CanSplit(pages, hd);
        int lists = perHead ? kvh : 1;
        int cap = topK + always;
        Grow(ref _selected, lists * cap); Grow(ref _selCount, lists);
        BuildWeights(q, p);
        int supers = (blocks + SuperBlocks - 1) / SuperBlocks;
        int m = Math.Max(8, 2 * ((topK + SuperBlocks - 1) / SuperBlocks) + 2);
        bool twoLevel = TwoLevel && supers > 4 * m;
        Grow(ref _chosen, topK); Grow(ref _topScratch, blocks);
        fixed (float* rows = s.Rows, sup = s.Super, w = _weights, sw = _quest ? _weights : _superWeights)
        {
            if (!twoLevel)
            {
                // one pass over the summary rows: every head's score of every block
                Grow(ref _scores, kvh * blocks);
                fixed (float* sc = _scores)
                {
                    for (int b = 0; b < blocks; b++)
                    {
                        float* row = rows + (long)b * _w;
                        float inv = 1f / Math.Min(g, length - b * g);
                        bool skip = !(allPresent || _present[b]) || IsAlways(b, localStart, sinkBlocks);
                        for (int h = 0; h < kvh; h++) sc[h * blocks + b] = skip ? float.NaN : Score(row, w, h, hd, inv);
                    }
                    if (!perHead)
                        for (int h = 1; h < kvh; h++)
                            for (int b = 0; b < blocks; b++) sc[b] += sc[h * blocks + b];
                }
                for (int l = 0; l < lists; l++)
                {
                    int n = Planners.TopK(_scores.AsSpan(l * blocks, blocks), _chosen.AsSpan(0, topK), _topScratch);
                    Finish(l, cap, n, blocks, localStart, sinkBlocks, allPresent, _chosen);
                }
            }
            else
            {
                LastWasTwoLevel = true;
                Grow(ref _scores, kvh * supers); Grow(ref _superChosen, m);
                Grow(ref _cand, m * SuperBlocks); Grow(ref _candScores, m * SuperBlocks);
                fixed (float* sc = _scores)
                {
                    for (int sb = 0; sb < supers; sb++)
                    {
                        float* row = sup + (long)sb * _sw;
                        bool local = nq > 1 && sb * SuperBlocks >= localStart;   // a chunk's own super-blocks: read anyway
                        for (int h = 0; h < kvh; h++) sc[h * supers + sb] = local ? float.NaN : ScoreSuper(row, sw, h, hd);
                    }
                    if (!perHead)
                        for (int h = 1; h < kvh; h++)
                            for (int sb = 0; sb < supers; sb++) sc[sb] += sc[h * supers + sb];
                }
                for (int l = 0; l < lists; l++)
                {
                    int ns = Planners.TopK(_scores.AsSpan(l * supers, supers), _superChosen.AsSpan(0, m), _topScratch);
                    _superChosen.AsSpan(0, ns).Sort();
                    int nc = 0;
                    for (int i = 0; i < ns; i++)
                        for (int b = _superChosen[i] * SuperBlocks; b < Math.Min(blocks, (_superChosen[i] + 1) * SuperBlocks); b++)
                        {
                            _cand[nc] = b;
                            if (!(allPresent || _present[b]) || IsAlways(b, localStart, sinkBlocks)) _candScores[nc++] = float.NaN;
                            else
                            {
                                float* row = rows + (long)b * _w;
                                float inv = 1f / Math.Min(g, length - b * g), v = 0;
                                if (perHead) v = Score(row, w, l, hd, inv);
                                else for (int h = 0; h < kvh; h++) v += Score(row, w, h, hd, inv);
                                _candScores[nc++] = v;
                            }
                        }
                    int n = Planners.TopK(_candScores.AsSpan(0, nc), _chosen.AsSpan(0, topK), _topScratch);
                    for (int i = 0; i < n; i++) _chosen[i] = _cand[_chosen[i]];
                    Finish(l, cap, n, blocks, localStart, sinkBlocks, allPresent, _chosen);
                }
            }
        }
        LastWasPerHead = perHead; _lastKvHeads = lists;

        // page lists: list l = the pages of its blocks, offset to KV head l's channels when per head
        Grow(ref _pageStart, lists + 1);
        int count = 0;
        for (int l = 0; l < lists; l++)
        {
            _pageStart[l] = count;
            var sel = _selected.AsSpan(l * cap, _selCount[l]);
            int pi = 0;
            for (int r = 0; r < sel.Length;)
            {
                int b0 = sel[r], b1 = b0 + 1;
                for (r++; r < sel.Length && sel[r] == b1; r++) b1++;
                int t0 = b0 * g, t1 = Math.Min(b1 * g, length);
                while (pi < pages.Length && pages[pi].StartPosition + pages[pi].TokenCount <= t0) pi++;
                for (int pj = pi; pj < pages.Length && pages[pj].StartPosition < t1; pj++)
                {
                    var pg = pages[pj];
                    int a = Math.Max(t0, pg.StartPosition), e = Math.Min(t1, pg.StartPosition + pg.TokenCount);
                    if (e <= a) continue;
                    var slice = KvPages.Slice(pg, a - pg.StartPosition, e - a);
                    if (count == _pages.Length) Array.Resize(ref _pages, 2 * count);
                    _pages[count++] = perHead ? OffsetToHead(slice, l, hd) : slice;
                }
            }
        }
        _pageStart[lists] = count;

        long read = 0;
        int group = p.HeadCount / kvh, rowQ = group * hd, rowAll = p.HeadCount * hd;
        if (perHead && nq > 1) { Grow(ref _qHead, nq * rowQ); Grow(ref _oHead, nq * rowQ); }
        for (int l = 0; l < lists; l++)
        {
            var lp = _pages.AsSpan(_pageStart[l], _pageStart[l + 1] - _pageStart[l]);
            long total = 0;
            foreach (var pg in lp) total += pg.TokenCount;
            read += total;
            ReadOnlySpan<float> ql = q;
            Span<float> ol = output;
            if (perHead && nq == 1) { ql = q.Slice(l * rowQ, rowQ); ol = output.Slice(l * rowQ, rowQ); }
            else if (perHead)
            {
                // a chunk: gather KV head l's query heads of every row ([nq, group, hd]), scatter the output back below
                for (int r = 0; r < nq; r++) q.Slice(r * rowAll + l * rowQ, rowQ).CopyTo(_qHead.AsSpan(r * rowQ, rowQ));
                ql = _qHead.AsSpan(0, nq * rowQ); ol = _oHead.AsSpan(0, nq * rowQ);
            }
            var pl = perHead ? new AttentionParams(group, 1, hd, p.Scale) : p;
            if (score == null) backend.Attention(ql, qPositions, lp, pl, ol);
            else
            {
                int heads = pl.KvHeadCount;
                Grow(ref _mass, (int)(heads * total));
                var mass = _mass.AsSpan(0, (int)(heads * total));
                mass.Clear();
                backend.Attention(ql, qPositions, lp, pl, ol, mass);
                Fold(lp, mass, heads, total, score);
            }
            if (perHead && nq > 1)
                for (int r = 0; r < nq; r++) _oHead.AsSpan(r * rowQ, rowQ).CopyTo(output.Slice(r * rowAll + l * rowQ, rowQ));
        }
        return perHead ? (read + kvh - 1) / kvh : read;
    }

    /// <summary>Plain attention over every presented page (mass folded when asked).</summary>
    private long Full(IBackend backend, ReadOnlySpan<float> q, ReadOnlySpan<int> qPositions, ReadOnlySpan<KvPage> pages, AttentionParams p,
        Span<float> output, float[]? score)
    {
        long total = 0;
        foreach (var pg in pages) total += pg.TokenCount;
        if (score == null) { backend.Attention(q, qPositions, pages, p, output); return total; }
        Grow(ref _mass, (int)(p.KvHeadCount * total));
        var mass = _mass.AsSpan(0, (int)(p.KvHeadCount * total));
        mass.Clear();
        backend.Attention(q, qPositions, pages, p, output, mass);
        Fold(pages, mass, p.KvHeadCount, total, score);
        return total;
    }

    /// <summary>score[position] += Σ_heads mass[head, token] over the tokens of <paramref name="pages"/> in order.</summary>
    private static void Fold(ReadOnlySpan<KvPage> pages, ReadOnlySpan<float> mass, int heads, long total, float[] score)
    {
        int t = 0;
        foreach (var pg in pages)
            for (int j = 0; j < pg.TokenCount; j++, t++)
            {
                float m = 0;
                for (int h = 0; h < heads; h++) m += mass[(int)(h * total + t)];
                score[pg.StartPosition + j] += m;
            }
    }

    /// <summary>List l = the n chosen blocks plus the always-read ones, sorted.</summary>
    private void Finish(int l, int cap, int n, int blocks, int localStart, int sinkBlocks, bool allPresent, int[] chosen)
    {
        var dst = _selected.AsSpan(l * cap, cap);
        chosen.AsSpan(0, n).CopyTo(dst);
        for (int b = 0; b < sinkBlocks; b++) if (allPresent || _present[b]) dst[n++] = b;
        for (int b = Math.Max(sinkBlocks, localStart); b < blocks; b++) if (allPresent || _present[b]) dst[n++] = b;
        dst[..n].Sort();
        _selCount[l] = n;
    }

    private static bool IsAlways(int b, int localStart, int sinkBlocks) => b < sinkBlocks || b >= localStart;

    /// <summary>Whether every page's tier can be viewed one KV head at a time (quantized tiers need channel groups that do
    /// not straddle heads; Int4 needs whole bytes per head).</summary>
    private static bool CanSplit(ReadOnlySpan<KvPage> pages, int hd)
    {
        foreach (var pg in pages)
            if ((pg.Type is KvElementType.Int8 or KvElementType.Int4) && (pg.GroupSize <= 0 || hd % pg.GroupSize != 0 || (hd & 1) != 0)) return false;
        return true;
    }

    /// <summary>The channels of KV head h of a page (row stride unchanged; scales offset by the head's channel groups).</summary>
    internal static KvPage OffsetToHead(in KvPage pg, int h, int hd)
    {
        long c = (long)h * hd;
        return pg.Type switch
        {
            KvElementType.F32 => pg with { K = pg.K + (nint)(c * 4), V = pg.V + (nint)(c * 4) },
            KvElementType.F16 => pg with { K = pg.K + (nint)(c * 2), V = pg.V + (nint)(c * 2) },
            KvElementType.Int8 => pg with
            {
                K = pg.K + (nint)c, V = pg.V + (nint)c,
                KScale = pg.KScale + (nint)(c / pg.GroupSize * 4), VScale = pg.VScale + (nint)(c / pg.GroupSize * 4),
            },
            // keys: per (token group, channel) (scale, min); values: per (token, channel group) (scale, min)
            KvElementType.Int4 => pg with
            {
                K = pg.K + (nint)(c / 2), V = pg.V + (nint)(c / 2),
                KScale = pg.KScale + (nint)(c * 2 * 4), VScale = pg.VScale + (nint)(c / pg.GroupSize * 2 * 4),
            },
            _ => throw new NotSupportedException($"KV element type {pg.Type}"),
        };
    }

    private static void Grow<T>(ref T[] a, int n)
    {
        if (a.Length < n) a = new T[Math.Max(n, 2 * a.Length)];
    }

    /// <summary>Summaries of one (layer, sequence): rows [blocks, W] and super rows [supers, W], grown by a quarter.</summary>
    private sealed class Summary
    {
        public float[] Rows = [];
        public float[] Super = [];

        public void Ensure(int length, int g, int w, int sw)
        {
            int blocks = (length + g - 1) / g, supers = (blocks + SuperBlocks - 1) / SuperBlocks;
            // the summaries count in the store's held bytes: grow by a quarter (amortised O(1) per block), not by doubling
            if (Rows.Length < blocks * w) Array.Resize(ref Rows, Math.Max(blocks, Rows.Length / w * 5 / 4 + 4) * w);
            if (Super.Length < supers * sw) Array.Resize(ref Super, Math.Max(supers, Super.Length / sw * 5 / 4 + 1) * sw);
        }
    }
}
