// Owns: the low-bit KIVI tier storage of PolicyKvStore (kivi2 / kivi3 and the byte-budget compositions mix2/3/4 and
// auto): one native chunk per quantized group of G = BlockSize tokens (KiviLowBit layout: K codes, V codes, key params
// [W, 2] half, value params [G, W / C, 2] half), applying MixPlanner's plan (quantize complete groups, drop the Full rows
// of tokens planned LowBit, free evicted groups), the Kivi page views (a page lies inside one group) and the chunk
// bookkeeping for rewrites / truncation. The rest of the store (Full rows, pages, attention mass) is shared.
// Invariants: Low[g] != 0 ⇔ group g is quantized; every kept token of a quantized group has codes in its chunk (a token
// held Full there is a duplicate that can be dropped at no cost); LowBytes = Σ bytes of the chunks held. A write into a
// quantized group first decodes the group's LowBit tokens to Full rows and frees the chunk (as UnpackInt4 does).
// Byte budget: Spec.Budget · length · (float32 K + V row) per (layer, sequence) for mix/auto, checked after every step's
// plan. The current write's rows are charged up to one key group: a long prompt chunk is held whole during its own step
// and planned (charged) with the next one — SnapKV's timing, as for the token policies.
using System.Runtime.InteropServices;
using Engine.Kernels;
using Engine.Tensors.Quants;

namespace Engine.Memory.Policies;

public sealed unsafe partial class PolicyKvStore
{
    private bool LowBitTier => Spec.Retention is RetentionKind.Kivi or RetentionKind.Mix;

    // mix/auto keep their Full tier (sinks, incomplete group, recent, heavy hitters) as half rows when the store owns them
    private bool OwnHalfRows => _own && !_slots && Spec.HalfRows;   // pool slots (serving path) hold float32 rows
    private int FullElementBytes => OwnHalfRows ? 2 : 4;
    // mix/auto hold few, scattered Full rows under a byte budget: smaller row blocks (4 tokens) waste less
    private int FullRowBlockTokens => Spec.Retention == RetentionKind.Mix ? Math.Min(BlockTokens, MixRowBlock) : BlockTokens;
    private const int MixRowBlock = 4;

    private void ToHalf(ReadOnlySpan<float> src, byte* dst)
    {
        var d = new Span<Half>(dst, KvDim);
        for (int i = 0; i < KvDim; i++) d[i] = (Half)src[i];
    }

    private void FromHalf(byte* src, Span<float> dst)
    {
        var s = new ReadOnlySpan<Half>(src, KvDim);
        for (int i = 0; i < KvDim; i++) dst[i] = (float)s[i];
    }

    /// <summary>Bits of the bulk tier of (layer, seq) (0 before its first plan or for other policies).</summary>
    /// <summary>Bits of the bulk tier of (layer, seq) (0 before its first plan or for other policies).</summary>
    public int LowBits(int layer, int seqId)
    {
        Check(layer, seqId);
        return _state[layer, seqId]?.LowBits ?? 0;
    }

    /// <summary>Tokens per key group of the bulk tier of (layer, seq) (0 before its first plan).</summary>
    public int LowGroup(int layer, int seqId)
    {
        Check(layer, seqId);
        return _state[layer, seqId]?.LowG ?? 0;
    }

    /// <summary>auto: the prompt-attention entropy its choice was based on (NaN otherwise).</summary>
    public double PromptEntropy(int layer, int seqId)
    {
        Check(layer, seqId);
        return _state[layer, seqId]?.Entropy ?? double.NaN;
    }

    /// <summary>K + V bytes (payload + scales / params) attention reads from a page.</summary>
    internal static long PageBytes(in KvPage pg)
    {
        long n = pg.TokenCount, w = pg.RowStride;
        return pg.Type switch
        {
            KvElementType.F32 => 2 * n * w * 4,
            KvElementType.F16 => 2 * n * w * 2,
            KvElementType.Int8 => 2 * n * (w + w / pg.GroupSize * 4),
            KvElementType.Int4 => n * w + ((n + pg.GroupSize - 1) / pg.GroupSize) * w * 8 + n * (w / pg.GroupSize) * 8,
            KvElementType.Kivi => 2 * n * KiviLowBit.RowBytes((int)w, pg.Bits) + 4 * w + 4 * n * (w / pg.GroupSize),
            _ => 0,
        };
    }

    private long LowGroupBytes(State st, int bits) => KiviLowBit.GroupBytes(st.LowG, KvDim, bits, Spec.ValueGroupFor(KvDim));

    /// <summary>
    /// The bulk tier of a (layer, sequence), chosen at its first plan (after the prompt's step). Named widths (kivi2/3,
    /// mix2/3/4) use <see cref="KvPolicySpec.BlockSize"/>-token key groups. auto reads the prompt's attention: the mass
    /// each token received per query that could see it (mass_t / queries at positions ≥ t); its normalized entropy says whether a few
    /// tokens carry the attention (below <see cref="DiffuseEntropy"/>: rank and evict, MixPlanner.ChooseBits) or it is
    /// spread out with nothing to rank by (a needle-like context: keep every token at the widest width whose bytes fit,
    /// 2× larger key groups if needed — eviction by score would drop what a later query looks for). ARKV uses the same
    /// entropy signal for its per-layer full-precision share.
    /// </summary>
    private void ChooseLow(State st, int old)
    {
        int g0 = Spec.BlockSize, cg = Spec.ValueGroupFor(KvDim);
        st.LowG = g0;
        if (Spec.Bits != 0) { st.LowBits = Spec.Bits; return; }
        // visibility of t = queries at positions ≥ t so far (suffix sum of the per-position query counts)
        var m = new float[old];
        long seen = 0;
        for (int t = Math.Min(old, st.Queries.Length) - 1; t >= 0; t--)
        {
            seen += st.Queries[t];
            m[t] = seen > 0 ? st.Mass[t] / seen : 0;
        }
        st.Queries = [];
        st.Entropy = Planners.NormalizedEntropy(m);
        double perToken = Spec.Budget * 2.0 * KvDim * sizeof(float);
        if (st.Entropy >= DiffuseEntropy)
        {
            foreach (int b in (int[])[4, 3, 2])
                foreach (int g in (int[])[g0, 2 * g0])
                    if (KiviLowBit.GroupBytes(g, KvDim, b, cg) / (double)g <= 0.9 * perToken) { st.LowBits = b; st.LowG = g; return; }
            st.LowBits = 2; st.LowG = 2 * g0;
            return;
        }
        st.LowBits = MixPlanner.ChooseBits(Spec.Budget, KvDim, g0, cg);
    }

    /// <summary>Counts the query positions of an attention call (until the first plan: auto's visibility per token).</summary>
    private static void CountQueries(State st, ReadOnlySpan<int> qPositions)
    {
        foreach (int q in qPositions)
        {
            if (q >= st.Queries.Length) Array.Resize(ref st.Queries, Math.Max(q + 1, 2 * st.Queries.Length));
            st.Queries[q]++;
        }
    }

    /// <summary>auto: prompt attention at least this spread out (normalized entropy of per-query mass) keeps every token.</summary>
    public const double DiffuseEntropy = 0.95;

    /// <summary>Plans (MixPlanner) and applies the composed tiers over the positions older than the current write.</summary>
    private void RetainLow(State st, ReadOnlySpan<KvPage> inner, int len)
    {
        int fresh = len - Math.Min(st.NewFrom, len), old = len - fresh;
        if (old == 0) return;
        long row = 2L * KvDim * FullElementBytes, row32 = 2L * KvDim * sizeof(float);
        if (st.LowBits == 0) ChooseLow(st, old);
        var costs = new MixCosts(row, LowGroupBytes(st, st.LowBits), st.LowG, Spec.SinkTokens, Spec.RecentFullPrecision, _own ? FullRowBlockTokens : 1);
        long? budget = Spec.Retention == RetentionKind.Mix ? (long)Math.Floor(Spec.Budget * len * row32) : null;
        int groups = (old + st.LowG - 1) / st.LowG;
        var grouped = new bool[groups];
        for (int g = 0; g < groups; g++) grouped[g] = st.Low[g] != 0;
        var tiers = st.Tiers.AsSpan(0, old);
        var scores = budget != null ? st.Mass.AsSpan(0, old) : ReadOnlySpan<float>.Empty;   // kivi2/3 do not rank
        MixPlanner.Plan(tiers, grouped, scores, costs, budget, Math.Min(fresh, st.LowG));
        // new chunks first (they need the float32 rows), then freed groups, then dropped rows
        for (int g = 0; g < groups; g++)
        {
            if (grouped[g] && st.Low[g] == 0) QuantizeGroup(st, inner, g, st.LowBits);
            else if (!grouped[g] && st.Low[g] != 0) FreeGroup(st, g);
        }
        var plan = MemoryMarshal.Cast<KvTier, byte>(st.Tiers.AsSpan(0, old));
        var now = MemoryMarshal.Cast<Held, byte>(st.Stored.AsSpan(0, old));
        for (int t = 0; t < old; t++)
        {
            t += plan[t..].CommonPrefixLength(now[t..]);             // skip positions already held as planned
            if (t >= old) break;
            var tier = st.Tiers[t]; var held = st.Stored[t];
            if (tier == KvTier.LowBit && held == Held.Full) { DropFull(st, t); st.Stored[t] = Held.Low; }
            else if (tier == KvTier.Evicted && held == Held.Full) { DropFull(st, t); st.Stored[t] = Held.None; }
            else if (tier == KvTier.Evicted && held == Held.Low) st.Stored[t] = Held.None;
            else throw new InvalidOperationException($"KV policy {Spec.Name}: position {t} planned {tier} but held as {held}");
        }
    }

    private void QuantizeGroup(State st, ReadOnlySpan<KvPage> inner, int g, int bits)
    {
        int w = KvDim, cg = Spec.ValueGroupFor(KvDim), rb = KiviLowBit.RowBytes(w, bits);
        var rowsK = new float[st.LowG * w]; var rowsV = new float[st.LowG * w];
        for (int i = 0; i < st.LowG; i++)
        {
            int p = g * st.LowG + i;
            if (st.Stored[p] == Held.Full) ReadFull(st, inner, p, rowsK.AsSpan(i * w, w), rowsV.AsSpan(i * w, w));
            else if (st.Stored[p] != Held.None) throw new InvalidOperationException($"position {p} held as {st.Stored[p]} cannot be quantized");
        }
        long bytes = LowGroupBytes(st, bits);
        byte* c = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        var chunk = new Span<byte>(c, (int)bytes);
        long vOff = (long)st.LowG * rb, kpOff = 2L * st.LowG * rb, vpOff = kpOff + 4L * w;
        KiviLowBit.QuantizeKeys(rowsK, w, st.LowG, w, bits, chunk[..(st.LowG * rb)], MemoryMarshal.Cast<byte, Half>(chunk.Slice((int)kpOff, 4 * w)));
        KiviLowBit.QuantizeValues(rowsV, w, st.LowG, w, bits, cg, chunk.Slice((int)vOff, st.LowG * rb), MemoryMarshal.Cast<byte, Half>(chunk[(int)vpOff..]));
        st.Low[g] = (nint)c; st.LowBytes += bytes;
    }

    private void FreeGroup(State st, int g)
    {
        NativeMemory.AlignedFree((void*)st.Low[g]);
        st.Low[g] = 0;
        st.LowBytes -= LowGroupBytes(st, st.LowBits);
    }

    /// <summary>Tokens [offset, offset + count) of group g's chunk as a Kivi page.</summary>
    private KvPage LowPage(State st, int g, int offset, int count)
    {
        nint c = st.Low[g];
        if (c == 0) throw new InvalidOperationException($"low-bit group {g} is not held");
        int bits = st.LowBits, w = KvDim, rb = KiviLowBit.RowBytes(w, bits), cg = Spec.ValueGroupFor(KvDim);
        long vOff = (long)st.LowG * rb, kpOff = 2L * st.LowG * rb, vpOff = kpOff + 4L * w;
        var pg = new KvPage(c, c + (nint)vOff, st.LowG, g * st.LowG, w)
        { Type = KvElementType.Kivi, Bits = bits, GroupSize = cg, KScale = c + (nint)kpOff, VScale = c + (nint)vpOff };
        return KvPages.Slice(pg, offset, count);
    }

    /// <summary>A write into quantized group g: its LowBit tokens become Full (decoded rows) and the chunk is freed.</summary>
    private void UnpackLow(State st, int g)
    {
        var chunk = LowPage(st, g, 0, st.LowG);
        nint mem = st.Low[g];
        st.Low[g] = 0;                              // detached first: the StoreFull calls below must not unpack it again
        int end = Math.Min((g + 1) * st.LowG, st.Length);
        var rk = new float[KvDim]; var rv = new float[KvDim];
        for (int q = g * st.LowG; q < end; q++)
        {
            if (st.Stored[q] != Held.Low) continue;
            fixed (float* pk = rk, pv = rv)
            {
                KvDecode.Row(chunk, true, q - g * st.LowG, pk, KvDim);
                KvDecode.Row(chunk, false, q - g * st.LowG, pv, KvDim);
            }
            st.Stored[q] = Held.None;
            st.Tiers[q] = KvTier.Full;
            StoreFull(st, q, rk, rv);
        }
        NativeMemory.AlignedFree((void*)mem);
        st.LowBytes -= LowGroupBytes(st, st.LowBits);
    }

    /// <summary>Truncation to <paramref name="length"/>: groups past it are freed, a group cut in two is unpacked.</summary>
    private void TruncateLow(State st, int length)
    {
        if (st.LowG == 0) return;
        for (int g = length / st.LowG; g < st.Low.Length; g++)
        {
            if (st.Low[g] == 0) continue;
            if (g * st.LowG < length)
            {
                // positions ≥ length were already released by the caller; keep [gG, length) as Full rows
                int saved = st.Length; st.Length = length;
                UnpackLow(st, g);
                st.Length = saved;
            }
            else FreeGroup(st, g);
        }
    }

    private sealed partial class State
    {
        public nint[] Low = [];                     // [groups] low-bit chunk of each quantized group (0 = none); kivi2/3, mix, auto
        public long LowBytes;                       // bytes of the chunks held
        public int LowBits;                         // bits of this (layer, seq)'s bulk tier (chosen at its first plan)
        public int LowG;                            // tokens per key group of this (layer, seq) (chosen with LowBits)
        public int[] Queries = [];                  // [position] query rows attended at that position, until the first plan (auto)
        public double Entropy = double.NaN;         // auto: normalized entropy of the per-query attention mass at the first plan

        partial void DisposeLow()
        {
            for (int g = 0; g < Low.Length; g++)
                if (Low[g] != 0) { NativeMemory.AlignedFree((void*)Low[g]); Low[g] = 0; }
            LowBytes = 0;
        }
    }
}
