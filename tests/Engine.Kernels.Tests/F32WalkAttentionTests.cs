// Owns: tests of AttentionRangeF32Walk (the per-KV-head chunked walk of float32 KV pages) against the reference backend
// (float64 accumulation) and against AttentionRange512 (the walk's invariant: bitwise equal outputs, only the memory
// order differs). Covers token counts 1..300, head dims 32/64/128 (and 48: the generic 512-bit dot), GQA groups 2/4
// (and group 1, which the walk leaves to AttentionRange512), one page and many pages (16-token blocks; odd sizes 7/13
// so chunks and page jumps fall at odd offsets), decode with and without the split-cache merge (1 and 3 threads),
// causal prefill, a query seeing only part of the cache, and every ISA width (CpuKernelOptions.MaxVectorBits 512 / 256 / 128 / 0;
// below 512 the walk does not apply and the reference must still match). Bound: NMSE ≤ 1e-7 as the other attention tests.
namespace Engine.Kernels.Tests;

using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

public sealed unsafe class F32WalkAttentionTests
{
    private const double FloatBound = 1e-7;
    private static readonly ReferenceBackend Ref = new();

    private static KvPage[] Pages(List<nint> allocs, int total, int width, int[] sizes, int seed)
    {
        var k = Data.Random(total * width, seed, 2f); var v = Data.Random(total * width, seed + 1);
        var pages = new List<KvPage>();
        int start = 0, i = 0;
        while (start < total)
        {
            int n = Math.Min(sizes[i++ % sizes.Length], total - start);
            // each page its own allocation with spare rows around it (scattered pages, as a paged pool gives)
            float* pk = (float*)NativeMemory.AlignedAlloc((nuint)((n + 2L) * width * 4), 64);
            float* pv = (float*)NativeMemory.AlignedAlloc((nuint)((n + 2L) * width * 4), 64);
            allocs.Add((nint)pk); allocs.Add((nint)pv);
            k.AsSpan(start * width, n * width).CopyTo(new Span<float>(pk + width, n * width));
            v.AsSpan(start * width, n * width).CopyTo(new Span<float>(pv + width, n * width));
            pages.Add(new KvPage((nint)(pk + width), (nint)(pv + width), n, start, width));
            start += n;
        }
        return pages.ToArray();
    }

    private static int[] Range(int from, int count) => Enumerable.Range(from, count).ToArray();

    [Test]
    public void Walk_MatchesReference_AndEqualsPageWalkBitwise([Values(512, 256, 128, 0)] int bits)
    {
        var allocs = new List<nint>();
        // Two backends per thread count: the walk on (production) and off (the page walk it must equal bitwise).
        var on = new CpuKernelOptions { MaxVectorBits = bits };
        var off = on with { AttentionF32Walk = false };
        try
        {
            using var b1 = new CpuBackend(1, options: on);
            using var b3 = new CpuBackend(3, options: on);
            using var b1Off = new CpuBackend(1, options: off);
            using var b3Off = new CpuBackend(3, options: off);
            int seed = 100;
            foreach (int hd in new[] { 32, 48, 64, 128 })
                foreach (var (heads, kvHeads) in new[] { (4, 2), (8, 2), (4, 4) })
                    foreach (int total in new[] { 1, 5, 16, 37, 130, 300 })
                        foreach (int[] sizes in new[] { new[] { total }, new[] { 16 }, new[] { 7, 13 } })
                        {
                            var pages = Pages(allocs, total, kvHeads * hd, sizes, seed++);
                            var p = new AttentionParams(heads, kvHeads, hd, 1f / MathF.Sqrt(hd));
                            string what = $"bits {bits} hd {hd} {heads}/{kvHeads} total {total} pages [{string.Join(",", sizes)}]";
                            Assert.That(AttentionRangeF32Walk.ChunkTokens(on, hd) % 4, Is.Zero);
                            var cases = new List<(CpuBackend B, CpuBackend Off, int[] Pos, string Name)>
                            {
                                (b1, b1Off, new[] { total - 1 }, "decode"), (b3, b3Off, new[] { total - 1 }, "decode split"),
                                (b1, b1Off, Range(Math.Max(0, total - 6), Math.Min(6, total)), "prefill"),
                                (b3, b3Off, new[] { total / 2 }, "partial view"),
                            };
                            foreach (var (b, bOff, pos, name) in cases)
                            {
                                var q = Data.Random(pos.Length * heads * hd, seed++);
                                var walk = new float[q.Length]; var page = new float[q.Length]; var e = new float[q.Length];
                                Assert.That(AttentionRangeF32Walk.Applies(on, on.Width, p), Is.EqualTo(bits >= 512 && Avx512F.IsSupported && hd % 16 == 0 && heads > kvHeads), what);
                                Assert.That(AttentionRangeF32Walk.Applies(off, off.Width, p), Is.False, what);
                                b.Attention(q, pos, pages, p, walk);
                                bOff.Attention(q, pos, pages, p, page);
                                Ref.Attention(q, pos, pages, p, e);
                                Assert.That(Data.Nmse(walk, e), Is.LessThanOrEqualTo(FloatBound), what + " " + name);
                                Assert.That(walk, Is.EqualTo(page), what + " " + name + ": walk equals the page walk bitwise");
                            }
                        }
        }
        finally
        {
            foreach (var a in allocs) NativeMemory.AlignedFree((void*)a);
        }
    }
}
