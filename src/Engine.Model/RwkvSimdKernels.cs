// Owns: Vector256 versions of the two RWKV recurrences (the hot loops of decode), used when the model runs on a
// non-reference backend; RwkvKernels holds the scalar definitions they are tested against.
// Invariants: same state layouts and update order as RwkvKernels.Wkv6 / Wkv7; head sizes that are not a multiple of
// 8 fall back to the scalar kernels. Wkv6 vectorises over the value channel i (each lane does exactly the scalar
// arithmetic, no FMA, so results are bit-identical); Wkv7 vectorises the key-channel reductions (sa_i, y_i), which
// reorders those sums (differences of a few ulps).
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Engine.Model;

internal static class RwkvSimdKernels
{
    public static bool Supports(int headSize) => Vector256.IsHardwareAccelerated && headSize % 8 == 0;

    /// <summary>See <see cref="RwkvKernels.Wkv6"/>.</summary>
    public static void Wkv6(ReadOnlySpan<float> r, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<float> u,
        ReadOnlySpan<float> w, bool decayPerToken, int headCount, int headSize, Span<float> state, Span<float> y)
    {
        if (!Supports(headSize)) { RwkvKernels.Wkv6(r, k, v, u, w, decayPerToken, headCount, headSize, state, y); return; }
        int c = headCount * headSize, n = r.Length / c, hs = headSize;
        ref float S = ref MemoryMarshal.GetReference(state);
        ref float Y = ref MemoryMarshal.GetReference(y);
        ref float V = ref MemoryMarshal.GetReference(v);
        for (int t = 0; t < n; t++)
        {
            int row = t * c, wrow = decayPerToken ? row : 0;
            for (int h = 0; h < headCount; h++)
            {
                int b = h * hs;
                int sBase = h * hs * hs;
                for (int i = 0; i < hs; i += 8) Vector256<float>.Zero.StoreUnsafe(ref Y, (nuint)(row + b + i));
                for (int j = 0; j < hs; j++)
                {
                    var kj = Vector256.Create(k[row + b + j]);
                    var rj = Vector256.Create(r[row + b + j]);
                    var uj = Vector256.Create(u[b + j]);
                    var wj = Vector256.Create(w[wrow + b + j]);
                    int sRow = sBase + j * hs;
                    for (int i = 0; i < hs; i += 8)
                    {
                        var vi = Vector256.LoadUnsafe(ref V, (nuint)(row + b + i));
                        var s = Vector256.LoadUnsafe(ref S, (nuint)(sRow + i));
                        var kv = kj * vi;
                        var yy = Vector256.LoadUnsafe(ref Y, (nuint)(row + b + i));
                        (yy + rj * (uj * kv + s)).StoreUnsafe(ref Y, (nuint)(row + b + i));
                        (s * wj + kv).StoreUnsafe(ref S, (nuint)(sRow + i));
                    }
                }
            }
        }
    }

    /// <summary>See <see cref="RwkvKernels.Wkv7"/>.</summary>
    public static void Wkv7(ReadOnlySpan<float> r, ReadOnlySpan<float> w, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        ReadOnlySpan<float> a, ReadOnlySpan<float> bb, int headCount, int headSize, Span<float> state, Span<float> y)
    {
        if (!Supports(headSize)) { RwkvKernels.Wkv7(r, w, k, v, a, bb, headCount, headSize, state, y); return; }
        int c = headCount * headSize, n = r.Length / c, hs = headSize;
        ref float S = ref MemoryMarshal.GetReference(state);
        ref float R = ref MemoryMarshal.GetReference(r);
        ref float W = ref MemoryMarshal.GetReference(w);
        ref float K = ref MemoryMarshal.GetReference(k);
        ref float A = ref MemoryMarshal.GetReference(a);
        ref float B = ref MemoryMarshal.GetReference(bb);
        for (int t = 0; t < n; t++)
        {
            int row = t * c;
            for (int h = 0; h < headCount; h++)
            {
                int o = row + h * hs;
                int sBase = h * hs * hs;
                for (int i = 0; i < hs; i++)
                {
                    int si = sBase + i * hs;
                    var acc = Vector256<float>.Zero;
                    for (int j = 0; j < hs; j += 8)
                        acc += Vector256.LoadUnsafe(ref S, (nuint)(si + j)) * Vector256.LoadUnsafe(ref A, (nuint)(o + j));
                    var sa = Vector256.Create(Vector256.Sum(acc));
                    var vi = Vector256.Create(v[o + i]);
                    var yacc = Vector256<float>.Zero;
                    for (int j = 0; j < hs; j += 8)
                    {
                        var s = Vector256.LoadUnsafe(ref S, (nuint)(si + j));
                        var nv = s * Vector256.LoadUnsafe(ref W, (nuint)(o + j)) + sa * Vector256.LoadUnsafe(ref B, (nuint)(o + j))
                            + vi * Vector256.LoadUnsafe(ref K, (nuint)(o + j));
                        nv.StoreUnsafe(ref S, (nuint)(si + j));
                        yacc += nv * Vector256.LoadUnsafe(ref R, (nuint)(o + j));
                    }
                    y[o + i] = Vector256.Sum(yacc);
                }
            }
        }
    }
}
