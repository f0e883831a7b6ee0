// Tests: the Vector256 WKV kernels against the scalar definitions on random inputs (v5/v6 static and per-token
// decay: bit-identical; v7: reordered reductions, relative 1e-5), and hand-computed one-step cases of both
// recurrences (independent of either implementation).
using Engine.Model;

namespace Engine.Recurrent.Tests;

public class RwkvKernelTests
{
    private static float[] Rand(Random r, int n, float lo = -1, float hi = 1) =>
        Enumerable.Range(0, n).Select(_ => lo + (float)r.NextDouble() * (hi - lo)).ToArray();

    [TestCase(8, 3, 5, false)]
    [TestCase(8, 16, 4, true)]
    [TestCase(64, 1, 3, true)]
    [TestCase(6, 2, 2, true)] // not a multiple of 8: scalar fallback
    public void Wkv6_Simd_EqualsScalar(int hs, int heads, int n, bool perToken)
    {
        var rnd = new Random(hs * 100 + heads);
        int c = hs * heads;
        float[] r = Rand(rnd, n * c), k = Rand(rnd, n * c), v = Rand(rnd, n * c), u = Rand(rnd, c);
        float[] w = Rand(rnd, perToken ? n * c : c, 0.5f, 1f);
        float[] s1 = Rand(rnd, heads * hs * hs), s2 = (float[])s1.Clone();
        float[] y1 = new float[n * c], y2 = new float[n * c];
        RwkvKernels.Wkv6(r, k, v, u, w, perToken, heads, hs, s1, y1);
        RwkvSimdKernels.Wkv6(r, k, v, u, w, perToken, heads, hs, s2, y2);
        Assert.That(y2, Is.EqualTo(y1));
        Assert.That(s2, Is.EqualTo(s1));
    }

    [TestCase(64, 1, 4)]
    [TestCase(8, 8, 3)]
    [TestCase(4, 2, 2)]
    public void Wkv7_Simd_EqualsScalar(int hs, int heads, int n)
    {
        var rnd = new Random(hs * 7 + heads);
        int c = hs * heads;
        float[] r = Rand(rnd, n * c), w = Rand(rnd, n * c, 0.5f, 1f), k = Rand(rnd, n * c), v = Rand(rnd, n * c);
        float[] a = Rand(rnd, n * c), b = Rand(rnd, n * c);
        float[] s1 = Rand(rnd, heads * hs * hs), s2 = (float[])s1.Clone();
        float[] y1 = new float[n * c], y2 = new float[n * c];
        RwkvKernels.Wkv7(r, w, k, v, a, b, heads, hs, s1, y1);
        RwkvSimdKernels.Wkv7(r, w, k, v, a, b, heads, hs, s2, y2);
        for (int i = 0; i < y1.Length; i++) Assert.That(y2[i], Is.EqualTo(y1[i]).Within(1e-5f * (1 + Math.Abs(y1[i]))), $"y[{i}]");
        for (int i = 0; i < s1.Length; i++) Assert.That(s2[i], Is.EqualTo(s1[i]).Within(1e-5f * (1 + Math.Abs(s1[i]))), $"S[{i}]");
    }

    [Test]
    public void Wkv6_OneHeadOfTwo_HandComputed()
    {
        // S = [[1, 2], [3, 4]] (rows j), r = (1, 2), k = (1, -1), v = (2, 3), u = (0.5, 0.5), w = (0.5, 0.25).
        // y_i = Σ_j r_j (u_j k_j v_i + S_ji): y_0 = 1(0.5·1·2 + 1) + 2(0.5·(-1)·2 + 3) = 2 + 4 = 6;
        //                                     y_1 = 1(0.5·3 + 2) + 2(-1.5 + 4) = 3.5 + 5 = 8.5.
        // S' = S·w_j + k_j v_i: row0 = (0.5 + 2, 1 + 3) = (2.5, 4); row1 = (0.75 - 2, 1 - 3) = (-1.25, -2).
        float[] s = [1, 2, 3, 4], y = new float[2];
        RwkvKernels.Wkv6([1, 2], [1, -1], [2, 3], [0.5f, 0.5f], [0.5f, 0.25f], false, 1, 2, s, y);
        Assert.That(y, Is.EqualTo(new[] { 6f, 8.5f }));
        Assert.That(s, Is.EqualTo(new[] { 2.5f, 4f, -1.25f, -2f }));
    }

    [Test]
    public void Wkv7_OneHeadOfTwo_HandComputed()
    {
        // S = [[1, 2], [3, 4]] (rows i), a = (1, 0), b = (0, 1), w = (0.5, 0.5), k = (1, 0), v = (1, 2), r = (1, 1).
        // sa = S·a = (1, 3). S' = S·diag(w) + sa bᵀ + v kᵀ:
        // row0 = (0.5 + 0 + 1, 1 + 1 + 0) = (1.5, 2); row1 = (1.5 + 0 + 2, 2 + 3 + 0) = (3.5, 5). y = S'·r = (3.5, 8.5).
        float[] s = [1, 2, 3, 4], y = new float[2];
        RwkvKernels.Wkv7([1, 1], [0.5f, 0.5f], [1, 0], [1, 2], [1, 0], [0, 1], 1, 2, s, y);
        Assert.That(s, Is.EqualTo(new[] { 1.5f, 2f, 3.5f, 5f }));
        Assert.That(y, Is.EqualTo(new[] { 3.5f, 8.5f }));
    }
}
