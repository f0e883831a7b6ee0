// Owns: the CPU GEMV/GEMM job: y[t, r] = Σ_c x[t, c] · W[r, c] for every supported weight type.
// Invariants: work is split over weight rows in chunks (one pool item = one weight row); within a chunk, token tiles
// (~256 KiB of activations) run outside and 2 rows × 4 tokens register tiles inside, so the chunk's rows (~256 KiB)
// stay in L2 across all token tiles and each weight row is read from memory once per call (this is what makes prompt
// processing fast). The per-element summation order depends only on (row, token) position inside a token tile, never
// on the thread split, so results are bitwise identical for any thread count.
// F32 rows are dotted in place; F16/BF16 rows are converted on the fly for one token (fused convert+FMA, the decode
// path) or decoded once per chunk into per-thread scratch for token batches. Block-quantized rows use the `quants`
// helper's llama.cpp-style vec_dot (Engine.Kernels.Quant.QuantDot): each token row is quantized once (Q8_0/Q8_1/Q8_K,
// QuantizeJob), then QuantDot.DotRows (one token) or QuantDot.DotRowsBatch (token tiles, 4-token kernels) runs over
// the chunk's rows (chunk ≈ 256 KiB of weight bytes for batches, so it stays in L2 across token tiles).
// Any other type falls back to the scalar dequantizer into scratch.
// Float accumulation is float32 with FMA (differences to the float64 reference are ≈1e-7 relative); quantized paths
// differ from the reference by the Q8 activation rounding (see VsReferenceTests.QuantMatMulBound).
namespace Engine.Kernels;

using System.Runtime.Intrinsics;
using Engine.Kernels.Quant;
using Engine.Tensors;

/// <summary>Quantizes token rows of x into the weight type's activation blocks (one pool item = one token row).</summary>
internal sealed unsafe class QuantizeJob : CpuJob
{
    public float* X;            // [n, Cols]
    public byte* Qx;            // [n, ActBytes]
    public int Cols, ActBytes;
    public DType Type;
    public ActBlock* Offsets;   // [n, Cols / 32] block offsets and scales for a repacked weight (RepackedMatrix.BlockOffsets), or null

    public override void Execute(int start, int end, int thread)
    {
        for (int t = start; t < end; t++)
        {
            QuantDot.QuantizeActivation(Type, new ReadOnlySpan<float>(X + (long)t * Cols, Cols), new Span<byte>(Qx + (long)t * ActBytes, ActBytes));
            if (Offsets != null) RepackedMatrix.BlockOffsets(Type, Qx + (long)t * ActBytes, Cols / 32, Offsets + (long)t * (Cols / 32));
        }
    }
}

/// <summary>MatMul with a repacked Q4_0/Q8_0 weight (one pool item = one 8-row group; item Groups = the tail rows).</summary>
internal sealed unsafe class RepackedMatMulJob : CpuJob
{
    public RepackedMatrix M = null!;
    public byte* Qx;            // [N, ActBytes]
    public ActBlock* Offsets;   // [N, Cols / 32]
    public float* Y;            // [N, Rows]
    public int N, ActBytes;

    /// <summary>Tokens per pass over a chunk's groups: ~256 KiB of activations, a multiple of 4.</summary>
    public int TokenTile => Math.Max(4, (int)(256 * 1024 / Math.Max(1, ActBytes)) & ~3);

    public override void Execute(int start, int end, int thread) =>
        M.MatMul(start, end, Qx, ActBytes, Offsets, N, Y, M.Rows, TokenTile);
}

internal sealed unsafe class MatMulJob : CpuJob
{
    public float* X;            // [N, Cols]
    public float* Y;            // [N, Rows]
    public byte* W;             // [Rows, RowBytes]
    public long RowBytes;
    public int N, Cols, Rows;
    public DType Type;
    public byte* Qx;            // [N, ActBytes] quantized activations, when the weight type has a QuantDot
    public int ActBytes;
    public Scratch Scratch = null!;
    public SimdWidth Isa = SimdWidth.Widest;   // the backend's CpuKernelOptions.Width

    /// <summary>Rows per pool item chunk. One token: ~64 KiB of weights per chunk (streaming, fine-grained balance).
    /// Token batches: ~256 KiB of float rows, so the chunk stays in L2 while every token tile passes over it.
    /// Both keep ≥ 4 chunks per thread when the matrix allows.</summary>
    public static int ChunkRows(int rows, long rowBytes, int n, int threads)
    {
        int target = n == 1 ? 64 * 1024 : 256 * 1024;
        int byCache = (int)Math.Max(1, target / Math.Max(1, rowBytes));
        int byBalance = Math.Max(1, rows / Math.Max(1, 4 * threads));
        // A multiple of 4 rows: multi-row kernels (2-row float tiles here, 4-row quantized GEMVs in QuantDot) then group
        // rows at the same absolute boundaries for any thread count, so the results are bitwise identical.
        return (Math.Clamp(Math.Min(byCache, byBalance), 1, 256) + 3) & ~3;
    }

    /// <summary>Tokens per tile: ~256 KiB of activations (stays in L2 while the chunk's rows pass), a multiple of 4.</summary>
    private int TokenTile => Math.Max(4, (256 * 1024 / Math.Max(1, Cols * sizeof(float))) & ~3);

    public override void Execute(int start, int end, int thread)
    {
        if (N == 1)
        {
            switch (Type)
            {
                case DType.F32:
                    for (int r = start; r < end; r++) Y[r] = Simd.Dot(Isa, (float*)(W + r * RowBytes), X, Cols);
                    return;
                case DType.F16:
                    for (int r = start; r < end; r++) Y[r] = HalfConvert.DotF16(Isa, (ushort*)(W + r * RowBytes), X, Cols);
                    return;
                case DType.BF16:
                    for (int r = start; r < end; r++) Y[r] = HalfConvert.DotBf16(Isa, (ushort*)(W + r * RowBytes), X, Cols);
                    return;
            }
        }
        if (Qx != null)
        {
            if (N == 1) QuantDot.DotRows(Type, W, RowBytes, start, end, Qx, Cols, Y);
            else QuantDot.DotRowsBatch(Type, W, RowBytes, start, end, Qx, ActBytes, N, Cols, Y, Rows);   // token-tiled, 4 tokens per kernel
            return;
        }
        if (Type == DType.F32)
        {
            Block((float*)(W + start * RowBytes), Cols, start, end);
            return;
        }
        // Decode the chunk's rows once into scratch: [end - start, Cols] floats.
        float* buf = Scratch.Floats(thread, (long)(end - start) * Cols);
        for (int r = start; r < end; r++)
        {
            float* dst = buf + (long)(r - start) * Cols;
            byte* src = W + r * RowBytes;
            switch (Type)
            {
                case DType.F16: HalfConvert.F16ToFloat(Isa, (ushort*)src, dst, Cols); break;
                case DType.BF16: HalfConvert.Bf16ToFloat(Isa, (ushort*)src, dst, Cols); break;
                default: RowDecode.Row(Type, new ReadOnlySpan<byte>(src, checked((int)RowBytes)), new Span<float>(dst, Cols)); break;
            }
        }
        Block(buf, Cols, start, end);
    }

    /// <summary>Float rows w ([end − start, stride]) times every token. Token tiles (L2-sized) outside; inside a tile,
    /// pairs of rows × groups of 4 tokens (8 accumulators: each weight vector feeds 4 FMAs, each activation vector 2).</summary>
    private void Block(float* w, int stride, int start, int end)
    {
        int tile = TokenTile;
        for (int t0 = 0; t0 < N; t0 += tile)
        {
            int t1 = Math.Min(N, t0 + tile);
            int r = start;
            for (; r <= end - 2; r += 2)
            {
                float* w0 = w + (long)(r - start) * stride;
                int t = t0;
                for (; t <= t1 - 4; t += 4) Dot2x4(Isa, w0, w0 + stride, X + (long)t * Cols, Cols, Y + (long)t * Rows + r, Rows);
                for (; t < t1; t++)
                {
                    Y[(long)t * Rows + r] = Simd.Dot(Isa, w0, X + (long)t * Cols, Cols);
                    Y[(long)t * Rows + r + 1] = Simd.Dot(Isa, w0 + stride, X + (long)t * Cols, Cols);
                }
            }
            for (; r < end; r++)
            {
                float* w0 = w + (long)(r - start) * stride;
                int t = t0;
                for (; t <= t1 - 4; t += 4) Dot4(Isa, w0, X + (long)t * Cols, Cols, Y + (long)t * Rows + r, Rows);
                for (; t < t1; t++) Y[(long)t * Rows + r] = Simd.Dot(Isa, w0, X + (long)t * Cols, Cols);
            }
        }
    }

    /// <summary>Two weight rows × 4 consecutive token rows: y[k·yStride + j] = w_j · x_k (j = 0, 1).</summary>
    private static void Dot2x4(SimdWidth isa, float* w0, float* w1, float* x, int n, float* y, int yStride)
    {
        float* x1 = x + n, x2 = x1 + n, x3 = x2 + n;
        int i = 0;
        float s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
        if (isa.Use512 && n >= 16)
        {
            Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default;
            Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default;
            for (; i <= n - 16; i += 16)
            {
                var u = Vector512.Load(w0 + i);
                var v = Vector512.Load(w1 + i);
                var b0 = Vector512.Load(x + i);
                a00 = Vector512.FusedMultiplyAdd(u, b0, a00); a10 = Vector512.FusedMultiplyAdd(v, b0, a10);
                var b1 = Vector512.Load(x1 + i);
                a01 = Vector512.FusedMultiplyAdd(u, b1, a01); a11 = Vector512.FusedMultiplyAdd(v, b1, a11);
                var b2 = Vector512.Load(x2 + i);
                a02 = Vector512.FusedMultiplyAdd(u, b2, a02); a12 = Vector512.FusedMultiplyAdd(v, b2, a12);
                var b3 = Vector512.Load(x3 + i);
                a03 = Vector512.FusedMultiplyAdd(u, b3, a03); a13 = Vector512.FusedMultiplyAdd(v, b3, a13);
            }
            s00 = Vector512.Sum(a00); s01 = Vector512.Sum(a01); s02 = Vector512.Sum(a02); s03 = Vector512.Sum(a03);
            s10 = Vector512.Sum(a10); s11 = Vector512.Sum(a11); s12 = Vector512.Sum(a12); s13 = Vector512.Sum(a13);
        }
        if (isa.Use256 && n - i >= 8)
        {
            Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default;
            Vector256<float> a10 = default, a11 = default, a12 = default, a13 = default;
            for (; i <= n - 8; i += 8)
            {
                var u = Vector256.Load(w0 + i);
                var v = Vector256.Load(w1 + i);
                var b0 = Vector256.Load(x + i);
                a00 = Vector256.FusedMultiplyAdd(u, b0, a00); a10 = Vector256.FusedMultiplyAdd(v, b0, a10);
                var b1 = Vector256.Load(x1 + i);
                a01 = Vector256.FusedMultiplyAdd(u, b1, a01); a11 = Vector256.FusedMultiplyAdd(v, b1, a11);
                var b2 = Vector256.Load(x2 + i);
                a02 = Vector256.FusedMultiplyAdd(u, b2, a02); a12 = Vector256.FusedMultiplyAdd(v, b2, a12);
                var b3 = Vector256.Load(x3 + i);
                a03 = Vector256.FusedMultiplyAdd(u, b3, a03); a13 = Vector256.FusedMultiplyAdd(v, b3, a13);
            }
            s00 += Vector256.Sum(a00); s01 += Vector256.Sum(a01); s02 += Vector256.Sum(a02); s03 += Vector256.Sum(a03);
            s10 += Vector256.Sum(a10); s11 += Vector256.Sum(a11); s12 += Vector256.Sum(a12); s13 += Vector256.Sum(a13);
        }
        for (; i < n; i++)
        {
            float u = w0[i], v = w1[i];
            s00 = MathF.FusedMultiplyAdd(u, x[i], s00); s10 = MathF.FusedMultiplyAdd(v, x[i], s10);
            s01 = MathF.FusedMultiplyAdd(u, x1[i], s01); s11 = MathF.FusedMultiplyAdd(v, x1[i], s11);
            s02 = MathF.FusedMultiplyAdd(u, x2[i], s02); s12 = MathF.FusedMultiplyAdd(v, x2[i], s12);
            s03 = MathF.FusedMultiplyAdd(u, x3[i], s03); s13 = MathF.FusedMultiplyAdd(v, x3[i], s13);
        }
        y[0] = s00; y[yStride] = s01; y[2 * yStride] = s02; y[3 * yStride] = s03;
        y[1] = s10; y[yStride + 1] = s11; y[2 * yStride + 1] = s12; y[3 * yStride + 1] = s13;
    }

    /// <summary>y[k·yStride] = w · x_k for the 4 consecutive token rows x_k = x + k·n.</summary>
    private static void Dot4(SimdWidth isa, float* w, float* x, int n, float* y, int yStride)
    {
        float* x1 = x + n, x2 = x1 + n, x3 = x2 + n;
        int i = 0;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        if (isa.Use512 && n >= 16)
        {
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i <= n - 16; i += 16)
            {
                var wv = Vector512.Load(w + i);
                a0 = Vector512.FusedMultiplyAdd(wv, Vector512.Load(x + i), a0);
                a1 = Vector512.FusedMultiplyAdd(wv, Vector512.Load(x1 + i), a1);
                a2 = Vector512.FusedMultiplyAdd(wv, Vector512.Load(x2 + i), a2);
                a3 = Vector512.FusedMultiplyAdd(wv, Vector512.Load(x3 + i), a3);
            }
            s0 = Vector512.Sum(a0); s1 = Vector512.Sum(a1); s2 = Vector512.Sum(a2); s3 = Vector512.Sum(a3);
        }
        if (isa.Use256 && n - i >= 8)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i <= n - 8; i += 8)
            {
                var wv = Vector256.Load(w + i);
                a0 = Vector256.FusedMultiplyAdd(wv, Vector256.Load(x + i), a0);
                a1 = Vector256.FusedMultiplyAdd(wv, Vector256.Load(x1 + i), a1);
                a2 = Vector256.FusedMultiplyAdd(wv, Vector256.Load(x2 + i), a2);
                a3 = Vector256.FusedMultiplyAdd(wv, Vector256.Load(x3 + i), a3);
            }
            s0 += Vector256.Sum(a0); s1 += Vector256.Sum(a1); s2 += Vector256.Sum(a2); s3 += Vector256.Sum(a3);
        }
        for (; i < n; i++)
        {
            float wv = w[i];
            s0 = MathF.FusedMultiplyAdd(wv, x[i], s0);
            s1 = MathF.FusedMultiplyAdd(wv, x1[i], s1);
            s2 = MathF.FusedMultiplyAdd(wv, x2[i], s2);
            s3 = MathF.FusedMultiplyAdd(wv, x3[i], s3);
        }
        y[0] = s0; y[yStride] = s1; y[2 * yStride] = s2; y[3 * yStride] = s3;
    }
}
