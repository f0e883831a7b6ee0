// Owns: tests of the low-bit KIVI tier (2/3/4 bits, Engine.Tensors.Quants.KiviLowBit; KvElementType.Kivi pages).
// Expected values: an independent bit-unpacking and dequantization written here from the layout's description (not
// KiviLowBit's decode), the round-trip bound |x − x̂| ≤ scale / 2 + half rounding, and the reference backend over
// float32 pages of the independently dequantized rows (every backend must match it within float rounding).
namespace Engine.Kernels.Tests;

using System.Runtime.InteropServices;
using Engine.Tensors.Quants;

public sealed unsafe class KiviLowBitTests
{
    private static readonly ReferenceBackend Ref = new();

    /// <summary>One quantized group of `count` tokens in a native chunk + its independent float32 dequantization.</summary>
    private sealed class Group : IDisposable
    {
        public readonly nint Mem;
        public readonly KvPage Page;
        public readonly float[] Kd, Vd;                 // [count, width] dequantized here

        public Group(float[] k, float[] v, int count, int width, int bits, int cg, int start)
        {
            int rb = KiviLowBit.RowBytes(width, bits);
            long bytes = KiviLowBit.GroupBytes(count, width, bits, cg);
            Mem = (nint)NativeMemory.AlignedAlloc((nuint)bytes, 64);
            var chunk = new Span<byte>((void*)Mem, (int)bytes);
            int vOff = count * rb, kp = 2 * count * rb, vp = kp + 4 * width;
            KiviLowBit.QuantizeKeys(k, width, count, width, bits, chunk[..(count * rb)], MemoryMarshal.Cast<byte, Half>(chunk.Slice(kp, 4 * width)));
            KiviLowBit.QuantizeValues(v, width, count, width, bits, cg, chunk.Slice(vOff, count * rb), MemoryMarshal.Cast<byte, Half>(chunk[vp..]));
            Page = new KvPage(Mem, Mem + vOff, count, start, width) { Type = KvElementType.Kivi, Bits = bits, GroupSize = cg, KScale = Mem + kp, VScale = Mem + vp };
            Kd = new float[count * width]; Vd = new float[count * width];
            byte* b = (byte*)Mem; Half* kprm = (Half*)(b + kp), vprm = (Half*)(b + vp);
            for (int t = 0; t < count; t++)
                for (int c = 0; c < width; c++)
                {
                    Kd[t * width + c] = Code(b + t * rb, c, bits) * (float)kprm[2 * c] + (float)kprm[2 * c + 1];
                    int g = t * (width / cg) + c / cg;
                    Vd[t * width + c] = Code(b + vOff + t * rb, c, bits) * (float)vprm[2 * g] + (float)vprm[2 * g + 1];
                }
        }

        // independent unpack: walk the bits one at a time, least significant first
        private static int Code(byte* row, int c, int bits)
        {
            int q = 0;
            for (int i = 0; i < bits; i++) { int bit = c * bits + i; q |= ((row[bit >> 3] >> (bit & 7)) & 1) << i; }
            return q;
        }

        public void Dispose() => NativeMemory.AlignedFree((void*)Mem);
    }

    [TestCase(2), TestCase(3), TestCase(4)]
    public void PackedCodes_RoundTrip(int bits)
    {
        var rng = new Random(bits);
        foreach (int width in new[] { 1, 7, 8, 13, 32, 40 })
        {
            var codes = Enumerable.Range(0, width).Select(_ => rng.Next(1 << bits)).ToArray();
            var row = new byte[KiviLowBit.RowBytes(width, bits)];
            for (int c = 0; c < width; c++) KiviLowBit.Put(row, c, bits, codes[c]);
            for (int c = 0; c < width; c++) Assert.That(KiviLowBit.Get(row, c, bits), Is.EqualTo(codes[c]), $"width {width} c {c}");
            Assert.That(row.Length * 8, Is.LessThan(width * bits + 8), "no more than 7 pad bits");
        }
    }

    [TestCase(2, 32, 32), TestCase(3, 32, 16), TestCase(4, 40, 8), TestCase(2, 64, 32), TestCase(3, 8, 8)]
    public void Quantize_ErrorWithinScaleBound_AndDecodeMatchesIndependentUnpack(int bits, int width, int cg)
    {
        int count = 16, qmax = (1 << bits) - 1;
        var k = Data.Random(count * width, bits * 10 + width, 2f); var v = Data.Random(count * width, bits * 20 + width);
        using var g = new Group(k, v, count, width, bits, cg, 0);
        // keys: per channel over the group
        for (int c = 0; c < width; c++)
        {
            float lo = float.MaxValue, hi = float.MinValue;
            for (int t = 0; t < count; t++) { lo = MathF.Min(lo, k[t * width + c]); hi = MathF.Max(hi, k[t * width + c]); }
            double bound = (hi - lo) / qmax / 2 * 1.01 + 2e-3 * Math.Max(Math.Abs(lo), Math.Abs(hi)) + 1e-6;
            for (int t = 0; t < count; t++) Assert.That(Math.Abs(g.Kd[t * width + c] - k[t * width + c]), Is.LessThanOrEqualTo(bound), $"k t{t} c{c}");
        }
        // values: per token over channel groups
        for (int t = 0; t < count; t++)
            for (int g0 = 0; g0 < width; g0 += cg)
            {
                float lo = float.MaxValue, hi = float.MinValue;
                for (int c = g0; c < g0 + cg; c++) { lo = MathF.Min(lo, v[t * width + c]); hi = MathF.Max(hi, v[t * width + c]); }
                double bound = (hi - lo) / qmax / 2 * 1.01 + 2e-3 * Math.Max(Math.Abs(lo), Math.Abs(hi)) + 1e-6;
                for (int c = g0; c < g0 + cg; c++) Assert.That(Math.Abs(g.Vd[t * width + c] - v[t * width + c]), Is.LessThanOrEqualTo(bound), $"v t{t} c{c}");
            }
        // the kernels' row decode (KvDecode) equals the independent unpack exactly, also on a slice inside the group
        var row = new float[width];
        foreach (var (page, off) in new[] { (g.Page, 0), (KvPages.Slice(g.Page, 5, 7), 5) })
            for (int j = 0; j < page.TokenCount; j++)
            {
                fixed (float* r = row) KvDecode.Row(page, true, j, r, width);
                Assert.That(row, Is.EqualTo(g.Kd.AsSpan((off + j) * width, width).ToArray()), $"key row {off + j}");
                fixed (float* r = row) KvDecode.Row(page, false, j, r, width);
                Assert.That(row, Is.EqualTo(g.Vd.AsSpan((off + j) * width, width).ToArray()), $"value row {off + j}");
            }
    }

    private static IEnumerable<TestCaseData> BackendsAndBits()
    {
        foreach (var bc in Backends.All())
            foreach (int bits in new[] { 2, 3, 4 })
                yield return new TestCaseData(bc.Arguments[0], bits).SetArgDisplayNames(((BackendFactory)bc.Arguments[0]!).Name, $"{bits}bit");
    }

    /// <summary>Attention over Kivi groups (whole and sliced) mixed with float32 pages = the reference over the
    /// independently dequantized float32 rows.</summary>
    [TestCaseSource(nameof(BackendsAndBits))]
    public void KiviPages_MatchReferenceOnDequantizedData(BackendFactory f, int bits)
    {
        using var b = f.Create();
        foreach (var (heads, kvHeads, hd, n, cg) in new[] { (8, 4, 8, 1, 32), (4, 2, 16, 3, 16), (4, 2, 64, 1, 32) })
        {
            int width = kvHeads * hd, G = 16;
            var owners = new List<IDisposable>();
            var pages = new List<KvPage>(); var f32 = new List<KvPage>();
            int start = 0;
            for (int i = 0; i < 20; i++)
            {
                var k = Data.Random(G * width, 300 + i, 2f); var v = Data.Random(G * width, 400 + i);
                if (i % 5 == 2)
                {
                    var kb = new NativeFloats(k); var vb = new NativeFloats(v); owners.Add(kb); owners.Add(vb);
                    pages.Add(new KvPage(kb.Address, vb.Address, G, start, width)); f32.Add(pages[^1]);
                }
                else
                {
                    var g = new Group(k, v, G, width, bits, cg, start); owners.Add(g);
                    var kd = new NativeFloats(g.Kd); var vd = new NativeFloats(g.Vd); owners.Add(kd); owners.Add(vd);
                    if (i % 3 == 1)
                    {   // present the group as two runs with a hole (a token kept elsewhere): slices inside the group
                        pages.Add(KvPages.Slice(g.Page, 0, 6)); f32.Add(new KvPage(kd.Address, vd.Address, 6, start, width));
                        pages.Add(KvPages.Slice(g.Page, 7, 9)); f32.Add(new KvPage(kd.Address + 7 * width * 4, vd.Address + 7 * width * 4, 9, start + 7, width));
                    }
                    else { pages.Add(g.Page); f32.Add(new KvPage(kd.Address, vd.Address, G, start, width)); }
                }
                start += G;
            }
            var pos = Enumerable.Range(start - n, n).ToArray();
            var q = Data.Random(n * heads * hd, 9);
            var p = new AttentionParams(heads, kvHeads, hd, 1f / MathF.Sqrt(hd));
            var y = new float[q.Length]; var e = new float[q.Length];
            b.Attention(q, pos, pages.ToArray(), p, y);
            Ref.Attention(q, pos, f32.ToArray(), p, e);
            Assert.That(Data.Nmse(y, e), Is.LessThanOrEqualTo(1e-7), $"{bits}bit heads={heads}/{kvHeads} hd={hd} n={n}");
            int total = pages.Sum(pg => pg.TokenCount);
            var mass = new float[kvHeads * total]; var massRef = new float[kvHeads * total];
            b.Attention(q, pos, pages.ToArray(), p, y, mass);
            Ref.Attention(q, pos, f32.ToArray(), p, e, massRef);
            Assert.That(Data.Nmse(mass, massRef), Is.LessThanOrEqualTo(1e-7), "attention mass over Kivi pages");
            foreach (var o in owners) o.Dispose();
        }
    }

    [Test]
    public void BadKiviPages_AreRejected()
    {
        var k = Data.Random(16 * 32, 1); var v = Data.Random(16 * 32, 2);
        using var g = new Group(k, v, 16, 32, 2, 32, 0);
        var p = new AttentionParams(4, 4, 8, 1f);
        var y = new float[32];
        Assert.Throws<ArgumentException>(() => Ref.Attention(new float[32], [15], [g.Page with { Bits = 5 }], p, y));
        Assert.Throws<ArgumentException>(() => Ref.Attention(new float[32], [15], [g.Page with { GroupSize = 5 }], p, y));
        Assert.Throws<ArgumentOutOfRangeException>(() => KiviLowBit.CheckShape(32, 1, 32));
    }
}
