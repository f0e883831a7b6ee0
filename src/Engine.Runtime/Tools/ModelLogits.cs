// Owns: the raw logits of every position of a token sequence fed exactly as given (no BOS added), as one batch or one
// token per forward (decode), with an F32 KV store — what `engine logits` writes (the layout of the shared reference
// fixtures' `*.logits.f32`: [n_tokens][n_vocab]).
// Invariants: token ids are checked against the vocabulary and the sequence against the model's context before any
// forward; the result is the model's output, unchanged.
namespace Engine.Runtime.Tools;

using Engine.Formats;
using Engine.Model;

/// <summary>Logits of a token sequence: <see cref="Values"/> is [tokens, <see cref="VocabSize"/>].</summary>
public sealed record LogitsResult(float[] Values, int VocabSize, string BackendName, TimeSpan ForwardTime);

public static class ModelLogits
{
    /// <summary>Loads <paramref name="modelPath"/> on <paramref name="backend"/> and computes the logits of every position of
    /// <paramref name="ids"/> (one batch, or one token per forward when <paramref name="decode"/>).</summary>
    public static LogitsResult Compute(string modelPath, string backend, int threads, int[] ids, bool decode, CancellationToken cancellationToken = default)
    {
        if (!File.Exists(modelPath) && !Directory.Exists(modelPath)) throw new FileNotFoundException($"model file not found: {modelPath}");
        using var file = ModelFiles.Open(modelPath);
        using var be = Backends.Create(backend, threads);
        using var m = Backends.LoadModel(file, be);
        int vocab = m.Config.VocabSize;
        if (ids.Length > m.Config.ContextLength)
            throw new ArgumentException($"{ids.Length} tokens exceed the model's context length {m.Config.ContextLength}");
        foreach (int id in ids)
            if ((uint)id >= (uint)vocab) throw new ArgumentException($"token id {id} is outside the vocabulary (0..{vocab - 1})");
        using var kv = m.CreateKvStore(ids.Length);
        var logits = new float[ids.Length * vocab];   // [n_tokens, n_vocab]
        var sw = System.Diagnostics.Stopwatch.StartNew();
        if (!decode)
            m.Forward(ForwardBatch.ForSequence(ids, 0), kv, logits, allLogits: true);
        else
            for (int t = 0; t < ids.Length; t++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                m.Forward(ForwardBatch.ForSequence(ids.AsSpan(t, 1), t), kv, logits.AsSpan(t * vocab, vocab), allLogits: false);
            }
        return new LogitsResult(logits, vocab, be.Name, sw.Elapsed);
    }
}
