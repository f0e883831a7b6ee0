// Owns: the one width-generic SIMD loop skeleton of the CPU backend and the element-wise operator structs.
// Invariants: every op is written once as an operator struct with Vector512/Vector256/Vector128/scalar members;
// the skeleton walks the widest supported width, then narrower ones, then a scalar tail — every length 1..N is
// exact to the same formula. Vector512 is used when the AVX-512F ISA is present (checked with Avx512F.IsSupported,
// not Vector512.IsHardwareAccelerated, which some runtimes report false on AVX-512 hardware); Vector512<T> ops
// compile to AVX-512 instructions whenever the ISA is there. The widths a loop may use come in as a SimdWidth argument
// (CpuKernelOptions.MaxVectorBits caps them per backend: tests and benchmarks of the fallbacks), not from a static.
// Source: the operator-struct pattern of dotnet/runtime TensorPrimitives, written fresh.
namespace Engine.Kernels;

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

/// <summary>Element-wise op on one input.</summary>
public interface IUnaryOp
{
    float Invoke(float x);
    Vector128<float> Invoke(Vector128<float> x);
    Vector256<float> Invoke(Vector256<float> x);
    Vector512<float> Invoke(Vector512<float> x);
}

/// <summary>Element-wise op on two inputs (also the combine step of a reduction).</summary>
public interface IBinaryOp
{
    float Invoke(float a, float b);
    Vector128<float> Invoke(Vector128<float> a, Vector128<float> b);
    Vector256<float> Invoke(Vector256<float> a, Vector256<float> b);
    Vector512<float> Invoke(Vector512<float> a, Vector512<float> b);
}

public static unsafe class Simd
{

    /// <summary>dst[i] = op(x[i]). dst may equal x.</summary>
    public static void Map<TOp>(SimdWidth w, TOp op, float* x, float* dst, int n) where TOp : struct, IUnaryOp
    {
        int i = 0;
        if (w.Use512)
            for (; i <= n - 16; i += 16) op.Invoke(Vector512.Load(x + i)).Store(dst + i);
        if (w.Use256)
            for (; i <= n - 8; i += 8) op.Invoke(Vector256.Load(x + i)).Store(dst + i);
        if (w.Use128)
            for (; i <= n - 4; i += 4) op.Invoke(Vector128.Load(x + i)).Store(dst + i);
        for (; i < n; i++) dst[i] = op.Invoke(x[i]);
    }

    /// <summary>dst[i] = op(a[i], b[i]). dst may equal a or b.</summary>
    public static void Map<TOp>(SimdWidth w, TOp op, float* a, float* b, float* dst, int n) where TOp : struct, IBinaryOp
    {
        int i = 0;
        if (w.Use512)
            for (; i <= n - 16; i += 16) op.Invoke(Vector512.Load(a + i), Vector512.Load(b + i)).Store(dst + i);
        if (w.Use256)
            for (; i <= n - 8; i += 8) op.Invoke(Vector256.Load(a + i), Vector256.Load(b + i)).Store(dst + i);
        if (w.Use128)
            for (; i <= n - 4; i += 4) op.Invoke(Vector128.Load(a + i), Vector128.Load(b + i)).Store(dst + i);
        for (; i < n; i++) dst[i] = op.Invoke(a[i], b[i]);
    }

    /// <summary>combine over map(x[i]), starting from <paramref name="identity"/> (e.g. Σx², max x).</summary>
    public static float Reduce<TMap, TCombine>(SimdWidth w, TMap map, TCombine combine, float* x, int n, float identity)
        where TMap : struct, IUnaryOp where TCombine : struct, IBinaryOp
    {
        int i = 0;
        float result = identity;
        if (w.Use512 && n >= 16)
        {
            var acc0 = Vector512.Create(identity);
            var acc1 = acc0;
            for (; i <= n - 32; i += 32)
            {
                acc0 = combine.Invoke(acc0, map.Invoke(Vector512.Load(x + i)));
                acc1 = combine.Invoke(acc1, map.Invoke(Vector512.Load(x + i + 16)));
            }
            for (; i <= n - 16; i += 16) acc0 = combine.Invoke(acc0, map.Invoke(Vector512.Load(x + i)));
            var a = combine.Invoke(acc0, acc1);
            var h = combine.Invoke(a.GetLower(), a.GetUpper());
            result = combine.Invoke(result, Horizontal(combine, combine.Invoke(h.GetLower(), h.GetUpper())));
        }
        if (w.Use256 && n - i >= 8)
        {
            var acc = Vector256.Create(identity);
            for (; i <= n - 8; i += 8) acc = combine.Invoke(acc, map.Invoke(Vector256.Load(x + i)));
            result = combine.Invoke(result, Horizontal(combine, combine.Invoke(acc.GetLower(), acc.GetUpper())));
        }
        if (w.Use128 && n - i >= 4)
        {
            var acc = Vector128.Create(identity);
            for (; i <= n - 4; i += 4) acc = combine.Invoke(acc, map.Invoke(Vector128.Load(x + i)));
            result = combine.Invoke(result, Horizontal(combine, acc));
        }
        for (; i < n; i++) result = combine.Invoke(result, map.Invoke(x[i]));
        return result;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Horizontal<TCombine>(TCombine c, Vector128<float> v) where TCombine : struct, IBinaryOp
        => c.Invoke(c.Invoke(v.GetElement(0), v.GetElement(1)), c.Invoke(v.GetElement(2), v.GetElement(3)));

    /// <summary>Σ a[i]·b[i] with fused multiply-add and several accumulators (float32).</summary>
    public static float Dot(SimdWidth w, float* a, float* b, int n)
    {
        int i = 0;
        float sum = 0;
        if (w.Use512 && n >= 16)
        {
            Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default;
            for (; i <= n - 64; i += 64)
            {
                s0 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i), Vector512.Load(b + i), s0);
                s1 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i + 16), Vector512.Load(b + i + 16), s1);
                s2 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i + 32), Vector512.Load(b + i + 32), s2);
                s3 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i + 48), Vector512.Load(b + i + 48), s3);
            }
            for (; i <= n - 16; i += 16) s0 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i), Vector512.Load(b + i), s0);
            sum = Vector512.Sum((s0 + s1) + (s2 + s3));
        }
        if (w.Use256 && n - i >= 8)
        {
            Vector256<float> s0 = default, s1 = default;
            for (; i <= n - 16; i += 16)
            {
                s0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), s0);
                s1 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i + 8), Vector256.Load(b + i + 8), s1);
            }
            for (; i <= n - 8; i += 8) s0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), s0);
            sum += Vector256.Sum(s0 + s1);
        }
        if (w.Use128 && n - i >= 4)
        {
            Vector128<float> s0 = default;
            for (; i <= n - 4; i += 4) s0 = Vector128.FusedMultiplyAdd(Vector128.Load(a + i), Vector128.Load(b + i), s0);
            sum += Vector128.Sum(s0);
        }
        for (; i < n; i++) sum = MathF.FusedMultiplyAdd(a[i], b[i], sum);
        return sum;
    }

    /// <summary>y[i] += alpha · x[i].</summary>
    public static void Axpy(SimdWidth w, float alpha, float* x, float* y, int n) => Map(w, new MulAddScalar(alpha), x, y, y, n);
}

// ---- operator structs ----

public readonly struct AddOp : IBinaryOp
{
    public float Invoke(float a, float b) => a + b;
    public Vector128<float> Invoke(Vector128<float> a, Vector128<float> b) => a + b;
    public Vector256<float> Invoke(Vector256<float> a, Vector256<float> b) => a + b;
    public Vector512<float> Invoke(Vector512<float> a, Vector512<float> b) => a + b;
}

public readonly struct MaxOp : IBinaryOp
{
    public float Invoke(float a, float b) => MathF.Max(a, b);
    public Vector128<float> Invoke(Vector128<float> a, Vector128<float> b) => Vector128.Max(a, b);
    public Vector256<float> Invoke(Vector256<float> a, Vector256<float> b) => Vector256.Max(a, b);
    public Vector512<float> Invoke(Vector512<float> a, Vector512<float> b) => Vector512.Max(a, b);
}

public readonly struct IdentityOp : IUnaryOp
{
    public float Invoke(float x) => x;
    public Vector128<float> Invoke(Vector128<float> x) => x;
    public Vector256<float> Invoke(Vector256<float> x) => x;
    public Vector512<float> Invoke(Vector512<float> x) => x;
}

public readonly struct SquareOp : IUnaryOp
{
    public float Invoke(float x) => x * x;
    public Vector128<float> Invoke(Vector128<float> x) => x * x;
    public Vector256<float> Invoke(Vector256<float> x) => x * x;
    public Vector512<float> Invoke(Vector512<float> x) => x * x;
}

/// <summary>x · s.</summary>
public readonly struct ScaleOp(float s) : IUnaryOp
{
    public float Invoke(float x) => x * s;
    public Vector128<float> Invoke(Vector128<float> x) => x * s;
    public Vector256<float> Invoke(Vector256<float> x) => x * s;
    public Vector512<float> Invoke(Vector512<float> x) => x * s;
}

/// <summary>exp(x − m).</summary>
public readonly struct ExpSubOp(float m) : IUnaryOp
{
    public float Invoke(float x) => MathF.Exp(x - m);
    public Vector128<float> Invoke(Vector128<float> x) => Vector128.Exp(x - Vector128.Create(m));
    public Vector256<float> Invoke(Vector256<float> x) => Vector256.Exp(x - Vector256.Create(m));
    public Vector512<float> Invoke(Vector512<float> x) => Vector512.Exp(x - Vector512.Create(m));
}

/// <summary>a · b · s (RMSNorm's x · w · 1/rms).</summary>
public readonly struct MulScaleOp(float s) : IBinaryOp
{
    public float Invoke(float a, float b) => a * s * b;
    public Vector128<float> Invoke(Vector128<float> a, Vector128<float> b) => a * s * b;
    public Vector256<float> Invoke(Vector256<float> a, Vector256<float> b) => a * s * b;
    public Vector512<float> Invoke(Vector512<float> a, Vector512<float> b) => a * s * b;
}

/// <summary>alpha · a + b (axpy).</summary>
public readonly struct MulAddScalar(float alpha) : IBinaryOp
{
    public float Invoke(float a, float b) => MathF.FusedMultiplyAdd(alpha, a, b);
    public Vector128<float> Invoke(Vector128<float> a, Vector128<float> b) => Vector128.FusedMultiplyAdd(Vector128.Create(alpha), a, b);
    public Vector256<float> Invoke(Vector256<float> a, Vector256<float> b) => Vector256.FusedMultiplyAdd(Vector256.Create(alpha), a, b);
    public Vector512<float> Invoke(Vector512<float> a, Vector512<float> b) => Vector512.FusedMultiplyAdd(Vector512.Create(alpha), a, b);
}

/// <summary>silu(g) · u = g · u / (1 + exp(−g)).</summary>
public readonly struct SiluMulOp : IBinaryOp
{
    public float Invoke(float g, float u) => g * u / (1f + MathF.Exp(-g));
    public Vector128<float> Invoke(Vector128<float> g, Vector128<float> u) => g * u / (Vector128<float>.One + Vector128.Exp(-g));
    public Vector256<float> Invoke(Vector256<float> g, Vector256<float> u) => g * u / (Vector256<float>.One + Vector256.Exp(-g));
    public Vector512<float> Invoke(Vector512<float> g, Vector512<float> u) => g * u / (Vector512<float>.One + Vector512.Exp(-g));
}
