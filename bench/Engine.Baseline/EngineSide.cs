// Owns: the engine side of the side-by-side benchmark — the same four bodies as LlamaSide (pp batch, tg from a depth,
// depth pre-fill, P parallel sequences) on the engine's CPU backend, so the runner can alternate them rep by rep.
// Invariants: as ModelBenchmark (Engine.Runtime.Benchmarking): every body starts from exactly `depth` cached positions,
// pp computes the last token's logits only, tg one forward per token; parallel is ParallelBenchmark (one
// InferenceEngine, P requests at once, greedy, no EOS stop, prompt processing included in the wall time).
using Engine.Formats;
using Engine.Kernels;
using Engine.Memory;
using Engine.Model;
using Engine.Runtime;
using Engine.Runtime.Benchmarking;

namespace Engine.Baseline;

public sealed class EngineSide : IDisposable
{
    private readonly ModelFile _file;
    private readonly IBackend _backend;
    private readonly TransformerModel _model;
    private readonly IKvStore _kv;
    private readonly float[] _logits;
    public int VocabSize { get; }
    public int Threads { get; }

    public EngineSide(string path, int threads, int capacity)
    {
        _file = ModelFiles.Open(path);
        _backend = Backends.Create("cpu", threads);
        Threads = _backend is CpuBackend cpu ? cpu.ThreadCount : 1;
        _model = ModelLoader.Load(_file, _backend);
        VocabSize = _model.Config.VocabSize;
        _kv = _model.CreateKvStore(capacity);
        _logits = new float[VocabSize];
    }

    public void TruncateTo(int depth) { if (depth == 0) _kv.Clear(0); else _kv.Truncate(0, depth); }

    /// <summary>Prompt tokens at positions depth.. in batches of ≤ <paramref name="batchSize"/>, last logits only.</summary>
    public void Prompt(ReadOnlySpan<int> tokens, int depth, int batchSize = 512)
    {
        for (int i0 = 0; i0 < tokens.Length; i0 += batchSize)
        {
            int n = Math.Min(batchSize, tokens.Length - i0);
            _model.Forward(ForwardBatch.ForSequence(tokens.Slice(i0, n), depth + i0), _kv, _logits, false);
        }
    }

    public void Generate(ReadOnlySpan<int> tokens, int depth)
    {
        for (int i = 0; i < tokens.Length; i++)
            _model.Forward(ForwardBatch.ForSequence(tokens.Slice(i, 1), depth + i), _kv, _logits, false);
    }

    /// <summary>One repetition of ParallelBenchmark (its own short warm-up included, untimed). Tokens/s.</summary>
    public static double Parallel(string path, int parallel, int genTokens, int promptTokens, int threads, int seed) =>
        ParallelBenchmark.Run(path, [parallel], genTokens, promptTokens, repetitions: 1, threads: threads, seed: seed)[0].TokensPerSecondMean;

    public void Dispose() { _kv.Dispose(); _model.Dispose(); _backend.Dispose(); _file.Dispose(); }
}
