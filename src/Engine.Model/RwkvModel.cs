// Owns: the forward pass of RWKV v5.2, v6 and v7 (rwkv.cpp model files) as an ILanguageModel whose "KV store" is a
// RecurrentStateStore: the model keeps no per-sequence state; each sequence's fixed-size state lives in the store.
// Invariants: a batch is processed per run of one sequence, in chunks of at most SequenceChunk tokens that never
// cross the store's checkpoint boundary (so automatic checkpoints hold the exact state at multiples of the interval);
// inside a chunk every matmul runs over all its tokens at once (IBackend.MatMul with n = chunk length, so quantized
// weights use the backend's kernels) and the recurrence runs token by token. SequenceChunk = 1 is one-token mode.
// State layout per layer (as rwkv.cpp's): [ffn token-shift C][att token-shift C][WKV heads H·N·N] = (2 + N)·C floats.
// Math per block: x += TimeMix(LN1(x)); x += ChannelMix(LN2(x)); logits = head · LN_out(x); x0 = LN0(emb[token]).
// Version parts (rwkv.cpp rwkv_graph.inc; RWKV papers "Eagle and Finch" 2404.05892 and "Goose" 2503.14456):
//   v5.2: lerp token shift (x·μ + x_prev·(1-μ)) for r,k,v,g; static decay w; WKV6 recurrence; GroupNorm(eps 1e-5);
//         y·silu(Wg·xg); channel mix r = σ(Wr·xr), k = relu(Wk·xk)², out = r ⊙ Wv·k.
//   v6:   data-dependent lerp: sx = x_prev - x, m = tanh(W1·(x + sx·μx)), x_s = x + sx·(μ_s + W2_s·m_s) for
//         s ∈ {w,k,v,r,g}; decay w = exp(-exp(time_decay + Wd2·tanh(Wd1·xw))) per token; GroupNorm eps 64e-5;
//         channel mix as v5 with x + sx·μ mixes.
//   v7:   x_s = x + sx·μ_s for r,w,k,v,a,g; w = exp(-e^-0.5·σ(w0 + W2·tanh(W1·xw))); a = σ(a0 + A2·A1·xa);
//         g = G2·σ(G1·xg); kk = L2norm_head(k ⊙ k_k); k ← k ⊙ (1 + (a-1) ⊙ k_a); v ← v + (v_first - v)·σ(v0 + V2·V1·xv)
//         (layer 0: v_first = v); WKV7 with a = -kk, b = kk ⊙ a; GroupNorm eps 64e-5; y += v·Σ_head(r ⊙ k ⊙ r_k);
//         out = Wo·(y ⊙ g); channel mix out = Wv·relu(Wk·(x + sx·μk))².
using Engine.Formats;
using Engine.Kernels;
using Engine.Memory;
using Engine.Memory.Recurrent;

namespace Engine.Model;

/// <summary>An RWKV v5.2 / v6 / v7 model bound to a backend.</summary>
public sealed class RwkvModel : ILanguageModel
{
    public const string Rwkv5 = "rwkv5", Rwkv6 = "rwkv6", Rwkv7 = "rwkv7";
    private const float LayerNormEps = 1e-5f;
    private static readonly float DecayScale7 = MathF.Exp(-0.5f);
    private readonly IBackend _backend;
    private readonly IDisposable? _owner;
    private Scratch? _scratch;
    private MemoryCache? _cache;   // Memory Caching segments of the sequence being run (set only inside Forward)

    public RwkvModel(RwkvWeights weights, IBackend backend, IDisposable? owner = null, string? architecture = null)
    {
        Weights = weights; _backend = backend; _owner = owner;
        UseSimd = backend is not ReferenceBackend;
        int c = weights.EmbeddingLength;
        Config = new ModelConfig
        {
            Architecture = architecture ?? "rwkv" + weights.Version,
            EmbeddingLength = c, LayerCount = weights.Layers.Length, FeedForwardLength = weights.FeedForwardLength,
            HeadCount = weights.HeadCount, KvHeadCount = weights.HeadCount, HeadDim = weights.HeadSize,
            ValueHeadDim = weights.HeadSize, RmsEpsilon = LayerNormEps, ContextLength = 1 << 20,
            VocabSize = weights.VocabSize, RopeStyle = RopeStyle.Normal, RopeDimensions = 0, RopeFreqBase = 0,
        };
    }

    /// <summary>Builds the model for an RWKV ModelFile (architecture rwkv5 / rwkv6 / rwkv7).</summary>
    public static RwkvModel Load(ModelFile file, IBackend backend, bool ownsFile = false) =>
        new(RwkvWeights.Load(file), backend, ownsFile ? file : null, file.Architecture);

    public static bool IsRwkv(string? architecture) => architecture is Rwkv5 or Rwkv6 or Rwkv7;

    public ModelConfig Config { get; }
    public RwkvWeights Weights { get; }
    public int Version => Weights.Version;

    /// <summary>Run the WKV recurrences with the Vector256 kernels (default: on every backend but the reference one).</summary>
    public bool UseSimd { get; set; }

    /// <summary>Most tokens per chunk in sequence mode; 1 = one-token (RNN) mode.</summary>
    public int SequenceChunk { get; set; } = 64;

    /// <summary>EXPERIMENTAL Memory Caching read mode (see RwkvMemoryCaching); null = the plain recurrence.</summary>
    public MemoryCachingOptions? MemoryCaching { get; set; }

    /// <summary>Options used by <see cref="CreateKvStore"/>.</summary>
    public RecurrentStoreOptions StoreOptions { get; set; } = new();

    /// <summary>Total tokens run through the network by this model (prefix reuse makes this smaller).</summary>
    public long TokensComputed { get; private set; }

    /// <summary>Floats of state per layer: (2 + N)·C.</summary>
    public int StateFloatsPerLayer => (2 + Weights.HeadSize) * Weights.EmbeddingLength;

    /// <summary>Bytes of recurrent state per sequence (independent of context length).</summary>
    public long StateBytesPerSequence => 4L * StateFloatsPerLayer * Weights.Layers.Length;

    public IKvStore CreateKvStore(int contextLength, int sequenceCapacity = 1) => CreateStateStore(sequenceCapacity);

    public RecurrentStateStore CreateStateStore(int sequenceCapacity = 1, RecurrentStoreOptions? options = null) =>
        new(Weights.Layers.Length, StateFloatsPerLayer, options ?? StoreOptions, sequenceCapacity);

    public void Forward(ForwardBatch batch, IKvStore kv, Span<float> logits, bool allLogits)
    {
        batch.Validate(Config.VocabSize);
        if (kv is not RecurrentStateStore store)
            throw new ArgumentException($"an RWKV model needs a RecurrentStateStore (from CreateKvStore), got {kv.GetType().Name}");
        if (store.LayerCount != Weights.Layers.Length || store.FloatsPerLayer != StateFloatsPerLayer)
            throw new ArgumentException($"state store is [{store.LayerCount} layers, {store.FloatsPerLayer}] but the model needs [{Weights.Layers.Length}, {StateFloatsPerLayer}]");
        int n = batch.Count, vocab = Config.VocabSize;
        int need = (allLogits ? n : 1) * vocab;
        if (logits.Length < need) throw new ArgumentException($"logits span holds {logits.Length} floats, need {need}");

        for (int start = 0; start < n;)
        {
            int seq = batch.SequenceIds[start];
            int end = start + 1;
            while (end < n && batch.SequenceIds[end] == seq) end++;
            if (batch.Positions[start] != store.Length(seq))
                throw new ArgumentException($"sequence {seq} has consumed {store.Length(seq)} tokens but the batch continues at position {batch.Positions[start]} (a recurrent state cannot skip or rewind)");
            for (int pos = start; pos < end;)
            {
                int len = Math.Min(Math.Min(Math.Max(1, SequenceChunk), end - pos), store.MaxTokensBeforeCheckpoint(seq));
                var mc = MemoryCaching;
                MemoryCache? cache = null;
                if (mc != null)
                {
                    if (mc.SegmentLength <= 0) throw new InvalidOperationException("MemoryCaching.SegmentLength must be > 0");
                    cache = store.GetAttachment(seq) as MemoryCache;
                    if (cache == null) store.SetAttachment(seq, cache = new MemoryCache(Weights.Layers.Length, Weights.EmbeddingLength));
                    len = Math.Min(len, mc.SegmentLength - cache.OpenCount);
                }
                var tokens = batch.Tokens.AsSpan(pos, len);
                bool wantAll = allLogits;
                bool wantLast = !allLogits && pos + len == n;
                Span<float> dst = wantAll ? logits.Slice(pos * vocab, len * vocab) : wantLast ? logits[..vocab] : default;
                _cache = cache;
                try { RunChunk(tokens, store.State(seq), dst, wantAll); }
                finally { _cache = null; }
                if (cache != null)
                {
                    cache.OpenCount += len;
                    if (cache.OpenCount == mc!.SegmentLength)
                        RwkvMemoryCaching.CloseSegment(cache, mc, store.State(seq), Weights.Layers.Length, StateFloatsPerLayer, Weights.EmbeddingLength);
                }
                store.Advance(seq, tokens);
                TokensComputed += len;
                pos += len;
            }
            start = end;
        }
    }

    /// <summary>
    /// Rewinds sequence <paramref name="seqId"/> of <paramref name="store"/> to exactly <paramref name="length"/>
    /// tokens of its history: restores the nearest checkpoint at or before it and recomputes only the tokens between.
    /// Returns how many tokens were recomputed (0 when a checkpoint sits exactly there).
    /// </summary>
    public int Rewind(RecurrentStateStore store, int seqId, int length)
    {
        var history = store.History(seqId).ToArray();
        if (length < 0 || length > history.Length)
            throw new ArgumentOutOfRangeException(nameof(length), $"length {length} is outside 0..{history.Length}");
        int restored = store.Rollback(seqId, length);
        int missing = length - restored;
        if (missing > 0)
            Forward(ForwardBatch.ForSequence(history.AsSpan(restored, missing), restored, seqId), store, new float[Config.VocabSize], false);
        return missing;
    }

    /// <summary>Runs <paramref name="tokens"/> from <paramref name="state"/> (updated in place). logits: empty (none),
    /// [vocab] (last token) or [n, vocab] (<paramref name="all"/>).</summary>
    public void RunChunk(ReadOnlySpan<int> tokens, Span<float> state, Span<float> logits, bool all)
    {
        var W = Weights;
        int n = tokens.Length, c = W.EmbeddingLength;
        var s = _scratch is { Capacity: var cap } && cap >= n ? _scratch : (_scratch = new Scratch(W, n));
        var b = _backend;
        var x = s.X.AsSpan(0, n * c);        // [n, C] residual stream
        var xn = s.Xn.AsSpan(0, n * c);      // [n, C] normed
        var prev = s.Prev.AsSpan(0, n * c);  // [n, C] token-shifted normed
        var y = s.Y.AsSpan(0, n * c);        // [n, C] block output

        b.GetRows(W.TokenEmbedding, tokens, x);
        RwkvKernels.LayerNorm(x, W.Ln0Weight, W.Ln0Bias, LayerNormEps, x);
        int per = StateFloatsPerLayer;
        for (int l = 0; l < W.Layers.Length; l++)
        {
            var lw = W.Layers[l];
            var ls = state.Slice(l * per, per);
            var ffnShift = ls[..c];
            var attShift = ls.Slice(c, c);
            var wkv = ls[(2 * c)..];

            RwkvKernels.LayerNorm(x, lw.Ln1Weight, lw.Ln1Bias, LayerNormEps, xn);
            RwkvKernels.Shift(xn, attShift, prev);
            switch (W.Version)
            {
                case 5: TimeMix5(lw, s, n, l, xn, prev, wkv, y); break;
                case 6: TimeMix6(lw, s, n, l, xn, prev, wkv, y); break;
                default: TimeMix7(lw, s, n, l, xn, prev, wkv, y); break;
            }
            b.Add(x, y, x);

            RwkvKernels.LayerNorm(x, lw.Ln2Weight, lw.Ln2Bias, LayerNormEps, xn);
            RwkvKernels.Shift(xn, ffnShift, prev);
            ChannelMix(lw, s, n, xn, prev, y);
            b.Add(x, y, x);
        }

        if (logits.IsEmpty) return;
        if (all)
        {
            RwkvKernels.LayerNorm(x, W.OutputNormWeight, W.OutputNormBias, LayerNormEps, xn);
            b.MatMul(xn, n, W.Output, logits[..(n * W.VocabSize)]);
        }
        else
        {
            var last = xn[..c];
            RwkvKernels.LayerNorm(x.Slice((n - 1) * c, c), W.OutputNormWeight, W.OutputNormBias, LayerNormEps, last);
            b.MatMul(last, 1, W.Output, logits[..W.VocabSize]);
        }
    }

    // dst = prev + (xn - prev)·mix = xn·mix + prev·(1 - mix)  (v5 lerp), per row of C.
    private static void Lerp(ReadOnlySpan<float> xn, ReadOnlySpan<float> prev, ReadOnlySpan<float> mix, Span<float> dst)
    {
        int c = mix.Length;
        for (int o = 0; o < xn.Length; o += c)
            for (int i = 0; i < c; i++) dst[o + i] = xn[o + i] * mix[i] + prev[o + i] * (1f - mix[i]);
    }

    // dst = xn + (prev - xn)·mix  (v6/v7 form), per row of C.
    private static void ShiftMix(ReadOnlySpan<float> xn, ReadOnlySpan<float> prev, ReadOnlySpan<float> mix, Span<float> dst)
    {
        int c = mix.Length;
        for (int o = 0; o < xn.Length; o += c)
            for (int i = 0; i < c; i++) dst[o + i] = xn[o + i] + (prev[o + i] - xn[o + i]) * mix[i];
    }

    private void TimeMix5(RwkvLayerWeights w, Scratch s, int n, int layerIndex, Span<float> xn, Span<float> prev, Span<float> wkv, Span<float> y)
    {
        int c = Weights.EmbeddingLength;
        var b = _backend;
        var t = s.T.AsSpan(0, n * c); var r = s.R.AsSpan(0, n * c); var k = s.K.AsSpan(0, n * c);
        var v = s.V.AsSpan(0, n * c); var g = s.G.AsSpan(0, n * c);
        Lerp(xn, prev, w.MixR!, t); b.MatMul(t, n, w.Receptance, r);
        Lerp(xn, prev, w.MixK!, t); b.MatMul(t, n, w.Key, k);
        Lerp(xn, prev, w.MixV!, t); b.MatMul(t, n, w.Value, v);
        Lerp(xn, prev, w.MixG!, t); b.MatMul(t, n, w.Gate!.Value, g);
        if (UseSimd) RwkvSimdKernels.Wkv6(r, k, v, w.Bonus!, w.Decay!, false, Weights.HeadCount, Weights.HeadSize, wkv, t);
        else RwkvKernels.Wkv6(r, k, v, w.Bonus!, w.Decay!, false, Weights.HeadCount, Weights.HeadSize, wkv, t);
        if (_cache != null) MemoryCachingRead(layerIndex, r, k, t);
        RwkvKernels.GroupNorm(t, Weights.HeadSize, w.LnXWeight, w.LnXBias, 1e-5f);
        for (int i = 0; i < t.Length; i++) t[i] *= g[i] * RwkvKernels.Sigmoid(g[i]);
        b.MatMul(t, n, w.Output, y);
    }

    private void TimeMix6(RwkvLayerWeights w, Scratch s, int n, int layerIndex, Span<float> xn, Span<float> prev, Span<float> wkv, Span<float> y)
    {
        int c = Weights.EmbeddingLength;
        var b = _backend;
        var t = s.T.AsSpan(0, n * c); var r = s.R.AsSpan(0, n * c); var k = s.K.AsSpan(0, n * c);
        var v = s.V.AsSpan(0, n * c); var g = s.G.AsSpan(0, n * c); var dec = s.W.AsSpan(0, n * c);
        int d5 = (int)w.MaaW1!.Value.Shape[1], d = d5 / 5;
        var lora = s.Lora(n * d5);               // [n, 5·D]
        var part = s.Lora2(n * d);               // [n, D]
        var m = s.M.AsSpan(0, n * c);            // [n, C]

        ShiftMix(xn, prev, w.MaaX!, t);
        b.MatMul(t, n, w.MaaW1.Value, lora);
        for (int i = 0; i < lora.Length; i++) lora[i] = MathF.Tanh(lora[i]);
        // slot order of maa_w2: w, k, v, r, g
        var mixes = new[] { w.MaaW!, w.MaaK!, w.MaaV!, w.MaaR!, w.MaaG! };
        for (int slot = 0; slot < 5; slot++)
        {
            for (int tok = 0; tok < n; tok++) lora.Slice(tok * d5 + slot * d, d).CopyTo(part.Slice(tok * d, d));
            b.MatMul(part, n, w.MaaW2![slot], m);
            var mu = mixes[slot];
            for (int o = 0; o < n * c; o += c)
                for (int i = 0; i < c; i++) m[o + i] = xn[o + i] + (prev[o + i] - xn[o + i]) * (mu[i] + m[o + i]);
            switch (slot)
            {
                case 0:
                {
                    int dd = (int)w.DecayW1!.Value.Shape[1];
                    var h = s.Lora2(n * dd);
                    b.MatMul(m, n, w.DecayW1.Value, h);
                    for (int i = 0; i < h.Length; i++) h[i] = MathF.Tanh(h[i]);
                    b.MatMul(h, n, w.DecayW2!.Value, dec);
                    var td = w.Decay!;
                    for (int o = 0; o < n * c; o += c)
                        for (int i = 0; i < c; i++) dec[o + i] = MathF.Exp(-MathF.Exp(dec[o + i] + td[i]));
                    break;
                }
                case 1: b.MatMul(m, n, w.Key, k); break;
                case 2: b.MatMul(m, n, w.Value, v); break;
                case 3: b.MatMul(m, n, w.Receptance, r); break;
                case 4: b.MatMul(m, n, w.Gate!.Value, g); break;
            }
        }
        if (UseSimd) RwkvSimdKernels.Wkv6(r, k, v, w.Bonus!, dec, true, Weights.HeadCount, Weights.HeadSize, wkv, t);
        else RwkvKernels.Wkv6(r, k, v, w.Bonus!, dec, true, Weights.HeadCount, Weights.HeadSize, wkv, t);
        if (_cache != null) MemoryCachingRead(layerIndex, r, k, t);
        RwkvKernels.GroupNorm(t, Weights.HeadSize, w.LnXWeight, w.LnXBias, 64e-5f);
        for (int i = 0; i < t.Length; i++) t[i] *= g[i] * RwkvKernels.Sigmoid(g[i]);
        b.MatMul(t, n, w.Output, y);
    }

    private void TimeMix7(RwkvLayerWeights w, Scratch s, int n, int layerIndex, Span<float> xn, Span<float> prev, Span<float> wkv, Span<float> y)
    {
        int c = Weights.EmbeddingLength, hs = Weights.HeadSize;
        var b = _backend;
        var t = s.T.AsSpan(0, n * c); var r = s.R.AsSpan(0, n * c); var k = s.K.AsSpan(0, n * c);
        var v = s.V.AsSpan(0, n * c); var g = s.G.AsSpan(0, n * c); var dec = s.W.AsSpan(0, n * c);
        var a = s.A.AsSpan(0, n * c); var kk = s.KK.AsSpan(0, n * c); var bb = s.M.AsSpan(0, n * c);
        var vFirst = s.VFirst.AsSpan(0, n * c);
        var mix = w.XMix!;
        ReadOnlySpan<float> Mu(int slot) => mix.AsSpan(slot * c, c);

        ShiftMix(xn, prev, Mu(0), t); b.MatMul(t, n, w.Receptance, r);
        // decay
        ShiftMix(xn, prev, Mu(1), t);
        LoraInto(t, n, w.W1!.Value, w.W2!.Value, Tanh: true, dec, s);
        for (int o = 0; o < n * c; o += c)
            for (int i = 0; i < c; i++) dec[o + i] = MathF.Exp(-DecayScale7 * RwkvKernels.Sigmoid(w.W0![i] + dec[o + i]));
        ShiftMix(xn, prev, Mu(2), t); b.MatMul(t, n, w.Key, k);
        ShiftMix(xn, prev, Mu(3), t); b.MatMul(t, n, w.Value, v);
        if (layerIndex == 0) v.CopyTo(vFirst);
        else
        {
            LoraInto(t, n, w.V1!.Value, w.V2!.Value, Tanh: false, bb, s);
            for (int o = 0; o < n * c; o += c)
                for (int i = 0; i < c; i++)
                    v[o + i] += (vFirst[o + i] - v[o + i]) * RwkvKernels.Sigmoid(w.V0![i] + bb[o + i]);
        }
        ShiftMix(xn, prev, Mu(4), t);
        LoraInto(t, n, w.A1!.Value, w.A2!.Value, Tanh: false, a, s);
        for (int o = 0; o < n * c; o += c)
            for (int i = 0; i < c; i++) a[o + i] = RwkvKernels.Sigmoid(w.A0![i] + a[o + i]);
        ShiftMix(xn, prev, Mu(5), t);
        {
            int dg = (int)w.G1!.Value.Shape[1];
            var h = s.Lora2(n * dg);
            b.MatMul(t, n, w.G1.Value, h);
            for (int i = 0; i < h.Length; i++) h[i] = RwkvKernels.Sigmoid(h[i]);
            b.MatMul(h, n, w.G2!.Value, g);
        }
        // kk = L2-normalised (k ⊙ k_k) per head; k ← k ⊙ (1 + (a - 1) ⊙ k_a); WKV7 with a' = -kk, b' = kk ⊙ a.
        for (int o = 0; o < n * c; o += hs)
        {
            int ch = o % c;
            double sq = 0;
            for (int j = 0; j < hs; j++) { float e = k[o + j] * w.KK![ch + j]; kk[o + j] = e; sq += e * e; }
            float inv = 1f / MathF.Max((float)Math.Sqrt(sq), 1e-12f);
            for (int j = 0; j < hs; j++) kk[o + j] *= inv;
        }
        for (int o = 0; o < n * c; o += c)
            for (int i = 0; i < c; i++)
            {
                k[o + i] *= 1f + (a[o + i] - 1f) * w.KA![i];
                bb[o + i] = kk[o + i] * a[o + i];
                kk[o + i] = -kk[o + i];
            }
        if (UseSimd) RwkvSimdKernels.Wkv7(r, dec, k, v, kk, bb, Weights.HeadCount, hs, wkv, t);
        else RwkvKernels.Wkv7(r, dec, k, v, kk, bb, Weights.HeadCount, hs, wkv, t);
        if (_cache != null) MemoryCachingRead(layerIndex, r, k, t);
        RwkvKernels.GroupNorm(t, hs, w.LnXWeight, w.LnXBias, 64e-5f);
        for (int o = 0; o < n * c; o += hs)
        {
            int ch = o % c;
            float dot = 0;
            for (int j = 0; j < hs; j++) dot += r[o + j] * k[o + j] * w.RK![ch + j];
            for (int j = 0; j < hs; j++) t[o + j] += v[o + j] * dot;
        }
        for (int i = 0; i < t.Length; i++) t[i] *= g[i];
        b.MatMul(t, n, w.Output, y);
    }

    private void MemoryCachingRead(int layer, ReadOnlySpan<float> r, ReadOnlySpan<float> k, Span<float> y)
    {
        RwkvMemoryCaching.Read(_cache!, MemoryCaching!, layer, Weights.Version == 7, r, Weights.HeadCount, Weights.HeadSize, y);
        RwkvMemoryCaching.AccumulateKeys(_cache!, layer, k);
    }

    /// <summary>dst = W2 · f(W1 · x) with f = tanh or identity; x: [n, C], dst: [n, C].</summary>
    private void LoraInto(ReadOnlySpan<float> x, int n, Engine.Tensors.TensorView w1, Engine.Tensors.TensorView w2, bool Tanh, Span<float> dst, Scratch s)
    {
        int d = (int)w1.Shape[1];
        var h = s.Lora2(n * d);
        _backend.MatMul(x, n, w1, h);
        if (Tanh) for (int i = 0; i < h.Length; i++) h[i] = MathF.Tanh(h[i]);
        _backend.MatMul(h, n, w2, dst);
    }

    private void ChannelMix(RwkvLayerWeights w, Scratch s, int n, Span<float> xn, Span<float> prev, Span<float> y)
    {
        int c = Weights.EmbeddingLength, ff = Weights.FeedForwardLength;
        var b = _backend;
        var t = s.T.AsSpan(0, n * c); var r = s.R.AsSpan(0, n * c);
        var hidden = s.Ffn.AsSpan(0, n * ff);
        if (Weights.Version == 5) Lerp(xn, prev, w.FfnMixK!, t); else ShiftMix(xn, prev, w.FfnMixK!, t);
        b.MatMul(t, n, w.FfnKey, hidden);
        for (int i = 0; i < hidden.Length; i++) { float e = MathF.Max(hidden[i], 0f); hidden[i] = e * e; }
        b.MatMul(hidden, n, w.FfnValue, y);
        if (Weights.Version == 7) return;
        if (Weights.Version == 5) Lerp(xn, prev, w.FfnMixR!, t); else ShiftMix(xn, prev, w.FfnMixR!, t);
        b.MatMul(t, n, w.FfnReceptance!.Value, r);
        for (int i = 0; i < y.Length; i++) y[i] *= RwkvKernels.Sigmoid(r[i]);
    }

    public void Dispose() => _owner?.Dispose();

    /// <summary>Activation buffers for up to <see cref="Capacity"/> tokens per chunk.</summary>
    private sealed class Scratch
    {
        private float[] _lora = [], _lora2 = [];

        public Scratch(RwkvWeights w, int capacity)
        {
            Capacity = capacity;
            int nc = capacity * w.EmbeddingLength;
            X = new float[nc]; Xn = new float[nc]; Prev = new float[nc]; Y = new float[nc]; T = new float[nc];
            R = new float[nc]; K = new float[nc]; V = new float[nc]; G = new float[nc]; W = new float[nc];
            A = new float[nc]; KK = new float[nc]; M = new float[nc]; VFirst = new float[nc];
            Ffn = new float[capacity * w.FeedForwardLength];
        }

        public int Capacity { get; }
        public float[] X, Xn, Prev, Y, T, R, K, V, G, W, A, KK, M, VFirst, Ffn;

        public Span<float> Lora(int len) => (_lora.Length >= len ? _lora : (_lora = new float[len])).AsSpan(0, len);
        public Span<float> Lora2(int len) => (_lora2.Length >= len ? _lora2 : (_lora2 = new float[len])).AsSpan(0, len);
    }
}
