// Owns: Q4_0 / Q8_0 weight matrices re-laid out once at load into interleaved 8-row blocks ("repacked", as
// llama.cpp's CPU REPACK does), and their GEMV (one token) / GEMM (4 tokens per pass) kernels × Q8_0 activations.
// Layout, per group of 8 consecutive rows (nb = cols / 32 blocks): nb blocks of 16 + Q bytes, each the 8 rows' float16
// d (row order) followed by the block's quants: Q/32 chunks of 32 bytes (one stream; Q bytes per block); chunk c
// holds 4 consecutive quant bytes of each row: byte 4r + k = row r's qs[4c + k]. Q4_0 (Q = 128, 4 chunks): the low
// nibble is element 4c + k, the high nibble element 16 + 4c + k, stored unsigned (0..15). Q8_0 (Q = 256, 8 chunks):
// element 4c + k stored as u8 = q + 128 (q ^ 0x80). Rows after the last full group follow in the original layout,
// so the copy has exactly the original's size.
// Invariants: one u8·s8 dot (vpdpbusd, or vpmaddubsw + vpmaddwd for Q4_0 where pairs stay ≤ 2·15·127) puts each row's
// sum in its own int32 lane — no horizontal reduction; the offset (−8·Σy for Q4_0, −128·Σy for Q8_0, Σy precomputed
// per activation block) is the chain's start value, so block sums are exact integers, equal to ScalarDot's.
// Per (row, token) the float work is the same sequence in GEMV and GEMM — per block acc = fma(d_w·d_y, float(isum),
// acc) — so a token's result does not depend on how many tokens share the call or on the thread split.
// Float16 scales are widened with an exact bit trick for finite values; a matrix with an inf/NaN scale is not repacked.
// Source: the interleaved-rows idea of ggml-cpu's repack (block_q4_0x8); layout and kernels written here.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Engine.Tensors;

namespace Engine.Kernels.Quant;

/// <summary>u8·s8 → int32 (groups of 4) accumulated into a start vector.</summary>
internal interface IDotAcc
{
    static abstract Vector256<int> Acc(Vector256<int> acc, Vector256<byte> u, Vector256<sbyte> s);
}

/// <summary>AVX-VNNI vpdpbusd (exact). Only valid when AvxVnni.IsSupported.</summary>
internal struct VnniAcc : IDotAcc
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Acc(Vector256<int> acc, Vector256<byte> u, Vector256<sbyte> s) => AvxVnni.MultiplyWideningAndAdd(acc, u, s);
}

/// <summary>AVX2 vpmaddubsw + vpmaddwd (exact while u·s pairs stay below 32768).</summary>
internal struct MaddAcc : IDotAcc
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Acc(Vector256<int> acc, Vector256<byte> u, Vector256<sbyte> s) =>
        acc + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, s), Vector256.Create((short)1));
}

/// <summary>What the repacked kernels need of one Q8_0 activation block besides its quants: the integer offset
/// (OffsetFactor · Σ qs) and the float value of its scale d.</summary>
internal struct ActBlock
{
    public int Offset;
    public float Scale;
}

/// <summary>A Q4_0 or Q8_0 matrix repacked into interleaved 8-row groups (see the file header), in native memory.</summary>
internal sealed unsafe class RepackedMatrix : IDisposable
{
    public const int GroupRows = 8;
    private const int Q8Bytes = 34;             // one Q8_0 activation block

    private byte* _data;
    private readonly bool _vnni;
    private readonly bool _ownsData;

    private RepackedMatrix(DType type, int rows, int cols, long rowBytes, byte* data, bool ownsData, bool vnni, nint source, long sourceBytes)
    {
        Type = type; Rows = rows; Cols = cols; RowBytes = rowBytes; _data = data; _ownsData = ownsData; _vnni = vnni;
        Source = source; SourceBytes = sourceBytes;
    }

    public DType Type { get; }
    public int Rows { get; }
    public int Cols { get; }
    public long RowBytes { get; }
    /// <summary>Number of full 8-row groups; rows from Groups·8 on are the tail (original layout).</summary>
    public int Groups => Rows / GroupRows;
    public int Blocks => Cols / 32;
    /// <summary>Address and length of the original bytes this copy was made from.</summary>
    public nint Source { get; }
    public long SourceBytes { get; }
    private int QuantBytes => Type == DType.Q4_0 ? 128 : 256;
    private long GroupBytes => GroupRows * RowBytes;

    /// <summary>True when the kernels for <paramref name="type"/> exist on <paramref name="path"/> (Q4_0: AVX2 or AVX-VNNI;
    /// Q8_0: AVX-VNNI only — its u8 = q + 128 operand would saturate vpmaddubsw pairs).</summary>
    public static bool Supported(DType type, QuantKernelPath path) =>
        (type == DType.Q4_0 && path is QuantKernelPath.Avx2 or QuantKernelPath.Avx2Vnni)
        || (type == DType.Q8_0 && path == QuantKernelPath.Avx2Vnni);

    /// <summary>The multiplier of Σy in the start value of a block's integer sum.</summary>
    public static int OffsetFactor(DType type) => type == DType.Q4_0 ? -8 : -128;

    /// <summary>Whether <paramref name="w"/> can be repacked on <paramref name="path"/> (type, path, at least 8 rows).</summary>
    public static bool CanRepack(TensorView w, QuantKernelPath path) =>
        Supported(w.Type, path) && w.Shape.Length >= 2 && w.RowLength % 32 == 0 && w.RowCount >= GroupRows
        && w.ByteLength >= w.RowBytes * w.RowCount;

    /// <summary>Bytes the repacked copy of <paramref name="w"/> takes (the original's).</summary>
    public static long PackedBytes(TensorView w) => w.RowBytes * w.RowCount;

    /// <summary>Repacks <paramref name="w"/> into its own native memory; see <see cref="TryCreate(TensorView, QuantKernelPath, byte*)"/>.</summary>
    public static RepackedMatrix? TryCreate(TensorView w, QuantKernelPath path)
    {
        if (!CanRepack(w, path)) return null;
        byte* dst = (byte*)NativeMemory.AlignedAlloc((nuint)PackedBytes(w), 64);
        var m = TryCreate(w, path, dst, ownsData: true);
        if (m == null) NativeMemory.AlignedFree(dst);
        return m;
    }

    /// <summary>Repacks <paramref name="w"/> into <paramref name="dst"/> (<see cref="PackedBytes"/> bytes, 64-byte aligned,
    /// owned by the caller and kept alive while the matrix is used), or returns null when it cannot (<see cref="CanRepack"/>)
    /// or a block scale is inf/NaN — those keep the original path.</summary>
    public static RepackedMatrix? TryCreate(TensorView w, QuantKernelPath path, byte* dst) => TryCreate(w, path, dst, ownsData: false);

    private static RepackedMatrix? TryCreate(TensorView w, QuantKernelPath path, byte* dst, bool ownsData)
    {
        if (!CanRepack(w, path)) return null;
        int rows = w.RowCount, cols = w.RowLength;
        long rowBytes = w.RowBytes, total = rowBytes * rows;
        byte* src = (byte*)w.Data;
        var m = new RepackedMatrix(w.Type, rows, cols, rowBytes, dst, false, path == QuantKernelPath.Avx2Vnni, w.Data, w.ByteLength);
        int bad = 0;
        Parallel.For(0, m.Groups, g => { if (!m.PackGroup(src + g * m.GroupBytes, dst + g * m.GroupBytes)) Volatile.Write(ref bad, 1); });
        long packed = m.Groups * m.GroupBytes;
        Buffer.MemoryCopy(src + packed, dst + packed, total - packed, total - packed);
        if (bad != 0 || !FiniteScales(src + packed, rows - m.Groups * GroupRows, m.Blocks, rowBytes, w.Type)) return null;
        return ownsData ? new RepackedMatrix(w.Type, rows, cols, rowBytes, dst, true, m._vnni, w.Data, w.ByteLength) : m;
    }

    private static bool Finite(ushort h) => (h & 0x7C00) != 0x7C00;

    private static bool FiniteScales(byte* rows, int count, int nb, long rowBytes, DType t)
    {
        int bb = t == DType.Q4_0 ? 18 : 34;
        for (int r = 0; r < count; r++)
            for (int b = 0; b < nb; b++)
                if (!Finite(*(ushort*)(rows + r * rowBytes + b * bb))) return false;
        return true;
    }

    /// <summary>Packs 8 original rows at <paramref name="src"/> into one group at <paramref name="dst"/>; false on an inf/NaN scale.</summary>
    private bool PackGroup(byte* src, byte* dst)
    {
        int nb = Blocks, q = QuantBytes, bb = Type == DType.Q4_0 ? 18 : 34;
        uint xor = Type == DType.Q4_0 ? 0u : 0x80808080u;
        bool ok = true;
        for (int r = 0; r < GroupRows; r++)
        {
            byte* row = src + r * RowBytes;
            for (int b = 0; b < nb; b++)
            {
                byte* blk = row + b * bb;
                ushort d = *(ushort*)blk;
                ok &= Finite(d);
                byte* bd = dst + (long)b * (q + 16);
                ((ushort*)bd)[r] = d;
                byte* qd = bd + 16 + 4 * r;
                for (int c = 0; c < q / 32; c++)
                    *(uint*)(qd + 32 * c) = Unsafe.ReadUnaligned<uint>(blk + 2 + 4 * c) ^ xor;
            }
        }
        return ok;
    }

    /// <summary>Row <paramref name="row"/> in the original layout (tests, and anything that needs a row back).</summary>
    public void CopyRow(int row, Span<byte> dst)
    {
        if ((uint)row >= (uint)Rows) throw new ArgumentOutOfRangeException(nameof(row));
        if (dst.Length < RowBytes) throw new ArgumentException("row buffer too small", nameof(dst));
        ObjectDisposedException.ThrowIf(_data == null, this);
        if (row >= Groups * GroupRows) { new ReadOnlySpan<byte>(_data + row * RowBytes, (int)RowBytes).CopyTo(dst); return; }
        int nb = Blocks, q = QuantBytes, bb = Type == DType.Q4_0 ? 18 : 34, r = row % GroupRows;
        byte xor = Type == DType.Q4_0 ? (byte)0 : (byte)0x80;
        byte* g = _data + (row / GroupRows) * GroupBytes;
        for (int b = 0; b < nb; b++)
        {
            Span<byte> blk = dst.Slice(b * bb, bb);
            byte* gb = g + (long)b * (q + 16);
            ushort d = ((ushort*)gb)[r];
            blk[0] = (byte)d; blk[1] = (byte)(d >> 8);
            for (int c = 0; c < q / 32; c++)
                for (int k = 0; k < 4; k++)
                    blk[2 + 4 * c + k] = (byte)(gb[16 + 32 * c + 4 * r + k] ^ xor);
        }
    }

    /// <summary>dst[b] = (OffsetFactor · Σ qs, d) of activation block b of one Q8_0 row (nb blocks).</summary>
    public static void BlockOffsets(DType type, byte* qx, int nb, ActBlock* dst)
    {
        int f = OffsetFactor(type);
        Vector256<byte> flip = Vector256.Create((byte)0x80);
        for (int b = 0; b < nb; b++)
        {
            // Σ (q + 128) over 32 bytes with vpsadbw, then − 32·128
            Vector256<ulong> s = Avx2.SumAbsoluteDifferences(Vector256.Load(qx + Q8Bytes * b + 2) ^ flip, Vector256<byte>.Zero).AsUInt64();
            dst[b].Offset = f * ((int)(s.GetElement(0) + s.GetElement(1) + s.GetElement(2) + s.GetElement(3)) - 32 * 128);
            dst[b].Scale = Fp16.Read(qx + Q8Bytes * b);
        }
    }

    /// <summary>
    /// y[t·yStride + r] = row r · activation row t for the rows of groups [groupStart, groupEnd) — item Groups stands for
    /// the tail rows — and t in [0, n). Activation row t is at qx + t·qxStride (Q8_0), its block offsets at corr + t·nb
    /// (<see cref="BlockOffsets"/>). <paramref name="tokenTile"/> tokens run per pass over the groups (a multiple of 4).
    /// </summary>
    public void MatMul(int groupStart, int groupEnd, byte* qx, long qxStride, ActBlock* corr, int n, float* y, long yStride, int tokenTile)
    {
        ObjectDisposedException.ThrowIf(_data == null, this);
        int nb = Blocks, groups = Groups;
        if (groupEnd > groups)
        {
            groupEnd = groups;
            int tail0 = groups * GroupRows;
            if (tail0 < Rows)
            {
                // w as if the whole matrix were in the original layout (only the tail rows are read)
                byte* w = _data + groups * GroupBytes - tail0 * RowBytes;
                var path = _vnni ? QuantKernelPath.Avx2Vnni : QuantKernelPath.Avx2;
                if (n == 1) QuantDot.DotRows(Type, w, RowBytes, tail0, Rows, qx, Cols, y, path);
                else QuantDot.DotRowsBatch(Type, w, RowBytes, tail0, Rows, qx, qxStride, n, Cols, y, yStride, path);
            }
        }
        if (groupStart >= groupEnd) return;
        if (Type == DType.Q4_0)
        {
            if (_vnni) Run<Q4Kernel<VnniAcc>>(groupStart, groupEnd, qx, qxStride, corr, n, y, yStride, tokenTile, nb);
            else Run<Q4Kernel<MaddAcc>>(groupStart, groupEnd, qx, qxStride, corr, n, y, yStride, tokenTile, nb);
        }
        else Run<Q8Kernel>(groupStart, groupEnd, qx, qxStride, corr, n, y, yStride, tokenTile, nb);
    }

    private void Run<TK>(int g0, int g1, byte* qx, long qxStride, ActBlock* corr, int n, float* y, long yStride, int tokenTile, int nb)
        where TK : struct, IGroupKernel
    {
        long gb = GroupBytes;
        if (n == 1)
        {
            for (int g = g0; g < g1; g++) TK.Gemv(_data + g * gb, nb, qx, corr, y + g * GroupRows);
            return;
        }
        for (int t0 = 0; t0 < n; t0 += tokenTile)
        {
            int t1 = Math.Min(n, t0 + tokenTile);
            for (int g = g0; g < g1; g++)
            {
                byte* wg = _data + g * gb;
                int t = t0;
                for (; t + 4 <= t1; t += 4)
                    TK.Gemm4(wg, nb, qx + t * qxStride, qxStride, corr + (long)t * nb, y + t * yStride + g * GroupRows, yStride);
                for (; t < t1; t++)
                    TK.Gemv(wg, nb, qx + t * qxStride, corr + (long)t * nb, y + t * yStride + g * GroupRows);
            }
        }
    }

    public void Dispose()
    {
        if (_data != null && _ownsData) NativeMemory.AlignedFree(_data);
        _data = null;
    }

    // ---- kernels ----

    /// <summary>8 float16 (finite) → float32, exactly: sign-extend, move exponent|mantissa to float position, scale by 2^112.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Scales(byte* p)
    {
        Vector256<int> h = Avx2.ConvertToVector256Int32((short*)p);
        Vector256<float> mag = (Vector256.ShiftLeft(h, 13) & Vector256.Create(0x0FFFE000)).AsSingle() * Vector256.Create(0x77800000).AsSingle();   // × 2^112
        return (mag.AsInt32() | (h & Vector256.Create(int.MinValue))).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> B4(byte* p) => Vector256.Create(*(int*)p).AsSByte();

    private interface IGroupKernel
    {
        static abstract void Gemv(byte* g, int nb, byte* y, ActBlock* corr, float* o);
        static abstract void Gemm4(byte* g, int nb, byte* y, long ys, ActBlock* corr, float* o, long os);
    }

    private struct Q4Kernel<TDot> : IGroupKernel where TDot : struct, IDotAcc
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector256<float> Tok(Vector256<float> acc, Vector256<float> dw, byte* yb, ActBlock* a,
            Vector256<byte> l0, Vector256<byte> h0, Vector256<byte> l1, Vector256<byte> h1,
            Vector256<byte> l2, Vector256<byte> h2, Vector256<byte> l3, Vector256<byte> h3)
        {
            Vector256<int> s0 = Vector256.Create(a->Offset), s1 = Vector256<int>.Zero;
            s0 = TDot.Acc(s0, l0, B4(yb + 2)); s1 = TDot.Acc(s1, h0, B4(yb + 18));
            s0 = TDot.Acc(s0, l1, B4(yb + 6)); s1 = TDot.Acc(s1, h1, B4(yb + 22));
            s0 = TDot.Acc(s0, l2, B4(yb + 10)); s1 = TDot.Acc(s1, h2, B4(yb + 26));
            s0 = TDot.Acc(s0, l3, B4(yb + 14)); s1 = TDot.Acc(s1, h3, B4(yb + 30));
            return Fma.MultiplyAdd(dw * Vector256.Create(a->Scale), Avx.ConvertToVector256Single(s0 + s1), acc);
        }

        public static void Gemv(byte* g, int nb, byte* y, ActBlock* corr, float* o)
        {
            Vector256<byte> m = Vector256.Create((byte)0x0F);
            Vector256<float> acc = Vector256<float>.Zero;
            for (int b = 0; b < nb; b++, g += 144)
            {
                Vector256<byte> q0 = Vector256.Load(g + 16), q1 = Vector256.Load(g + 48), q2 = Vector256.Load(g + 80), q3 = Vector256.Load(g + 112);
                acc = Tok(acc, Scales(g), y + Q8Bytes * b, corr + b,
                    q0 & m, Vector256.ShiftRightLogical(q0.AsUInt16(), 4).AsByte() & m,
                    q1 & m, Vector256.ShiftRightLogical(q1.AsUInt16(), 4).AsByte() & m,
                    q2 & m, Vector256.ShiftRightLogical(q2.AsUInt16(), 4).AsByte() & m,
                    q3 & m, Vector256.ShiftRightLogical(q3.AsUInt16(), 4).AsByte() & m);
            }
            acc.Store(o);
        }

        public static void Gemm4(byte* g, int nb, byte* y, long ys, ActBlock* corr, float* o, long os)
        {
            Vector256<byte> m = Vector256.Create((byte)0x0F);
            Vector256<float> a0 = Vector256<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
            byte* y0 = y, y1 = y + ys, y2 = y + 2 * ys, y3 = y + 3 * ys;
            ActBlock* c0 = corr, c1 = corr + nb, c2 = corr + 2 * nb, c3 = corr + 3 * nb;
            for (int b = 0; b < nb; b++, g += 144)
            {
                Vector256<byte> q0 = Vector256.Load(g + 16), q1 = Vector256.Load(g + 48), q2 = Vector256.Load(g + 80), q3 = Vector256.Load(g + 112);
                Vector256<byte> l0 = q0 & m, h0 = Vector256.ShiftRightLogical(q0.AsUInt16(), 4).AsByte() & m;
                Vector256<byte> l1 = q1 & m, h1 = Vector256.ShiftRightLogical(q1.AsUInt16(), 4).AsByte() & m;
                Vector256<byte> l2 = q2 & m, h2 = Vector256.ShiftRightLogical(q2.AsUInt16(), 4).AsByte() & m;
                Vector256<byte> l3 = q3 & m, h3 = Vector256.ShiftRightLogical(q3.AsUInt16(), 4).AsByte() & m;
                Vector256<float> dw = Scales(g);
                long ob = (long)Q8Bytes * b;
                a0 = Tok(a0, dw, y0 + ob, c0 + b, l0, h0, l1, h1, l2, h2, l3, h3);
                a1 = Tok(a1, dw, y1 + ob, c1 + b, l0, h0, l1, h1, l2, h2, l3, h3);
                a2 = Tok(a2, dw, y2 + ob, c2 + b, l0, h0, l1, h1, l2, h2, l3, h3);
                a3 = Tok(a3, dw, y3 + ob, c3 + b, l0, h0, l1, h1, l2, h2, l3, h3);
            }
            a0.Store(o); a1.Store(o + os); a2.Store(o + 2 * os); a3.Store(o + 3 * os);
        }
    }

    private struct Q8Kernel : IGroupKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector256<float> Tok(Vector256<float> acc, Vector256<float> dw, byte* yb, ActBlock* a,
            Vector256<byte> w0, Vector256<byte> w1, Vector256<byte> w2, Vector256<byte> w3,
            Vector256<byte> w4, Vector256<byte> w5, Vector256<byte> w6, Vector256<byte> w7)
        {
            Vector256<int> s0 = Vector256.Create(a->Offset), s1 = Vector256<int>.Zero;
            s0 = VnniAcc.Acc(s0, w0, B4(yb + 2)); s1 = VnniAcc.Acc(s1, w1, B4(yb + 6));
            s0 = VnniAcc.Acc(s0, w2, B4(yb + 10)); s1 = VnniAcc.Acc(s1, w3, B4(yb + 14));
            s0 = VnniAcc.Acc(s0, w4, B4(yb + 18)); s1 = VnniAcc.Acc(s1, w5, B4(yb + 22));
            s0 = VnniAcc.Acc(s0, w6, B4(yb + 26)); s1 = VnniAcc.Acc(s1, w7, B4(yb + 30));
            return Fma.MultiplyAdd(dw * Vector256.Create(a->Scale), Avx.ConvertToVector256Single(s0 + s1), acc);
        }

        public static void Gemv(byte* g, int nb, byte* y, ActBlock* corr, float* o)
        {
            Vector256<float> acc = Vector256<float>.Zero;
            for (int b = 0; b < nb; b++, g += 272)
                acc = Tok(acc, Scales(g), y + Q8Bytes * b, corr + b,
                    Vector256.Load(g + 16), Vector256.Load(g + 48), Vector256.Load(g + 80), Vector256.Load(g + 112),
                    Vector256.Load(g + 144), Vector256.Load(g + 176), Vector256.Load(g + 208), Vector256.Load(g + 240));
            acc.Store(o);
        }

        public static void Gemm4(byte* g, int nb, byte* y, long ys, ActBlock* corr, float* o, long os)
        {
            Vector256<float> a0 = Vector256<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
            byte* y0 = y, y1 = y + ys, y2 = y + 2 * ys, y3 = y + 3 * ys;
            ActBlock* c0 = corr, c1 = corr + nb, c2 = corr + 2 * nb, c3 = corr + 3 * nb;
            for (int b = 0; b < nb; b++, g += 272)
            {
                Vector256<byte> w0 = Vector256.Load(g + 16), w1 = Vector256.Load(g + 48), w2 = Vector256.Load(g + 80), w3 = Vector256.Load(g + 112);
                Vector256<byte> w4 = Vector256.Load(g + 144), w5 = Vector256.Load(g + 176), w6 = Vector256.Load(g + 208), w7 = Vector256.Load(g + 240);
                Vector256<float> dw = Scales(g);
                long ob = (long)Q8Bytes * b;
                a0 = Tok(a0, dw, y0 + ob, c0 + b, w0, w1, w2, w3, w4, w5, w6, w7);
                a1 = Tok(a1, dw, y1 + ob, c1 + b, w0, w1, w2, w3, w4, w5, w6, w7);
                a2 = Tok(a2, dw, y2 + ob, c2 + b, w0, w1, w2, w3, w4, w5, w6, w7);
                a3 = Tok(a3, dw, y3 + ob, c3 + b, w0, w1, w2, w3, w4, w5, w6, w7);
            }
            a0.Store(o); a1.Store(o + os); a2.Store(o + 2 * os); a3.Store(o + 3 * os);
        }
    }
}
