// Owns: the forward pass of a pre-norm Llama-family decoder (Llama 1/2/3, Mistral, Qwen2, Qwen3), written once against
// IBackend; the architecture files only choose weights, RoPE style and the optional parts (q/k/v biases, q/k norms).
// Invariants: all tokens of a batch go through every matmul together (MatMul with n = batch size); K/V go through the
// IKvStore only; a batch may mix sequences (each maximal run of one sequence's tokens writes its K/V and attends over
// that sequence's pages — one page for a contiguous store, the block table for a paged one); the output head runs only
// for the rows whose logits are asked for; scratch buffers are allocated once per batch capacity (grown, never per token).
// To bound the activation memory of large prompt batches, the feed-forward block runs in token chunks of
// FeedForwardChunkTokens (its weights are streamed once per chunk — negligible next to the batch's compute) and the
// projection output reuses the normed buffer (dead by then): scratch for a 512-token Llama-1B batch is ~30 MiB instead of ~54 MiB.
// Math (per layer): h = x + Wo·Attn(RoPE(Wq·n1(x) [+bq] [, qnorm]), RoPE(Wk·n1(x) [+bk] [, knorm]), Wv·n1(x) [+bv]);
// x' = h + Wdown·(silu(Wgate·n2(h)) ⊙ Wup·n2(h)); logits = Wout·norm(x_L). Source: Llama paper / llama2.c run.c.
using Engine.Kernels;
using Engine.Memory;

namespace Engine.Model;

/// <summary>A Llama-family decoder bound to a backend.</summary>
public sealed class TransformerModel : ILanguageModel
{
    private readonly IBackend _backend;
    private readonly RopeParams _rope;
    private readonly AttentionParams _attention;
    private readonly IDisposable? _owner;
    private Scratch? _scratch;

    /// <summary>Tokens per feed-forward chunk (bounds the [tokens, ff] gate/up buffers); results do not depend on it
    /// beyond float rounding. Set before the first Forward (scratch is sized from it).</summary>
    public int FeedForwardChunkTokens { get; set; } = 128;

    public TransformerModel(ModelConfig config, TransformerWeights weights, IBackend backend, IDisposable? owner = null)
    {
        Config = config; Weights = weights; _backend = backend; _owner = owner;
        _rope = new RopeParams(config.RopeStyle, config.RopeDimensions, config.RopeFreqBase, config.RopeFreqScale, weights.RopeFreqFactors);
        _attention = new AttentionParams(config.HeadCount, config.KvHeadCount, config.HeadDim, 1f / MathF.Sqrt(config.HeadDim));
        _matrices = [weights.Output, .. weights.Layers.SelectMany(l => new[] { l.Query, l.Key, l.Value, l.Output, l.Gate, l.Up, l.Down })];
        backend.PrepareWeights(_matrices);   // the CPU backend repacks Q4_0/Q8_0 here (once per model)
    }

    private readonly Engine.Tensors.TensorView[] _matrices;

    public ModelConfig Config { get; }
    public TransformerWeights Weights { get; }
    public IBackend Backend => _backend;

    /// <summary>When set, runs every validated forward instead of the host-span path below (the GPU device forward);
    /// disposed with the model.</summary>
    public ITransformerExecutor? Executor { get; set; }

    public IKvStore CreateKvStore(int contextLength, int sequenceCapacity = 1) =>
        Executor?.CreateKvStore(contextLength, sequenceCapacity) ?? new ContiguousKvStore(Config.LayerCount, Config.KvDim, contextLength, sequenceCapacity);

    public void Forward(ForwardBatch batch, IKvStore kv, Span<float> logits, bool allLogits)
    {
        int n = batch.Count;
        if (!allLogits) { Forward(batch, kv, [n - 1], logits); return; }
        var rows = n <= 256 ? stackalloc int[n] : new int[n];
        for (int i = 0; i < n; i++) rows[i] = i;
        Forward(batch, kv, rows, logits);
    }

    public void Forward(ForwardBatch batch, IKvStore kv, ReadOnlySpan<int> logitRows, Span<float> logits)
    {
        var c = Config;
        batch.Validate(c.VocabSize);
        if (kv.LayerCount != c.LayerCount || kv.KvDim != c.KvDim)
            throw new ArgumentException($"KV store is [{kv.LayerCount} layers, {kv.KvDim}] but the model needs [{c.LayerCount}, {c.KvDim}]");
        int n = batch.Count;
        int need = logitRows.Length * c.VocabSize;
        if (logits.Length < need) throw new ArgumentException($"logits span holds {logits.Length} floats, need {need}");
        foreach (int r in logitRows)
            if ((uint)r >= (uint)n) throw new ArgumentOutOfRangeException(nameof(logitRows), $"logit row {r} is outside the batch (0..{n - 1})");
        foreach (int p in batch.Positions)
            if (p >= kv.Capacity) throw new KvCapacityException(p, kv.Capacity);
        if (Executor != null) { Executor.Forward(batch, kv, logitRows, logits); return; }

        var s = _scratch is { Capacity: var cap } && cap >= n ? _scratch : (_scratch = new Scratch(c, n, Math.Max(1, FeedForwardChunkTokens)));
        int dim = c.EmbeddingLength, qd = c.QueryDim, kd = c.KvDim, vd = c.ValueDim, ff = c.FeedForwardLength;
        var b = _backend;
        var positions = batch.Positions.AsSpan();

        var x = s.X.AsSpan(0, n * dim);          // [n, dim] residual stream
        var xn = s.Normed.AsSpan(0, n * dim);    // [n, dim]
        var q = s.Q.AsSpan(0, n * qd);           // [n, headCount, headDim]
        var k = s.K.AsSpan(0, n * kd);           // [n, kvHeadCount, headDim]
        var v = s.V.AsSpan(0, n * vd);           // [n, kvHeadCount, headDim]
        var att = s.Attn.AsSpan(0, n * qd);      // [n, headCount · headDim]
        var proj = xn;                           // [n, dim] projection outputs reuse the normed rows (consumed by then)
        int chunk = Math.Min(n, Math.Max(1, FeedForwardChunkTokens));

        b.GetRows(Weights.TokenEmbedding, batch.Tokens, x);
        for (int l = 0; l < c.LayerCount; l++)
        {
            var w = Weights.Layers[l];
            // Attention block.
            b.RmsNorm(x, w.AttentionNorm, c.RmsEpsilon, xn);
            b.MatMul(xn, n, w.Query, q);
            b.MatMul(xn, n, w.Key, k);
            b.MatMul(xn, n, w.Value, v);
            if (w.QueryBias != null) AddRows(q, w.QueryBias);
            if (w.KeyBias != null) AddRows(k, w.KeyBias);
            if (w.ValueBias != null) AddRows(v, w.ValueBias);
            if (w.QueryNorm != null) b.RmsNorm(q, w.QueryNorm, c.RmsEpsilon, q);   // per head: rows of headDim
            if (w.KeyNorm != null) b.RmsNorm(k, w.KeyNorm, c.RmsEpsilon, k);
            b.Rope(q, c.HeadCount, c.HeadDim, positions, _rope);
            b.Rope(k, c.KvHeadCount, c.HeadDim, positions, _rope);

            // Each maximal run of tokens of one sequence: store its K/V, then attend over that sequence's pages.
            for (int start = 0; start < n;)
            {
                int seq = batch.SequenceIds[start];
                int end = start + 1;
                while (end < n && batch.SequenceIds[end] == seq) end++;
                int len = end - start;
                kv.Write(l, seq, positions.Slice(start, len), k.Slice(start * kd, len * kd), v.Slice(start * vd, len * vd));
                b.Attention(q.Slice(start * qd, len * qd), positions.Slice(start, len), kv.Pages(l, seq), _attention,
                    att.Slice(start * qd, len * qd));
                start = end;
            }
            b.MatMul(att, n, w.Output, proj);
            b.Add(x, proj, x);

            // Feed-forward block (SwiGLU).
            b.RmsNorm(x, w.FeedForwardNorm, c.RmsEpsilon, xn);
            for (int t0 = 0; t0 < n; t0 += chunk)
            {
                int m = Math.Min(chunk, n - t0);
                var gate = s.Gate.AsSpan(0, m * ff);     // [m, ff]
                var up = s.Up.AsSpan(0, m * ff);         // [m, ff]
                b.MatMul(xn.Slice(t0 * dim, m * dim), m, w.Gate, gate);
                b.MatMul(xn.Slice(t0 * dim, m * dim), m, w.Up, up);
                b.SiluMul(gate, up, gate);
                b.MatMul(gate, m, w.Down, proj.Slice(t0 * dim, m * dim));   // overwrites only this chunk's (used) normed rows
            }
            b.Add(x, proj, x);
        }

        // Output head only for the requested rows: gather their normed states, one matmul.
        int rowsOut = logitRows.Length;
        if (rowsOut == 0) return;
        if (rowsOut == n && IsIdentity(logitRows)) b.RmsNorm(x, Weights.OutputNorm, c.RmsEpsilon, xn);
        else
            for (int i = 0; i < rowsOut; i++)
                b.RmsNorm(x.Slice(logitRows[i] * dim, dim), Weights.OutputNorm, c.RmsEpsilon, xn.Slice(i * dim, dim));
        b.MatMul(xn[..(rowsOut * dim)], rowsOut, Weights.Output, logits[..(rowsOut * c.VocabSize)]);
    }

    private static bool IsIdentity(ReadOnlySpan<int> rows)
    {
        for (int i = 0; i < rows.Length; i++) if (rows[i] != i) return false;
        return true;
    }

    /// <summary>rows[t, :] += bias for every row t.</summary>
    private void AddRows(Span<float> rows, float[] bias)
    {
        for (int o = 0; o < rows.Length; o += bias.Length)
            _backend.Add(rows.Slice(o, bias.Length), bias, rows.Slice(o, bias.Length));
    }

    public void Dispose()
    {
        Executor?.Dispose();
        _backend.ReleaseWeights(_matrices);
        _owner?.Dispose();
    }

    /// <summary>Activation buffers for up to <see cref="Capacity"/> tokens per forward.</summary>
    private sealed class Scratch
    {
        public Scratch(ModelConfig c, int capacity, int ffnChunk)
        {
            Capacity = capacity;
            X = new float[capacity * c.EmbeddingLength];
            Normed = new float[capacity * c.EmbeddingLength];
            Q = new float[capacity * c.QueryDim];
            K = new float[capacity * c.KvDim];
            V = new float[capacity * c.ValueDim];
            Attn = new float[capacity * c.QueryDim];
            Gate = new float[Math.Min(capacity, ffnChunk) * c.FeedForwardLength];
            Up = new float[Math.Min(capacity, ffnChunk) * c.FeedForwardLength];
        }

        public int Capacity { get; }
        public float[] X, Normed, Q, K, V, Attn, Gate, Up;
    }
}
