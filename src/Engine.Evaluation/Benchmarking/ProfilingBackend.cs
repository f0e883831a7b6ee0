// Owns: an IBackend decorator that times every op (Stopwatch ticks) and groups the time by op — matmuls by weight name
// without the layer prefix ("attn_q", "ffn_down", "output"), so a profile shows where a forward pass spends its time.
// Invariant: results equal the wrapped backend's (it only forwards calls); adds ~50 ns per op. Not thread-safe, like
// the backends it wraps. Used by `engine bench --profile`.
using System.Diagnostics;
using Engine.Kernels;
using Engine.Tensors;

namespace Engine.Runtime.Benchmarking;

public sealed class ProfilingBackend : IBackend
{
    private readonly IBackend _inner;
    private readonly bool _ownsInner;
    private readonly Dictionary<string, (long Ticks, long Calls)> _ops = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _matMulKeys = new(StringComparer.Ordinal);

    public ProfilingBackend(IBackend inner, bool ownsInner = true) { _inner = inner; _ownsInner = ownsInner; }

    public string Name => _inner.Name;

    /// <summary>Accumulated (seconds, calls) per op, largest first.</summary>
    public IReadOnlyList<(string Op, double Seconds, long Calls)> Snapshot() =>
        _ops.Select(kv => (kv.Key, kv.Value.Ticks / (double)Stopwatch.Frequency, kv.Value.Calls)).OrderByDescending(e => e.Item2).ToList();

    public void Reset() => _ops.Clear();

    private void Add(string op, long start)
    {
        long t = Stopwatch.GetTimestamp() - start;
        _ops[op] = _ops.TryGetValue(op, out var e) ? (e.Ticks + t, e.Calls + 1) : (t, 1);
    }

    private string MatMulKey(TensorView w)
    {
        if (_matMulKeys.TryGetValue(w.Name, out var k)) return k;
        string n = w.Name;
        if (n.StartsWith("blk.")) { int dot = n.IndexOf('.', 4); if (dot > 0) n = n[(dot + 1)..]; }
        if (n.EndsWith(".weight")) n = n[..^7];
        k = $"matmul {n} ({w.Type})";
        _matMulKeys[w.Name] = k;
        return k;
    }

    public void MatMul(ReadOnlySpan<float> x, int n, TensorView w, Span<float> y)
    {
        long t = Stopwatch.GetTimestamp(); _inner.MatMul(x, n, w, y); Add(MatMulKey(w), t);
    }

    public void GetRows(TensorView table, ReadOnlySpan<int> ids, Span<float> dst)
    {
        long t = Stopwatch.GetTimestamp(); _inner.GetRows(table, ids, dst); Add("get_rows", t);
    }

    public void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> y)
    {
        long t = Stopwatch.GetTimestamp(); _inner.RmsNorm(x, weight, eps, y); Add("rms_norm", t);
    }

    public void Rope(Span<float> x, int headCount, int headDim, ReadOnlySpan<int> positions, RopeParams rope)
    {
        long t = Stopwatch.GetTimestamp(); _inner.Rope(x, headCount, headDim, positions, rope); Add("rope", t);
    }

    public void Softmax(Span<float> x)
    {
        long t = Stopwatch.GetTimestamp(); _inner.Softmax(x); Add("softmax", t);
    }

    public void SiluMul(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> dst)
    {
        long t = Stopwatch.GetTimestamp(); _inner.SiluMul(gate, up, dst); Add("silu_mul", t);
    }

    public void Add(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> dst)
    {
        long t = Stopwatch.GetTimestamp(); _inner.Add(a, b, dst); Add("add", t);
    }

    public void Attention(ReadOnlySpan<float> q, ReadOnlySpan<int> qPositions, ReadOnlySpan<KvPage> pages, AttentionParams p, Span<float> output)
    {
        long t = Stopwatch.GetTimestamp(); _inner.Attention(q, qPositions, pages, p, output); Add("attention", t);
    }

    public void Dispose() { if (_ownsInner) _inner.Dispose(); }
}
