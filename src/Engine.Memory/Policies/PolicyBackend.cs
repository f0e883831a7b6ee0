// Owns: the backend decorator that lets a PolicyKvStore see the query of each attention call (needed for read-time
// selection and attention-mass feedback) while the model code stays unchanged: the model is built over this backend,
// every op but Attention passes straight through.
// Invariant: Attention over pages that the attached store did not just return runs unchanged on the inner backend.
using Engine.Kernels;
using Engine.Tensors;

namespace Engine.Memory.Policies;

public sealed class PolicyBackend(IBackend inner) : IBackend
{
    public IBackend Inner { get; } = inner;

    /// <summary>The policy store whose pages this backend's attention calls may receive (null: pass-through).</summary>
    public PolicyKvStore? Store { get; set; }

    public string Name => Inner.Name;
    public void MatMul(ReadOnlySpan<float> x, int n, TensorView w, Span<float> y) => Inner.MatMul(x, n, w, y);
    public void GetRows(TensorView table, ReadOnlySpan<int> ids, Span<float> dst) => Inner.GetRows(table, ids, dst);
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

    /// <summary>Does not dispose the inner backend (its owner does).</summary>
    public void Dispose() { }
}
