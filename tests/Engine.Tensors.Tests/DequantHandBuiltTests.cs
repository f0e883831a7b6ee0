// Owns: hand-built block tests for Dequant.Row: each test packs a block from element-major quant values following
// the GGML layout description (the packer here is written independently of the decoder) and computes the expected
// floats from the format's formula.
using System.Buffers.Binary;
using Engine.Tensors.Quants;

namespace Engine.Tensors.Tests;

public class DequantHandBuiltTests
{
    private const ushort HalfOne = 0x3C00, HalfHalf = 0x3800, HalfMinusOne = 0xBC00, HalfQuarter = 0x3400, HalfTwo = 0x4000;

    private static void PutHalf(byte[] b, int offset, ushort bits) => BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(offset), bits);

    private static float[] Deq(DType t, byte[] src, int n)
    {
        var y = new float[n];
        Dequant.Row(t, src, y);
        return y;
    }

    [Test]
    public void HalfConversions_KnownValues()
    {
        Assert.Multiple(() =>
        {
            Assert.That(Dequant.HalfToFloat(0x3C00), Is.EqualTo(1f));
            Assert.That(Dequant.HalfToFloat(0xC000), Is.EqualTo(-2f));
            Assert.That(Dequant.HalfToFloat(0x3800), Is.EqualTo(0.5f));
            Assert.That(Dequant.HalfToFloat(0x7BFF), Is.EqualTo(65504f));
            Assert.That(Dequant.HalfToFloat(0x0001), Is.EqualTo(MathF.Pow(2, -24)));
            Assert.That(Dequant.HalfToFloat(0x7C00), Is.EqualTo(float.PositiveInfinity));
            Assert.That(Dequant.FloatToHalf(1f), Is.EqualTo((ushort)0x3C00));
            // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even → 1.
            Assert.That(Dequant.FloatToHalf(1f + MathF.Pow(2, -11)), Is.EqualTo((ushort)0x3C00));
            Assert.That(Dequant.FloatToHalf(1f + 3 * MathF.Pow(2, -11)), Is.EqualTo((ushort)0x3C02));
            Assert.That(Dequant.FloatToHalf(1e6f), Is.EqualTo((ushort)0x7C00));
        });
    }

    [Test]
    public void HalfRoundTrip_AllFinitePatterns()
    {
        for (int h = 0; h < 65536; h++)
        {
            float f = Dequant.HalfToFloat((ushort)h);
            if (float.IsNaN(f)) continue;
            if (Dequant.FloatToHalf(f) != (ushort)h) Assert.Fail($"half 0x{h:X4} → {f} → 0x{Dequant.FloatToHalf(f):X4}");
        }
    }

    [Test]
    public void BF16Conversions_KnownValues()
    {
        Assert.Multiple(() =>
        {
            Assert.That(Dequant.BF16ToFloat(0x3F80), Is.EqualTo(1f));
            Assert.That(Dequant.BF16ToFloat(0xC040), Is.EqualTo(-3f));
            Assert.That(Dequant.FloatToBF16(1f), Is.EqualTo((ushort)0x3F80));
            Assert.That(Dequant.FloatToBF16(1f + MathF.Pow(2, -8)), Is.EqualTo((ushort)0x3F80)); // tie → even
            Assert.That(Dequant.FloatToBF16(1f + 3 * MathF.Pow(2, -8)), Is.EqualTo((ushort)0x3F82)); // tie → even (up)
            Assert.That(Dequant.FloatToBF16(1f + 1.5f * MathF.Pow(2, -8)), Is.EqualTo((ushort)0x3F81)); // above tie → up
            Assert.That(float.IsNaN(Dequant.BF16ToFloat(Dequant.FloatToBF16(float.NaN))), Is.True);
        });
    }

    [Test]
    public void PlainTypes()
    {
        var f32 = new byte[8];
        BinaryPrimitives.WriteSingleLittleEndian(f32, 1.25f);
        BinaryPrimitives.WriteSingleLittleEndian(f32.AsSpan(4), -7f);
        var f16 = new byte[4]; PutHalf(f16, 0, HalfHalf); PutHalf(f16, 2, 0xC000);
        var bf16 = new byte[4]; BinaryPrimitives.WriteUInt16LittleEndian(bf16, 0x3F80); BinaryPrimitives.WriteUInt16LittleEndian(bf16.AsSpan(2), 0xC040);
        Assert.Multiple(() =>
        {
            Assert.That(Deq(DType.F32, f32, 2), Is.EqualTo(new[] { 1.25f, -7f }));
            Assert.That(Deq(DType.F16, f16, 2), Is.EqualTo(new[] { 0.5f, -2f }));
            Assert.That(Deq(DType.BF16, bf16, 2), Is.EqualTo(new[] { 1f, -3f }));
        });
    }

    // Packs 32 4-bit values: element e < 16 in the low nibble of byte e, element e ≥ 16 in the high nibble of byte e-16.
    private static void PackNibbles32(int[] q, byte[] b, int offset)
    {
        for (int e = 0; e < 32; e++)
            b[offset + (e % 16)] |= (byte)((q[e] & 0xF) << (e < 16 ? 0 : 4));
    }

    private static void PackHighBits32(int[] q, byte[] b, int offset)
    {
        uint qh = 0;
        for (int e = 0; e < 32; e++) if ((q[e] & 16) != 0) qh |= 1u << e;
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(offset), qh);
    }

    [Test]
    public void Q4_0_Block()
    {
        var q = Enumerable.Range(0, 32).Select(e => (e * 7 + 3) % 16).ToArray();
        var b = new byte[18]; PutHalf(b, 0, HalfHalf); PackNibbles32(q, b, 2);
        var expected = q.Select(v => (v - 8) * 0.5f).ToArray();
        Assert.That(Deq(DType.Q4_0, b, 32), Is.EqualTo(expected));
    }

    [Test]
    public void Q4_1_Block()
    {
        var q = Enumerable.Range(0, 32).Select(e => (e * 5 + 1) % 16).ToArray();
        var b = new byte[20]; PutHalf(b, 0, HalfHalf); PutHalf(b, 2, HalfMinusOne); PackNibbles32(q, b, 4);
        var expected = q.Select(v => v * 0.5f - 1f).ToArray();
        Assert.That(Deq(DType.Q4_1, b, 32), Is.EqualTo(expected));
    }

    [Test]
    public void Q5_0_Block()
    {
        var q = Enumerable.Range(0, 32).Select(e => (e * 11 + 5) % 32).ToArray();
        var b = new byte[22]; PutHalf(b, 0, HalfQuarter); PackHighBits32(q, b, 2); PackNibbles32(q, b, 6);
        var expected = q.Select(v => (v - 16) * 0.25f).ToArray();
        Assert.That(Deq(DType.Q5_0, b, 32), Is.EqualTo(expected));
    }

    [Test]
    public void Q5_1_Block()
    {
        var q = Enumerable.Range(0, 32).Select(e => (e * 13 + 2) % 32).ToArray();
        var b = new byte[24]; PutHalf(b, 0, HalfHalf); PutHalf(b, 2, HalfTwo); PackHighBits32(q, b, 4); PackNibbles32(q, b, 8);
        var expected = q.Select(v => v * 0.5f + 2f).ToArray();
        Assert.That(Deq(DType.Q5_1, b, 32), Is.EqualTo(expected));
    }

    [Test]
    public void Q8_0_And_Q8_1_Blocks_TwoBlocks()
    {
        var b = new byte[68]; var b1 = new byte[72];
        var expected = new float[64];
        for (int blk = 0; blk < 2; blk++)
        {
            ushort d = blk == 0 ? HalfHalf : HalfTwo;
            float df = blk == 0 ? 0.5f : 2f;
            PutHalf(b, 34 * blk, d); PutHalf(b1, 36 * blk, d); PutHalf(b1, 36 * blk + 2, 0x7BFF /* ignored sum */);
            for (int e = 0; e < 32; e++)
            {
                int v = (e * 37 + blk * 91) % 256 - 128;
                b[34 * blk + 2 + e] = (byte)(sbyte)v; b1[36 * blk + 4 + e] = (byte)(sbyte)v;
                expected[32 * blk + e] = v * df;
            }
        }
        Assert.Multiple(() =>
        {
            Assert.That(Deq(DType.Q8_0, b, 64), Is.EqualTo(expected));
            Assert.That(Deq(DType.Q8_1, b1, 64), Is.EqualTo(expected));
        });
    }

    [Test]
    public void Q8_K_Block()
    {
        var b = new byte[292];
        BinaryPrimitives.WriteSingleLittleEndian(b, 0.125f);
        var expected = new float[256];
        for (int e = 0; e < 256; e++) { int v = (e * 29) % 255 - 127; b[4 + e] = (byte)(sbyte)v; expected[e] = v * 0.125f; }
        Assert.That(Deq(DType.Q8_K, b, 256), Is.EqualTo(expected));
    }

    [Test]
    public void Q4_K_Block()
    {
        // 8 sub-blocks of 32: scale s_j = 3 + 7j (includes values ≥ 16 and ≥ 32 to exercise 6-bit packing), min m_j = 60 - 5j.
        int[] sc = Enumerable.Range(0, 8).Select(j => 3 + 7 * j).ToArray();
        int[] mn = Enumerable.Range(0, 8).Select(j => 60 - 5 * j).ToArray();
        int[] q = Enumerable.Range(0, 256).Select(e => (e * 7 + e / 32) % 16).ToArray();
        var b = new byte[144];
        PutHalf(b, 0, HalfHalf); PutHalf(b, 2, HalfQuarter);
        PackK4Scales(sc, mn, b, 4);
        // element e: group g = e/64; within the group the first 32 are low nibbles of qs[32g + l], the next 32 high nibbles.
        for (int e = 0; e < 256; e++)
        {
            int g = e / 64, r = e % 64;
            b[16 + 32 * g + r % 32] |= (byte)(q[e] << (r < 32 ? 0 : 4));
        }
        var expected = Enumerable.Range(0, 256).Select(e => 0.5f * sc[e / 32] * q[e] - 0.25f * mn[e / 32]).ToArray();
        Assert.That(Deq(DType.Q4_K, b, 256), Is.EqualTo(expected));
    }

    [Test]
    public void Q5_K_Block()
    {
        int[] sc = Enumerable.Range(0, 8).Select(j => 63 - 6 * j).ToArray();
        int[] mn = Enumerable.Range(0, 8).Select(j => 1 + 8 * j).ToArray();
        int[] q = Enumerable.Range(0, 256).Select(e => (e * 13 + e / 64) % 32).ToArray();
        var b = new byte[176];
        PutHalf(b, 0, HalfQuarter); PutHalf(b, 2, HalfHalf);
        PackK4Scales(sc, mn, b, 4);
        for (int e = 0; e < 256; e++)
        {
            int g = e / 64, r = e % 64, l = r % 32, sub = e / 32; // sub = 2g + (r >= 32)
            b[48 + 32 * g + l] |= (byte)((q[e] & 0xF) << (r < 32 ? 0 : 4));
            if ((q[e] & 16) != 0) b[16 + l] |= (byte)(1 << sub);
        }
        var expected = Enumerable.Range(0, 256).Select(e => 0.25f * sc[e / 32] * q[e] - 0.5f * mn[e / 32]).ToArray();
        Assert.That(Deq(DType.Q5_K, b, 256), Is.EqualTo(expected));
    }

    // Writes the 12-byte 6-bit scale/min packing of Q4_K/Q5_K from the layout description:
    // bytes 0..3: scale j (low 6 bits) + bits 4..5 of scale j+4 in the top 2 bits; bytes 4..7: the same for mins;
    // bytes 8..11: low nibble = low 4 bits of scale j+4, high nibble = low 4 bits of min j+4.
    private static void PackK4Scales(int[] sc, int[] mn, byte[] b, int o)
    {
        for (int j = 0; j < 4; j++)
        {
            b[o + j] = (byte)(sc[j] | ((sc[j + 4] >> 4) << 6));
            b[o + 4 + j] = (byte)(mn[j] | ((mn[j + 4] >> 4) << 6));
            b[o + 8 + j] = (byte)((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
        }
    }

    [Test]
    public void Q6_K_Block()
    {
        sbyte[] sc = Enumerable.Range(0, 16).Select(i => (sbyte)(i * 9 - 70)).ToArray();
        int[] q = Enumerable.Range(0, 256).Select(e => (e * 17 + e / 16) % 64).ToArray(); // stored value 0..63, x uses q-32
        var b = new byte[210];
        for (int e = 0; e < 256; e++)
        {
            int h = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
            // quarter 0: ql[l] low, 1: ql[l+32] low, 2: ql[l] high, 3: ql[l+32] high; qh[l] bits 2·quarter.
            int qlIndex = 64 * h + l + (quarter % 2 == 1 ? 32 : 0);
            b[qlIndex] |= (byte)((q[e] & 0xF) << (quarter >= 2 ? 4 : 0));
            b[128 + 32 * h + l] |= (byte)((q[e] >> 4) << (2 * quarter));
        }
        for (int i = 0; i < 16; i++) b[192 + i] = (byte)sc[i];
        PutHalf(b, 208, HalfHalf);
        var expected = Enumerable.Range(0, 256).Select(e => 0.5f * sc[e / 16] * (q[e] - 32)).ToArray();
        Assert.That(Deq(DType.Q6_K, b, 256), Is.EqualTo(expected));
    }

    [Test]
    public void Q2_K_Block()
    {
        int[] sc = Enumerable.Range(0, 16).Select(i => (i * 5 + 1) % 16).ToArray();
        int[] mn = Enumerable.Range(0, 16).Select(i => 15 - i).ToArray();
        int[] q = Enumerable.Range(0, 256).Select(e => (e * 3 + e / 32) % 4).ToArray();
        var b = new byte[84];
        for (int i = 0; i < 16; i++) b[i] = (byte)(sc[i] | (mn[i] << 4));
        for (int e = 0; e < 256; e++)
        {
            int h = e / 128, r = e % 128, k = r / 32, l = r % 32; // 2-bit field k of qs[32h + l]
            b[16 + 32 * h + l] |= (byte)(q[e] << (2 * k));
        }
        PutHalf(b, 80, HalfHalf); PutHalf(b, 82, HalfQuarter);
        var expected = Enumerable.Range(0, 256).Select(e => 0.5f * sc[e / 16] * q[e] - 0.25f * mn[e / 16]).ToArray();
        Assert.That(Deq(DType.Q2_K, b, 256), Is.EqualTo(expected));
    }

    [Test]
    public void Q3_K_Block()
    {
        int[] sc = Enumerable.Range(0, 16).Select(i => i * 4 - 32).ToArray(); // −32..28, 6-bit signed
        int[] q = Enumerable.Range(0, 256).Select(e => (e * 5 + e / 16) % 8 - 4).ToArray(); // −4..3
        var b = new byte[110];
        for (int e = 0; e < 256; e++)
        {
            int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
            int u = q[e] + 4;                     // 0..7: low 2 bits in qs, bit 2 in hmask (set = no −4 offset)
            b[32 + 32 * h + l] |= (byte)((u & 3) << (2 * k));
            if ((u & 4) != 0) b[l] |= (byte)(1 << (4 * h + k));
        }
        // scales: value+32 (0..63); low nibble of scale i in byte i (i < 8) or high nibble of byte i-8; bits 4..5 in
        // byte 8 + i%4 at bit position 2·(i/4).
        for (int i = 0; i < 16; i++)
        {
            int u = sc[i] + 32;
            if (i < 8) b[96 + i] |= (byte)(u & 15); else b[96 + i - 8] |= (byte)((u & 15) << 4);
            b[96 + 8 + i % 4] |= (byte)((u >> 4) << (2 * (i / 4)));
        }
        PutHalf(b, 108, HalfTwo);
        var expected = Enumerable.Range(0, 256).Select(e => 2f * sc[e / 16] * q[e]).ToArray();
        Assert.That(Deq(DType.Q3_K, b, 256), Is.EqualTo(expected));
    }

    [Test]
    public void KScalePacking_RoundTrips()
    {
        var rnd = new Random(5);
        for (int t = 0; t < 100; t++)
        {
            int[] s = Enumerable.Range(0, 8).Select(_ => rnd.Next(64)).ToArray(), m = Enumerable.Range(0, 8).Select(_ => rnd.Next(64)).ToArray();
            var packed = new byte[12];
            KScales.PackScaleMinK4(s, m, packed);
            for (int j = 0; j < 8; j++)
            {
                KScales.ScaleMinK4(packed, j, out int sj, out int mj);
                Assert.That((sj, mj), Is.EqualTo((s[j], m[j])));
            }
            int[] s3 = Enumerable.Range(0, 16).Select(_ => rnd.Next(64) - 32).ToArray();
            KScales.PackScaleQ3K(s3, packed);
            for (int i = 0; i < 16; i++) Assert.That(KScales.ScaleQ3K(packed, i), Is.EqualTo(s3[i]));
        }
    }

    [Test]
    public void BadArguments_AreTypedErrors()
    {
        Assert.Multiple(() =>
        {
            Assert.Throws<ArgumentException>(() => Dequant.Row(DType.Q4_0, new byte[18], new float[31]));
            Assert.Throws<ArgumentException>(() => Dequant.Row(DType.Q4_0, new byte[17], new float[32]));
            Assert.Throws<NotSupportedException>(() => Dequant.Row(DType.I32, new byte[4], new float[1]));
        });
    }
}
