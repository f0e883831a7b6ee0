// HalfConvert (vectorised F16 → float) against .NET's own Half → float conversion over all 65,536 bit patterns, through
// the 512-bit, 256-bit and scalar paths (lengths chosen so each path sees every pattern), bit for bit (NaNs: NaN with
// the same sign and payload as the IEEE widening, which is what the vector paths produce); and DotF16 against a
// float64 dot of the converted values.
using Engine.Kernels;

namespace Engine.Kernels.Tests;

public unsafe class HalfConvertTests
{
    private static uint Expected(ushort h)
    {
        float f = (float)BitConverter.UInt16BitsToHalf(h);
        if (!float.IsNaN(f)) return BitConverter.SingleToUInt32Bits(f);
        return ((uint)(h & 0x8000) << 16) | 0x7F800000u | ((uint)(h & 0x03FF) << 13);   // IEEE widening keeps the payload
    }

    [TestCase(65536)]   // 512-bit path (16 at a time) for every pattern
    [TestCase(65544)]   // + a 256-bit tail
    [TestCase(7)]       // scalar only
    public void F16ToFloatIsExactForEveryBitPattern(int n)
    {
        var src = new ushort[n];
        for (int i = 0; i < n; i++) src[i] = (ushort)(i * 40503);   // odd multiplier: a permutation of all 65,536 patterns
        var dst = new float[n];
        fixed (ushort* s = src) fixed (float* d = dst) HalfConvert.F16ToFloat(SimdWidth.Widest, s, d, n);
        int bad = 0;
        for (int i = 0; i < n; i++)
        {
            uint got = BitConverter.SingleToUInt32Bits(dst[i]), want = Expected(src[i]);
            bool ok = float.IsNaN(dst[i]) ? float.IsNaN(BitConverter.UInt32BitsToSingle(want)) && (got & 0x80000000) == (want & 0x80000000) : got == want;
            if (!ok && bad++ < 5) TestContext.Out.WriteLine($"0x{src[i]:X4}: got 0x{got:X8}, want 0x{want:X8}");
        }
        Assert.That(bad, Is.Zero);
    }

    [Test]
    public void F16x8PathIsExactForEveryBitPattern()
    {
        // 8-wide path alone: 8 halves at a time through F16x8.
        var src = new ushort[65536];
        for (int i = 0; i < src.Length; i++) src[i] = (ushort)i;
        int bad = 0;
        fixed (ushort* s = src)
            for (int i = 0; i < src.Length; i += 8)
            {
                var v = HalfConvert.F16x8(s + i);
                for (int j = 0; j < 8; j++)
                {
                    float got = v[j], want = BitConverter.UInt32BitsToSingle(Expected(s[i + j]));
                    if (float.IsNaN(want) ? !float.IsNaN(got) : BitConverter.SingleToUInt32Bits(got) != BitConverter.SingleToUInt32Bits(want)) bad++;
                }
            }
        Assert.That(bad, Is.Zero);
    }

    [TestCase(1)] [TestCase(15)] [TestCase(16)] [TestCase(33)] [TestCase(300)] [TestCase(2048)]
    public void DotF16MatchesAFloat64Dot(int n)
    {
        var rng = new Random(n);
        var w = new ushort[n];
        var x = new float[n];
        double want = 0, scale = 0;
        for (int i = 0; i < n; i++)
        {
            w[i] = BitConverter.HalfToUInt16Bits((Half)(rng.NextSingle() * 2 - 1));
            x[i] = rng.NextSingle() * 2 - 1;
            double p = (double)(float)BitConverter.UInt16BitsToHalf(w[i]) * x[i];
            want += p; scale += Math.Abs(p);
        }
        float got;
        fixed (ushort* pw = w) fixed (float* px = x) got = HalfConvert.DotF16(SimdWidth.Widest, pw, px, n);
        Assert.That(Math.Abs(got - want), Is.LessThanOrEqualTo(1e-6 * scale + 1e-30));
    }
}
