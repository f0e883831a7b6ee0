// Owns: each op on every backend against independently hand-computed expectations on tiny cases
// (values derived here from the formula by hand, not printed by the code under test).
namespace Engine.Kernels.Tests;

using Engine.Tensors;

[TestFixture]
public sealed unsafe class OpHandTests
{
    [TestCaseSource(typeof(Backends), nameof(Backends.All))]
    public void MatMul_F32_2x3(BackendFactory f)
    {
        using var b = f.Create();
        // W (rows=2, cols=3) = [[1,2,3],[4,5,6]]; x = [[1,0,-1],[2,1,0]] → y = [[-2,-2],[4,13]]
        using var w = NativeTensor.FromFloats(DType.F32, [1, 2, 3, 4, 5, 6], 2, 3);
        var y = new float[4];
        b.MatMul([1, 0, -1, 2, 1, 0], 2, w.View, y);
        Assert.That(y, Is.EqualTo(new float[] { -2, -2, 4, 13 }));
    }

    [TestCaseSource(typeof(Backends), nameof(Backends.All))]
    public void MatMul_F16_And_BF16_ExactValues(BackendFactory f)
    {
        using var b = f.Create();
        // Values exactly representable in both half and bfloat16.
        float[] wv = [0.5f, -1.5f, 2f, 0.25f];
        foreach (var t in new[] { DType.F16, DType.BF16 })
        {
            using var w = NativeTensor.FromFloats(t, wv, 2, 2);
            var y = new float[2];
            b.MatMul([2, 4], 1, w.View, y);
            Assert.That(y, Is.EqualTo(new float[] { 2 * 0.5f + 4 * -1.5f, 2 * 2f + 4 * 0.25f }), t.ToString());
        }
    }

    [TestCaseSource(typeof(Backends), nameof(Backends.All))]
    public void GetRows_PicksRows(BackendFactory f)
    {
        using var b = f.Create();
        foreach (var t in new[] { DType.F32, DType.F16, DType.BF16 })
        {
            using var tab = NativeTensor.FromFloats(t, [1, 2, 3, 4, 5, 6], 3, 2);
            var dst = new float[6];
            b.GetRows(tab.View, [2, 0, 2], dst);
            Assert.That(dst, Is.EqualTo(new float[] { 5, 6, 1, 2, 5, 6 }), t.ToString());
            Assert.Throws<ArgumentOutOfRangeException>(() => b.GetRows(tab.View, [3], new float[2]));
        }
    }

    [TestCaseSource(typeof(Backends), nameof(Backends.All))]
    public void RmsNorm_Hand(BackendFactory f)
    {
        using var b = f.Create();
        // row [3,4]: mean sq = 12.5, rms = 3.5355339; row [0,2]: mean sq 2, rms = 1.4142136
        var y = new float[4];
        b.RmsNorm([3, 4, 0, 2], [1, 2], 0f, y);
        Assert.That(y, Is.EqualTo(new[] { 3 / 3.5355339f, 8 / 3.5355339f, 0f, 2 * 2 / 1.4142136f }).Within(1e-6f));
    }

    [TestCaseSource(typeof(Backends), nameof(Backends.All))]
    public void Rope_AtPositionZero_IsIdentity(BackendFactory f)
    {
        using var b = f.Create();
        foreach (var style in new[] { RopeStyle.Normal, RopeStyle.Neox })
        {
            var x = Data.Random(2 * 3 * 16, 1);
            var y = (float[])x.Clone();
            b.Rope(y, 3, 16, [0, 0], new RopeParams(style, 16, 10000f));
            Assert.That(y, Is.EqualTo(x), style.ToString());
        }
    }

    [TestCaseSource(typeof(Backends), nameof(Backends.All))]
    public void Rope_RotatesPairsByKnownAngles(BackendFactory f)
    {
        using var b = f.Create();
        // headDim 8, rope dims 4, base 100: θ_0 = pos, θ_1 = pos·100^(−1/2) = pos/10. Dims 4..7 untouched.
        const int pos = 3;
        double t0 = pos, t1 = pos / 10.0;
        float[] x = [1, 2, 3, 4, 5, 6, 7, 8];
        var n = (float[])x.Clone();
        b.Rope(n, 1, 8, [pos], new RopeParams(RopeStyle.Normal, 4, 100f));
        float[] expN =
        [
            (float)(1 * Math.Cos(t0) - 2 * Math.Sin(t0)), (float)(1 * Math.Sin(t0) + 2 * Math.Cos(t0)),
            (float)(3 * Math.Cos(t1) - 4 * Math.Sin(t1)), (float)(3 * Math.Sin(t1) + 4 * Math.Cos(t1)), 5, 6, 7, 8,
        ];
        Assert.That(n, Is.EqualTo(expN).Within(2e-6f), "normal");

        var z = (float[])x.Clone();
        b.Rope(z, 1, 8, [pos], new RopeParams(RopeStyle.Neox, 4, 100f));
        // NEOX pairs (0,2) with θ_0 and (1,3) with θ_1.
        float[] expZ =
        [
            (float)(1 * Math.Cos(t0) - 3 * Math.Sin(t0)), (float)(2 * Math.Cos(t1) - 4 * Math.Sin(t1)),
            (float)(1 * Math.Sin(t0) + 3 * Math.Cos(t0)), (float)(2 * Math.Sin(t1) + 4 * Math.Cos(t1)), 5, 6, 7, 8,
        ];
        Assert.That(z, Is.EqualTo(expZ).Within(2e-6f), "neox");

        // Freq factors divide θ_i; freqScale multiplies: factors [2, 0.5], scale 0.5 → θ = [0.75, 0.3]
        var s = (float[])x.Clone();
        b.Rope(s, 1, 8, [pos], new RopeParams(RopeStyle.Normal, 4, 100f, 0.5f, [2f, 0.5f]));
        double u0 = 0.75, u1 = 0.3;
        Assert.That(s[0], Is.EqualTo((float)(1 * Math.Cos(u0) - 2 * Math.Sin(u0))).Within(2e-6f));
        Assert.That(s[3], Is.EqualTo((float)(3 * Math.Sin(u1) + 4 * Math.Cos(u1))).Within(2e-6f));
    }

    [TestCaseSource(typeof(Backends), nameof(Backends.All))]
    public void Softmax_SumsToOne_AndMatchesHand(BackendFactory f)
    {
        using var b = f.Create();
        float[] x = [0, (float)Math.Log(3), 1000, 1000];      // large equal values must not overflow
        b.Softmax(x);
        Assert.That(x, Is.EqualTo(new float[] { 0, 0, 0.5f, 0.5f }).Within(1e-7f));
        float[] y = [0, (float)Math.Log(3)];
        b.Softmax(y);
        Assert.That(y, Is.EqualTo(new float[] { 0.25f, 0.75f }).Within(1e-7f));
        for (int n = 1; n <= 300; n += 37)
        {
            var r = Data.Random(n, n, 20f);
            b.Softmax(r);
            double s = 0; foreach (var v in r) { s += v; Assert.That(v, Is.GreaterThanOrEqualTo(0f)); }
            Assert.That(s, Is.EqualTo(1.0).Within(1e-5), $"n={n}");
        }
    }

    [TestCaseSource(typeof(Backends), nameof(Backends.All))]
    public void SiluMul_And_Add_Hand(BackendFactory f)
    {
        using var b = f.Create();
        // silu(0)=0, silu(2)=2/(1+e^-2)=1.7615942, silu(-1)=-1/(1+e)=-0.26894142
        var d = new float[3];
        b.SiluMul([0, 2, -1], [5, 2, 3], d);
        Assert.That(d, Is.EqualTo(new[] { 0f, 3.5231884f, -0.80682426f }).Within(1e-6f));
        var s = new float[3];
        b.Add([1, 2, 3], [0.5f, -2, 10], s);
        Assert.That(s, Is.EqualTo(new[] { 1.5f, 0f, 13f }));
        Assert.Throws<ArgumentException>(() => b.Add([1, 2], [1], new float[2]));
    }

    [TestCaseSource(typeof(Backends), nameof(Backends.All))]
    public void Attention_OneCachedToken_ReturnsV(BackendFactory f)
    {
        using var b = f.Create();
        // 4 query heads, 2 kv heads, headDim 3. One cached token at position 0.
        float[] k = [1, 2, 3, -1, 0, 1];
        float[] v = [7, 8, 9, -4, -5, -6];
        using var kb = new NativeFloats(k);
        using var vb = new NativeFloats(v);
        var q = Data.Random(4 * 3, 5);
        var o = new float[12];
        b.Attention(q, [0], [new KvPage(kb.Address, vb.Address, 1, 0, 6)], new AttentionParams(4, 2, 3, 0.5f), o);
        Assert.That(o, Is.EqualTo(new float[] { 7, 8, 9, 7, 8, 9, -4, -5, -6, -4, -5, -6 }));
    }

    [TestCaseSource(typeof(Backends), nameof(Backends.All))]
    public void Attention_TwoTokens_CausalAndWeights(BackendFactory f)
    {
        using var b = f.Create();
        // 1 head, headDim 2. K rows k0=[1,0], k1=[0,1]; V rows v0=[1,0], v1=[0,10]. q=[2,0] scale 1:
        // scores [2, 0] → p = [e²/(e²+1), 1/(e²+1)] = [0.8807971, 0.1192029] → o = [0.8807971, 1.192029].
        using var kb = new NativeFloats([1, 0, 0, 1]);
        using var vb = new NativeFloats([1, 0, 0, 10]);
        var page = new KvPage(kb.Address, vb.Address, 2, 5, 2);
        var o = new float[4];
        // row 0 at position 5 sees only token 0; row 1 at position 6 sees both.
        b.Attention([2, 0, 2, 0], [5, 6], [page], new AttentionParams(1, 1, 2, 1f), o);
        Assert.That(o, Is.EqualTo(new[] { 1f, 0f, 0.8807971f, 1.192029f }).Within(1e-6f));
        // The same KV split into two pages gives the same answer.
        var p0 = new KvPage(kb.Address, vb.Address, 1, 5, 2);
        var p1 = new KvPage(kb.Address + 8, vb.Address + 8, 1, 6, 2);
        var o2 = new float[4];
        b.Attention([2, 0, 2, 0], [5, 6], [p0, p1], new AttentionParams(1, 1, 2, 1f), o2);
        Assert.That(o2, Is.EqualTo(o).Within(1e-7f));
    }

    [TestCaseSource(typeof(Backends), nameof(Backends.All))]
    public void BadShapes_Throw(BackendFactory f)
    {
        using var b = f.Create();
        using var w = NativeTensor.FromFloats(DType.F32, new float[6], 2, 3);
        Assert.Throws<ArgumentException>(() => b.MatMul(new float[5], 2, w.View, new float[4]));
        Assert.Throws<ArgumentException>(() => b.MatMul(new float[6], 2, w.View, new float[3]));
        Assert.Throws<ArgumentException>(() => b.RmsNorm(new float[5], new float[2], 1e-5f, new float[5]));
        Assert.Throws<ArgumentException>(() => b.Rope(new float[8], 1, 8, [0], new RopeParams(RopeStyle.Normal, 10, 1e4f)));
        Assert.Throws<ArgumentException>(() => b.Attention(new float[6], [0], [], new AttentionParams(3, 2, 2, 1f), new float[6]));
        var bad = new TensorView("q", DType.Q8_K, [256, 1], w.Ptr, 292);
        Assert.Throws<NotSupportedException>(() => b.MatMul(new float[256], 1, bad, new float[1]));
    }
}

[TestFixture]
public sealed class QuantHandTests
{
    [TestCaseSource(typeof(Backends), nameof(Backends.All))]
    public void MatMul_Q8_0_HandBlock(BackendFactory f)
    {
        using var b = f.Create();
        // One Q8_0 block: d = 0.5 (half 0x3800), q_j = j − 16 for j = 0..31 → w_j = (j − 16)/2.
        var blk = new byte[34];
        blk[0] = 0x00; blk[1] = 0x38;
        for (int j = 0; j < 32; j++) blk[2 + j] = unchecked((byte)(sbyte)(j - 16));
        using var w = NativeTensor.FromBytes(Engine.Tensors.DType.Q8_0, blk, 1, 32);
        var x = new float[32];
        for (int j = 0; j < 32; j++) x[j] = j % 2 == 0 ? 1f : 0f;            // sums w over even j
        var y = new float[1];
        b.MatMul(x, 1, w.View, y);
        // Σ_{j even} (j − 16)/2 = (Σ_{k=0..15} 2k − 16·16)/2 = (240 − 256)/2 = −8
        Assert.That(y[0], Is.EqualTo(-8f).Within(0.05f));
        var row = new float[32];
        b.GetRows(w.View, [0], row);
        Assert.That(row[0], Is.EqualTo(-8f)); Assert.That(row[31], Is.EqualTo(7.5f));
    }
}
