// Owns: tests of KV tiers (F16, Int8, Int4 KIVI pages) in attention and of the attention-mass output.
// Expected values: the reference backend over float32 pages built from an independent dequantization written here (not
// KvDecode), quantization error bounds (|x − x̂| ≤ scale / 2), and properties (mass rows sum to 1 per query head).
namespace Engine.Kernels.Tests;

using System.Runtime.InteropServices;

public sealed unsafe class KvTierTests
{
    private const double FloatBound = 1e-7;
    private static readonly ReferenceBackend Ref = new();

    /// <summary>A quantized copy of float rows [count, width] in one tier, owning its native memory.</summary>
    private sealed class TierPage : IDisposable
    {
        private readonly List<nint> _allocs = [];
        public KvPage Page;
        public float[] DequantK = [], DequantV = [];                  // [count, width], independently dequantized

        private nint Alloc(long bytes) { var p = (nint)NativeMemory.AlignedAlloc((nuint)Math.Max(64, bytes), 64); _allocs.Add(p); return p; }

        public TierPage(KvElementType type, float[] k, float[] v, int count, int width, int start, int group)
        {
            fixed (float* pk = k, pv = v)
            {
                switch (type)
                {
                    case KvElementType.F16:
                    {
                        nint kq = Alloc(count * width * 2L), vq = Alloc(count * width * 2L);
                        for (int i = 0; i < count * width; i++) { ((Half*)kq)[i] = (Half)k[i]; ((Half*)vq)[i] = (Half)v[i]; }
                        Page = new KvPage(kq, vq, count, start, width) { Type = type };
                        DequantK = new float[count * width]; DequantV = new float[count * width];
                        for (int i = 0; i < count * width; i++) { DequantK[i] = (float)((Half*)kq)[i]; DequantV[i] = (float)((Half*)vq)[i]; }
                        break;
                    }
                    case KvElementType.Int8:
                    {
                        nint kq = Alloc(count * width), vq = Alloc(count * width);
                        nint ks = Alloc(count * (width / group) * 4L), vs = Alloc(count * (width / group) * 4L);
                        KvQuantizer.Int8(pk, width, count, width, group, (sbyte*)kq, (float*)ks);
                        KvQuantizer.Int8(pv, width, count, width, group, (sbyte*)vq, (float*)vs);
                        Page = new KvPage(kq, vq, count, start, width) { Type = type, KScale = ks, VScale = vs, GroupSize = group };
                        DequantK = new float[count * width]; DequantV = new float[count * width];
                        for (int t = 0; t < count; t++)
                            for (int c = 0; c < width; c++)
                            {
                                DequantK[t * width + c] = ((sbyte*)kq)[t * width + c] * ((float*)ks)[t * (width / group) + c / group];
                                DequantV[t * width + c] = ((sbyte*)vq)[t * width + c] * ((float*)vs)[t * (width / group) + c / group];
                            }
                        break;
                    }
                    case KvElementType.Int4:
                    {
                        nint kq = Alloc(count * width / 2), vq = Alloc(count * width / 2);
                        int groups = (count + group - 1) / group;
                        nint kp = Alloc(groups * width * 8L), vp = Alloc(count * (width / group) * 8L);
                        KvQuantizer.Int4Keys(pk, width, count, width, group, (byte*)kq, (float*)kp);
                        KvQuantizer.Int4Values(pv, width, count, width, group, (byte*)vq, (float*)vp);
                        Page = new KvPage(kq, vq, count, start, width) { Type = type, KScale = kp, VScale = vp, GroupSize = group };
                        DequantK = new float[count * width]; DequantV = new float[count * width];
                        for (int t = 0; t < count; t++)
                            for (int c = 0; c < width; c++)
                            {
                                byte kb = ((byte*)kq)[t * width / 2 + c / 2], vb = ((byte*)vq)[t * width / 2 + c / 2];
                                int qk = c % 2 == 0 ? kb & 15 : kb >> 4, qv = c % 2 == 0 ? vb & 15 : vb >> 4;
                                float* kprm = (float*)kp + ((t / group) * width + c) * 2;
                                float* vprm = (float*)vp + (t * (width / group) + c / group) * 2;
                                DequantK[t * width + c] = qk * kprm[0] + kprm[1];
                                DequantV[t * width + c] = qv * vprm[0] + vprm[1];
                            }
                        break;
                    }
                    default: throw new ArgumentException(type.ToString());
                }
            }
        }

        public void Dispose() { foreach (var p in _allocs) NativeMemory.AlignedFree((void*)p); _allocs.Clear(); }
    }

    private static IEnumerable<TestCaseData> BackendsAndTiers()
    {
        foreach (var bc in Backends.All())
            foreach (var t in new[] { KvElementType.F16, KvElementType.Int8, KvElementType.Int4 })
                yield return new TestCaseData(bc.Arguments[0], t).SetArgDisplayNames(((BackendFactory)bc.Arguments[0]!).Name, t.ToString());
    }

    [TestCaseSource(nameof(BackendsAndTiers))]
    public void MixedTierPages_MatchReferenceOnDequantizedData(BackendFactory f, KvElementType tier)
    {
        using var b = f.Create();
        foreach (var (heads, kvHeads, hd, n, group) in new[] { (4, 2, 64, 1, 32), (6, 3, 32, 5, 16), (8, 2, 64, 1, 64) })
        {
            int width = kvHeads * hd;
            // three pages: [0, 96) in the tier, [96, 96 + 40) float32, [136, 136 + 300) in the tier (long: exercises the split)
            int[] counts = [96, 40, 300];
            var pages = new List<KvPage>(); var f32Pages = new List<KvPage>();
            var owners = new List<IDisposable>();
            int start = 0;
            for (int i = 0; i < counts.Length; i++)
            {
                var k = Data.Random(counts[i] * width, 100 + i, 2f); var v = Data.Random(counts[i] * width, 200 + i);
                if (i == 1)
                {
                    var kb = new NativeFloats(k); var vb = new NativeFloats(v); owners.Add(kb); owners.Add(vb);
                    pages.Add(new KvPage(kb.Address, vb.Address, counts[i], start, width));
                    f32Pages.Add(pages[^1]);
                }
                else
                {
                    var tp = new TierPage(tier, k, v, counts[i], width, start, group); owners.Add(tp);
                    pages.Add(tp.Page);
                    var kb = new NativeFloats(tp.DequantK); var vb = new NativeFloats(tp.DequantV); owners.Add(kb); owners.Add(vb);
                    f32Pages.Add(new KvPage(kb.Address, vb.Address, counts[i], start, width));
                }
                start += counts[i];
            }
            var pos = Enumerable.Range(start - n, n).ToArray();
            var q = Data.Random(n * heads * hd, 7);
            var p = new AttentionParams(heads, kvHeads, hd, 1f / MathF.Sqrt(hd));
            var y = new float[q.Length]; var e = new float[q.Length];
            b.Attention(q, pos, pages.ToArray(), p, y);
            Ref.Attention(q, pos, f32Pages.ToArray(), p, e);
            Assert.That(Data.Nmse(y, e), Is.LessThanOrEqualTo(FloatBound), $"{tier} heads={heads}/{kvHeads} hd={hd} n={n}");
            foreach (var o in owners) o.Dispose();
        }
    }

    [TestCase(KvElementType.Int8, 32, 1e-3)]
    [TestCase(KvElementType.Int4, 32, 5e-2)]
    [TestCase(KvElementType.F16, 0, 1e-6)]
    public void QuantizedAttention_ErrorBoundedVsFloat32(KvElementType tier, int group, double bound)
    {
        int heads = 4, kvHeads = 2, hd = 64, count = 256, width = kvHeads * hd;
        var k = Data.Random(count * width, 1, 2f); var v = Data.Random(count * width, 2);
        using var tp = new TierPage(tier, k, v, count, width, 0, Math.Max(1, group));
        // element-wise round trip bound: |x − x̂| ≤ scale / 2 (int8: absmax/127/2 ≤ 2/254; int4: range/15/2)
        double elemBound = tier switch { KvElementType.Int8 => 2.0 / 254 + 1e-6, KvElementType.Int4 => 4.0 / 30 + 1e-6, _ => 2.0 / 1024 };
        for (int i = 0; i < k.Length; i++) Assert.That(Math.Abs(tp.DequantK[i] - k[i]), Is.LessThanOrEqualTo(elemBound), $"k[{i}]");
        using var kb = new NativeFloats(k); using var vb = new NativeFloats(v);
        var q = Data.Random(heads * hd, 3);
        var p = new AttentionParams(heads, kvHeads, hd, 1f / MathF.Sqrt(hd));
        var y = new float[q.Length]; var e = new float[q.Length];
        using var cpu = new CpuBackend(2);
        cpu.Attention(q, [count - 1], [tp.Page], p, y);
        Ref.Attention(q, [count - 1], [new KvPage(kb.Address, vb.Address, count, 0, width)], p, e);
        Assert.That(Data.Nmse(y, e), Is.LessThanOrEqualTo(bound));
    }

    [TestCaseSource(typeof(Backends), nameof(Backends.All))]
    public void AttentionMass_MatchesReference_AndRowsSumToOne(BackendFactory f)
    {
        using var b = f.Create();
        int heads = 8, kvHeads = 2, hd = 32, cached = 300, width = kvHeads * hd, group = heads / kvHeads;
        var k = Data.Random(cached * width, 4, 2f); var v = Data.Random(cached * width, 5);
        using var kb = new NativeFloats(k); using var vb = new NativeFloats(v);
        KvPage[] pages = [new KvPage(kb.Address, vb.Address, 100, 0, width), new KvPage(kb.Address + 100 * width * 4, vb.Address + 100 * width * 4, 200, 100, width)];
        var p = new AttentionParams(heads, kvHeads, hd, 1f / MathF.Sqrt(hd));
        foreach (int[] pos in new[] { new[] { 299 }, Enumerable.Range(290, 10).ToArray(), new[] { 50, 150 } })
        {
            var q = Data.Random(pos.Length * heads * hd, 6);
            var y = new float[q.Length]; var y0 = new float[q.Length]; var e = new float[q.Length];
            var mass = new float[kvHeads * cached]; var massRef = new float[kvHeads * cached];
            b.Attention(q, pos, pages, p, y, mass);
            b.Attention(q, pos, pages, p, y0);
            Ref.Attention(q, pos, pages, p, e, massRef);
            Assert.That(Data.Nmse(y, e), Is.LessThanOrEqualTo(FloatBound));
            Assert.That(Data.Nmse(y, y0), Is.LessThanOrEqualTo(FloatBound), "output with mass equals output without");
            Assert.That(Data.Nmse(mass, massRef), Is.LessThanOrEqualTo(FloatBound), "mass vs reference");
            for (int kh = 0; kh < kvHeads; kh++)
            {
                double s = 0;
                for (int i = 0; i < cached; i++) s += massRef[kh * cached + i];
                Assert.That(s, Is.EqualTo(pos.Length * group).Within(1e-4), "each (row, query head) softmax sums to 1");
                for (int i = pos.Max() + 1; i < cached; i++) Assert.That(mass[kh * cached + i], Is.EqualTo(0f), "future tokens get no mass");
            }
        }
    }

    [Test]
    public void AttentionMass_HandCase_EqualKeysShareMassEqually()
    {
        // two tokens with identical keys → identical weights; one query head per KV head.
        var k = new float[] { 1, 0, 1, 0 }; var v = new float[] { 1, 2, 3, 4 };
        using var kb = new NativeFloats(k); using var vb = new NativeFloats(v);
        KvPage[] pages = [new KvPage(kb.Address, vb.Address, 2, 0, 2)];
        foreach (var bf in Backends.All())
        {
            using var b = ((BackendFactory)bf.Arguments[0]!).Create();
            var mass = new float[2]; var y = new float[2];
            b.Attention(new float[] { 0.3f, -2f }, [1], pages, new AttentionParams(1, 1, 2, 1f), y, mass);
            Assert.That(mass, Is.EqualTo(new[] { 0.5f, 0.5f }).Within(1e-6f));
            Assert.That(y, Is.EqualTo(new[] { 2f, 3f }).Within(1e-5f));
        }
    }
}
