// Owns: tests of the CPU backend's vectorized attention over Int8 / Int4 (KIVI) / F16 KV pages (AttentionRangeQuant) against
// the reference backend reading the same pages (KvDecode defines the tiers; the reference accumulates in float64).
// Covers token counts 1..300 (odd ones, partial Int4 token groups), head dims 32/64/128, GQA groups 1..4, group sizes
// 16..128 (a group spanning several heads), several pages per list (quantized pages built separately, slices of one
// quantized run at odd offsets as the policy store presents them, F32 pages mixed in), decode (with and without the
// split-cache merge), causal prefill, a query that sees only part of the cache, attention mass, and every ISA width
// (CpuKernelOptions.MaxVectorBits 512 / 256 / 128 / 0). Bound: NMSE ≤ 1e-7 as the other float32 attention tests.
namespace Engine.Kernels.Tests;

using System.Runtime.InteropServices;

public sealed unsafe class KvQuantAttentionTests
{
    private const double FloatBound = 1e-7;
    private static readonly ReferenceBackend Ref = new();

    /// <summary>Native allocations of a test's pages.</summary>
    private sealed class Arena : IDisposable
    {
        private readonly List<nint> _allocs = [];
        public nint Alloc(long bytes) { var p = (nint)NativeMemory.AlignedAlloc((nuint)Math.Max(64, bytes), 64); _allocs.Add(p); return p; }
        public void Dispose() { foreach (var p in _allocs) NativeMemory.AlignedFree((void*)p); _allocs.Clear(); }

        /// <summary>One page of <paramref name="count"/> tokens from position <paramref name="start"/> in the tier, from random rows.</summary>
        public KvPage Page(KvElementType type, int count, int start, int width, int group, int seed)
        {
            var k = Data.Random(count * width, seed, 2f); var v = Data.Random(count * width, seed + 1);
            float* pk = (float*)Alloc(k.Length * 4L), pv = (float*)Alloc(v.Length * 4L);
            k.CopyTo(new Span<float>(pk, k.Length)); v.CopyTo(new Span<float>(pv, v.Length));
            switch (type)
            {
                case KvElementType.F32:
                    return new KvPage((nint)pk, (nint)pv, count, start, width);
                case KvElementType.F16:
                {
                    ushort* kh = (ushort*)Alloc((long)count * width * 2), vh = (ushort*)Alloc((long)count * width * 2);
                    for (int i = 0; i < k.Length; i++) { kh[i] = BitConverter.HalfToUInt16Bits((Half)k[i]); vh[i] = BitConverter.HalfToUInt16Bits((Half)v[i]); }
                    return new KvPage((nint)kh, (nint)vh, count, start, width) { Type = type };
                }
                case KvElementType.Int8:
                {
                    nint kq = Alloc((long)count * width), vq = Alloc((long)count * width);
                    nint ks = Alloc((long)count * (width / group) * 4), vs = Alloc((long)count * (width / group) * 4);
                    KvQuantizer.Int8(pk, width, count, width, group, (sbyte*)kq, (float*)ks);
                    KvQuantizer.Int8(pv, width, count, width, group, (sbyte*)vq, (float*)vs);
                    return new KvPage(kq, vq, count, start, width) { Type = type, KScale = ks, VScale = vs, GroupSize = group };
                }
                case KvElementType.Int4:
                {
                    nint kq = Alloc((long)count * width / 2), vq = Alloc((long)count * width / 2);
                    nint kp = Alloc((long)(count + group - 1) / group * width * 8), vp = Alloc((long)count * (width / group) * 8);
                    KvQuantizer.Int4Keys(pk, width, count, width, group, (byte*)kq, (float*)kp);
                    KvQuantizer.Int4Values(pv, width, count, width, group, (byte*)vq, (float*)vp);
                    return new KvPage(kq, vq, count, start, width) { Type = type, KScale = kp, VScale = vp, GroupSize = group };
                }
                default: throw new ArgumentException(type.ToString());
            }
        }
    }

    private static void CheckVsReference(IBackend b, KvPage[] pages, int heads, int kvHeads, int hd, int[] pos, int seed, string what)
    {
        fixed (KvPage* pp = pages)
            Assert.That(AttentionRangeQuant.Applies(CpuKernelOptions.Default, pp, pages.Length, hd), Is.True, $"the quantized path applies: {what}");
        var q = Data.Random(pos.Length * heads * hd, seed);
        var p = new AttentionParams(heads, kvHeads, hd, 1f / MathF.Sqrt(hd));
        var y = new float[q.Length]; var e = new float[q.Length];
        b.Attention(q, pos, pages, p, y);
        Ref.Attention(q, pos, pages, p, e);
        Assert.That(Data.Nmse(y, e), Is.LessThanOrEqualTo(FloatBound), what);
    }

    private static int[] Range(int from, int count) => Enumerable.Range(from, count).ToArray();

    private static IEnumerable<TestCaseData> TiersAndWidths()
    {
        foreach (var t in new[] { KvElementType.Int8, KvElementType.Int4, KvElementType.F16 })
            foreach (int bits in new[] { 512, 256, 128, 0 })
                yield return new TestCaseData(t, bits).SetArgDisplayNames(t.ToString(), $"bits{bits}");
    }

    /// <summary>One page per list, every token count 1..300 in a spread (odd, around 4-token and group boundaries):
    /// decode at the last position, decode at an earlier position (later tokens masked) and causal prefill.</summary>
    [TestCaseSource(nameof(TiersAndWidths))]
    public void SinglePage_TokenCountsAndHeadShapes_MatchReference(KvElementType tier, int bits)
    {
        var options = new CpuKernelOptions { MaxVectorBits = bits };
        {
            using var b1 = new CpuBackend(1, options: options);
            using var b3 = new CpuBackend(3, options: options);
            using var arena = new Arena();
            // (heads, kvHeads, hd, group)
            var shapes = new[] { (4, 2, 64, 32), (32, 8, 64, 32), (6, 2, 128, 64), (3, 3, 32, 16), (4, 1, 32, 32), (8, 2, 64, 128) };
            int[] counts = bits == 512 ? [1, 2, 3, 4, 5, 7, 15, 16, 17, 31, 33, 63, 64, 65, 100, 127, 129, 255, 257, 300] : [1, 3, 17, 33, 65, 130, 300];
            int seed = 1;
            foreach (var (heads, kvHeads, hd, group) in shapes)
                foreach (int count in counts)
                {
                    if (heads == 32 && count % 2 == 0) continue;               // the big shape on odd counts only (time)
                    var pages = new[] { arena.Page(tier, count, 0, kvHeads * hd, group, seed++) };
                    string what = $"{tier} bits={bits} heads={heads}/{kvHeads} hd={hd} G={group} tokens={count}";
                    CheckVsReference(b1, pages, heads, kvHeads, hd, [count - 1], seed++, what + " decode");
                    CheckVsReference(b3, pages, heads, kvHeads, hd, [count - 1], seed++, what + " decode split");
                    CheckVsReference(b3, pages, heads, kvHeads, hd, [count / 2], seed++, what + " decode, later tokens masked");
                    int n = Math.Min(count, 9);
                    CheckVsReference(b3, pages, heads, kvHeads, hd, Range(count - n, n), seed++, what + $" prefill {n}");
                }
        }
    }

    /// <summary>Several pages: separately quantized pages (Int4 ones a whole number of groups except the last), an F32 page
    /// between them, and slices of one quantized run at offsets the tier allows (Int8 anywhere, Int4 at group boundaries).</summary>
    [TestCaseSource(nameof(TiersAndWidths))]
    public void ManyPages_MixedWithF32AndSliced_MatchReference(KvElementType tier, int bits)
    {
        var options = new CpuKernelOptions { MaxVectorBits = bits };
        {
            using var b1 = new CpuBackend(1, options: options);
            using var b2 = new CpuBackend(2, options: options);
            using var arena = new Arena();
            int seed = 100;
            foreach (var (heads, kvHeads, hd, group) in new[] { (8, 2, 64, 32), (4, 4, 32, 16), (4, 2, 128, 32), (32, 8, 64, 16) })
            {
                int width = kvHeads * hd;
                // separately built pages: tier [0, 64), F32 [64, 77), tier [77, 77 + 96), tier [173, 173 + 37) (partial last group)
                var built = new List<KvPage>();
                int start = 0;
                foreach (var (type, count) in new[] { (tier, 64), (KvElementType.F32, 13), (tier, 96), (tier, 37) })
                {
                    built.Add(arena.Page(type, count, start, width, group, seed++));
                    start += count;
                }
                // one quantized run of 250 tokens from position `start`, presented as slices
                var run = arena.Page(tier, 250, start, width, group, seed++);
                int[] cuts = tier == KvElementType.Int4 ? [0, group, 3 * group, 4 * group, 250] : [0, 5, 6, 70, 151, 250];
                for (int i = 0; i + 1 < cuts.Length; i++) built.Add(KvPages.Slice(run, cuts[i], cuts[i + 1] - cuts[i]));
                int total = start + 250;
                var pages = built.ToArray();
                string what = $"{tier} bits={bits} heads={heads}/{kvHeads} hd={hd} G={group} pages={pages.Length}";
                CheckVsReference(b1, pages, heads, kvHeads, hd, [total - 1], seed++, what + " decode");
                CheckVsReference(b2, pages, heads, kvHeads, hd, [total - 1], seed++, what + " decode split");
                CheckVsReference(b2, pages, heads, kvHeads, hd, [70], seed++, what + " decode at 70");
                CheckVsReference(b2, pages, heads, kvHeads, hd, Range(total - 5, 5), seed++, what + " prefill 5");
                CheckVsReference(b2, pages, heads, kvHeads, hd, Range(150, 40), seed++, what + " prefill 40 mid-cache");
            }
        }
    }

    /// <summary>Attention mass over quantized pages equals the reference's, and the output with mass equals the output without.</summary>
    [TestCase(KvElementType.Int8)]
    [TestCase(KvElementType.Int4)]
    public void AttentionMass_OnQuantizedPages_MatchesReference(KvElementType tier)
    {
        using var b = new CpuBackend(2);
        using var arena = new Arena();
        int heads = 8, kvHeads = 2, hd = 64, width = kvHeads * hd;
        KvPage[] pages = [arena.Page(tier, 96, 0, width, 32, 1), arena.Page(KvElementType.F32, 20, 96, width, 32, 3), arena.Page(tier, 81, 116, width, 32, 5)];
        int total = 197;
        var p = new AttentionParams(heads, kvHeads, hd, 1f / MathF.Sqrt(hd));
        foreach (int[] pos in new[] { new[] { total - 1 }, Range(total - 6, 6), new[] { 30, 150 } })
        {
            var q = Data.Random(pos.Length * heads * hd, 9);
            var y = new float[q.Length]; var y0 = new float[q.Length]; var e = new float[q.Length];
            var mass = new float[kvHeads * total]; var massRef = new float[kvHeads * total];
            b.Attention(q, pos, pages, p, y, mass);
            b.Attention(q, pos, pages, p, y0);
            Ref.Attention(q, pos, pages, p, e, massRef);
            Assert.That(Data.Nmse(y, e), Is.LessThanOrEqualTo(FloatBound), "output vs reference");
            Assert.That(Data.Nmse(y0, e), Is.LessThanOrEqualTo(FloatBound), "output without mass vs reference");
            Assert.That(Data.Nmse(mass, massRef), Is.LessThanOrEqualTo(FloatBound), "mass vs reference");
        }
    }

    /// <summary>The switch off (generic decode-row path) and group sizes the fast path does not take (8) still match the reference.</summary>
    [TestCase(KvElementType.Int8)]
    [TestCase(KvElementType.Int4)]
    public void GenericPathAndSmallGroups_MatchReference(KvElementType tier)
    {
        using var bOn = new CpuBackend(2);
        using var bOff = new CpuBackend(2, options: new CpuKernelOptions { AttentionQuant = false });
        using var arena = new Arena();
        int heads = 4, kvHeads = 2, hd = 64, width = kvHeads * hd;
        var p = new AttentionParams(heads, kvHeads, hd, 1f / MathF.Sqrt(hd));
        var small = new[] { arena.Page(tier, 77, 0, width, 8, 11) };
        fixed (KvPage* ps = small) Assert.That(AttentionRangeQuant.Applies(bOn.Options, ps, 1, hd), Is.False, "group 8 is not the fast path's");
        var pages = new[] { arena.Page(tier, 300, 0, width, 32, 12) };
        fixed (KvPage* ps = pages)
        {
            Assert.That(AttentionRangeQuant.Applies(bOn.Options, ps, 1, hd), Is.True, "group 32 is the fast path's");
            Assert.That(AttentionRangeQuant.Applies(bOff.Options, ps, 1, hd), Is.False, "switched off in the options");
        }
        foreach (var (list, on) in new[] { (small, true), (pages, false) })
        {
            var b = on ? bOn : bOff;
            {
                foreach (int[] pos in new[] { new[] { list[0].TokenCount - 1 }, Range(list[0].TokenCount - 7, 7) })
                {
                    var q = Data.Random(pos.Length * heads * hd, 13);
                    var y = new float[q.Length]; var e = new float[q.Length];
                    b.Attention(q, pos, list, p, y);
                    Ref.Attention(q, pos, list, p, e);
                    Assert.That(Data.Nmse(y, e), Is.LessThanOrEqualTo(FloatBound), $"{tier} enabled={on} G={list[0].GroupSize} rows={pos.Length}");
                }
            }
        }
    }
}
