// Owns: the llama.cpp side of the side-by-side benchmark, through LLamaSharp (llama.cpp in-process): load a GGUF with
// N threads, and the four timed bodies the runner interleaves with the engine's — one pp batch, tg single-token decodes
// from a depth, a depth pre-fill, and P sequences decoded together in one context (llama.cpp batches them).
// Invariants: every body starts from exactly `depth` cached positions of sequence 0 (positions ≥ depth are removed),
// the same token ids as the engine side are fed, only the logits the engine also computes are requested (pp: the last
// row; tg: every row; parallel: one row per sequence, greedy argmax in C#). KV cache and flash attention are
// llama.cpp's defaults unless given (llama-bench's defaults: F16 K/V); the runner prints what it used. Also linked into
// tests/Engine.Oracle.Tests (llama.cpp logits as an oracle).
// Source: llama.cpp tools/llama-bench (pp/tg/depth), tools/batched-bench (several sequences, one context).
using LLama;
using LLama.Common;
using LLama.Native;

namespace Engine.Baseline;

public sealed class LlamaSide : IDisposable
{
    private readonly LLamaWeights _weights;
    private readonly LLamaContext _context;
    private readonly LLamaBatch _batch = new();
    public int VocabSize { get; }
    public string KvType { get; }

    public LlamaSide(string path, int threads, int contextLength, int sequences, int batchSize, GGMLType? kvType = null,
        bool? flashAttention = null)
    {
        var p = new ModelParams(path)
        {
            ContextSize = (uint)contextLength,
            Threads = threads,
            BatchThreads = threads,
            BatchSize = (uint)batchSize,
            UBatchSize = (uint)batchSize,
            SeqMax = (uint)sequences,
            GpuLayerCount = 0,
        };
        if (kvType is { } t) { p.TypeK = t; p.TypeV = t; }
        if (flashAttention is { } fa) p.FlashAttention = fa;
        KvType = (kvType ?? GGMLType.GGML_TYPE_F16).ToString().Replace("GGML_TYPE_", "");
        _weights = LLamaWeights.LoadFromFile(p);
        _context = _weights.CreateContext(p);
        VocabSize = _weights.Vocab.Count;
    }

    /// <summary>Drops everything of every sequence at positions ≥ <paramref name="depth"/>.</summary>
    public void TruncateTo(int depth)
    {
        if (depth == 0) { _context.NativeHandle.MemoryClear(true); return; }
        for (int s = 0; s < _context.NativeHandle.MaxSeq; s++)
            _context.NativeHandle.MemorySequenceRemove((LLamaSeqId)s, s == 0 ? depth : 0, -1);
    }

    private void Decode()
    {
        var r = _context.NativeHandle.Decode(_batch);
        if (r != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode failed: {r}");
    }

    /// <summary>One batch of <paramref name="tokens"/> at positions depth.. of sequence 0 (in n_batch pieces), logits of
    /// the last token only.</summary>
    public void Prompt(ReadOnlySpan<int> tokens, int depth, int batchSize = 512)
    {
        for (int i0 = 0; i0 < tokens.Length; i0 += batchSize)
        {
            _batch.Clear();
            int n = Math.Min(batchSize, tokens.Length - i0);
            for (int i = 0; i < n; i++)
                _batch.Add(tokens[i0 + i], depth + i0 + i, (LLamaSeqId)0, i0 + i == tokens.Length - 1);
            Decode();
        }
    }

    /// <summary>Decodes <paramref name="tokens"/> one per llama_decode call from position <paramref name="depth"/>.</summary>
    public void Generate(ReadOnlySpan<int> tokens, int depth)
    {
        for (int i = 0; i < tokens.Length; i++)
        {
            _batch.Clear();
            _batch.Add(tokens[i], depth + i, (LLamaSeqId)0, true);
            Decode();
        }
    }

    /// <summary>P sequences: all prompts in one batch, then <paramref name="genTokens"/> steps of one greedy token per
    /// sequence, each step one llama_decode of P tokens. Returns the generated token count.</summary>
    public int Parallel(int[][] prompts, int genTokens)
    {
        int p = prompts.Length;
        _context.NativeHandle.MemoryClear(true);
        _batch.Clear();
        var lastIndex = new int[p];
        for (int s = 0; s < p; s++)
            for (int i = 0; i < prompts[s].Length; i++)
            {
                bool last = i == prompts[s].Length - 1;
                if (last) lastIndex[s] = _batch.TokenCount;
                _batch.Add(prompts[s][i], i, (LLamaSeqId)s, last);
            }
        Decode();
        var pos = prompts.Select(x => x.Length).ToArray();
        int generated = 0;
        for (int step = 0; step < genTokens; step++)
        {
            var next = new int[p];
            for (int s = 0; s < p; s++) next[s] = ArgMax(_context.NativeHandle.GetLogitsIth(lastIndex[s]));
            generated += p;
            if (step == genTokens - 1) break;   // the last sampled token needs no forward
            _batch.Clear();
            for (int s = 0; s < p; s++) { lastIndex[s] = _batch.TokenCount; _batch.Add(next[s], pos[s]++, (LLamaSeqId)s, true); }
            Decode();
        }
        return generated;
    }

    /// <summary>Logits of every token of one batch (the oracle's teacher-forced mode): [tokens][vocab].</summary>
    public float[] AllLogits(ReadOnlySpan<int> tokens)
    {
        _context.NativeHandle.MemoryClear(true);
        _batch.Clear();
        for (int i = 0; i < tokens.Length; i++) _batch.Add(tokens[i], i, (LLamaSeqId)0, true);
        Decode();
        var all = new float[tokens.Length * VocabSize];
        for (int i = 0; i < tokens.Length; i++) _context.NativeHandle.GetLogitsIth(i).CopyTo(all.AsSpan(i * VocabSize, VocabSize));
        return all;
    }

    private static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }

    public void Dispose() { _context.Dispose(); _weights.Dispose(); }
}
