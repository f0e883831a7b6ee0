// Owns: the CPU GEMV/GEMM job: y[t, r] = Σ_c x[t, c] · W[r, c] for every supported weight type.
// Invariants: work is split over weight rows in chunks (one pool item = one weight row); within a chunk, tokens are
// processed in groups of 4 against each row (register blocking: each weight vector is loaded once per 4 tokens) and the
// chunk's rows stay in L2 across all token groups, so a weight row is read from memory once per call.
// F32 rows are dotted in place; F16/BF16 rows are converted on the fly for one token (fused convert+FMA, the decode
// path) or decoded once per chunk into per-thread scratch for token batches; block-quantized rows are decoded with the
// scalar dequantizer into scratch (correct, not fast — see QuantDot for the fast path when available).
// Accumulation is float32 with FMA (differences to the float64 reference are ≈1e-7 relative).
namespace Engine.Kernels;

using System.Runtime.Intrinsics;
using Engine.Tensors;

internal sealed unsafe class MatMulJob : CpuJob
{
    public float* X;            // [N, Cols]
    public float* Y;            // [N, Rows]
    public byte* W;             // [Rows, RowBytes]
    public long RowBytes;
    public int N, Cols, Rows;
    public DType Type;
    public Scratch Scratch = null!;

    /// <summary>Rows per pool item chunk: about 64 KiB of float rows, at least 1, with ≥ 4 chunks per thread when possible.</summary>
    public static int ChunkRows(int rows, int cols, int threads)
    {
        int byCache = Math.Max(1, (64 * 1024) / Math.Max(1, cols * sizeof(float)));
        int byBalance = Math.Max(1, rows / Math.Max(1, 4 * threads));
        return Math.Clamp(Math.Min(byCache, byBalance), 1, 64);
    }

    public override void Execute(int start, int end, int thread)
    {
        if (N == 1)
        {
            switch (Type)
            {
                case DType.F32:
                    for (int r = start; r < end; r++) Y[r] = Simd.Dot((float*)(W + r * RowBytes), X, Cols);
                    return;
                case DType.F16:
                    for (int r = start; r < end; r++) Y[r] = HalfConvert.DotF16((ushort*)(W + r * RowBytes), X, Cols);
                    return;
                case DType.BF16:
                    for (int r = start; r < end; r++) Y[r] = HalfConvert.DotBf16((ushort*)(W + r * RowBytes), X, Cols);
                    return;
            }
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
                case DType.F16: HalfConvert.F16ToFloat((ushort*)src, dst, Cols); break;
                case DType.BF16: HalfConvert.Bf16ToFloat((ushort*)src, dst, Cols); break;
                default: RowDecode.Row(Type, new ReadOnlySpan<byte>(src, checked((int)RowBytes)), new Span<float>(dst, Cols)); break;
            }
        }
        Block(buf, Cols, start, end);
    }

    /// <summary>Float rows w ([end − start, stride]) times every token; token groups of 4 outside, rows inside.</summary>
    private void Block(float* w, int stride, int start, int end)
    {
        int t = 0;
        for (; t <= N - 4; t += 4)
        {
            float* x0 = X + (long)t * Cols;
            for (int r = start; r < end; r++)
                Dot4(w + (long)(r - start) * stride, x0, Cols, Y + (long)t * Rows + r, Rows);
        }
        for (; t < N; t++)
        {
            float* xt = X + (long)t * Cols;
            for (int r = start; r < end; r++)
                Y[(long)t * Rows + r] = Simd.Dot(w + (long)(r - start) * stride, xt, Cols);
        }
    }

    /// <summary>y[k·yStride] = w · x_k for the 4 consecutive token rows x_k = x + k·n.</summary>
    private static void Dot4(float* w, float* x, int n, float* y, int yStride)
    {
        float* x1 = x + n, x2 = x1 + n, x3 = x2 + n;
        int i = 0;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        if (Simd.Use512 && n >= 16)
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
        if (Simd.Use256 && n - i >= 8)
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
