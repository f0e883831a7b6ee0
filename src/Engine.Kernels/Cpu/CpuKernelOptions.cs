// Owns: the CPU backend's kernel variants as explicit, immutable parameters (what used to be public mutable statics:
// Simd.MaxVectorBits, AttentionRange512.Enabled/PagePrefetch, AttentionRangeF32Walk.Enabled/Prefetch/Chunk,
// AttentionRangeQuant.Enabled). A CpuBackend takes one at construction and threads it to its jobs, so two backends
// with different variants coexist in one process (tests and A/B benchmarks compare two instances).
// Invariants: Default is the production configuration; every variant computes the same contract (results equal the
// reference within float32 rounding; the F32 walk and page prefetch are bitwise equal to the paths they replace).
namespace Engine.Kernels;

using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

/// <summary>Kernel variants of <see cref="CpuBackend"/> (for tests and A/B benchmarks; production uses
/// <see cref="Default"/>).</summary>
public sealed record CpuKernelOptions
{
    /// <summary>The production configuration: widest SIMD the machine has, every fast path on.</summary>
    public static CpuKernelOptions Default { get; } = new();

    private readonly int _maxVectorBits = 512;

    /// <summary>Widest vector the SIMD skeleton may use: 512, 256, 128 or 0 (scalar). Capped by the hardware.</summary>
    public int MaxVectorBits
    {
        get => _maxVectorBits;
        init => _maxVectorBits = value is 512 or 256 or 128 or 0 ? value
            : throw new ArgumentOutOfRangeException(nameof(MaxVectorBits), value, "MaxVectorBits must be 512, 256, 128 or 0");
    }

    /// <summary>The AVX-512 float32 attention item (AttentionRange512); off = the generic per-(token, head) path.</summary>
    public bool Attention512 { get; init; } = true;

    /// <summary>Software prefetch of the next page's rows in AttentionRange512's paged walk (changes no result).</summary>
    public bool AttentionPagePrefetch { get; init; } = true;

    /// <summary>The per-KV-head chunked walk for grouped heads on F32 pages (AttentionRangeF32Walk; bitwise equal to
    /// AttentionRange512).</summary>
    public bool AttentionF32Walk { get; init; } = true;

    /// <summary>Software prefetch of the next chunk's rows in the F32 walk (changes no result).</summary>
    public bool AttentionF32WalkPrefetch { get; init; } = true;

    private readonly int _f32WalkChunk;

    /// <summary>Tokens per chunk of the F32 walk (0 = automatic; otherwise rounded down to a multiple of 4, at least 4).</summary>
    public int AttentionF32WalkChunk
    {
        get => _f32WalkChunk;
        init => _f32WalkChunk = value >= 0 ? value
            : throw new ArgumentOutOfRangeException(nameof(AttentionF32WalkChunk), value, "AttentionF32WalkChunk must be ≥ 0 (0 = automatic)");
    }

    /// <summary>The vectorized attention item for Int8/Int4/F16 page lists (AttentionRangeQuant); off = the generic
    /// decode-row-then-dot path.</summary>
    public bool AttentionQuant { get; init; } = true;

    /// <summary>Whether <see cref="CpuBackend.PrepareWeights"/> repacks Q4_0/Q8_0 matrices into interleaved 8-row blocks
    /// (faster GEMV/GEMM where the AVX2/AVX-VNNI kernels exist); false keeps every matrix on the row-by-row kernels.</summary>
    public bool RepackWeights { get; init; } = true;

    /// <summary>The SIMD widths these options allow on this machine.</summary>
    public SimdWidth Width => SimdWidth.Cap(MaxVectorBits);
}

/// <summary>Which vector widths a SIMD loop may use (the hardware's, capped by <see cref="CpuKernelOptions.MaxVectorBits"/>).
/// Passed explicitly to every loop of <see cref="Simd"/>, <see cref="HalfConvert"/> and the attention items.</summary>
public readonly struct SimdWidth
{
    private readonly byte _bits;   // 0 → never constructed (treated as scalar); else 1 + (cap / 128)

    private SimdWidth(int cap) => _bits = (byte)(1 + cap / 128);

    /// <summary>Every width the hardware supports.</summary>
    public static SimdWidth Widest { get; } = new(512);

    /// <summary>Widths up to <paramref name="maxVectorBits"/> (512, 256, 128 or 0 = scalar only).</summary>
    public static SimdWidth Cap(int maxVectorBits) => maxVectorBits switch
    {
        512 or 256 or 128 or 0 => new SimdWidth(maxVectorBits),
        _ => throw new ArgumentOutOfRangeException(nameof(maxVectorBits), maxVectorBits, "must be 512, 256, 128 or 0"),
    };

    /// <summary>The cap in bits (512, 256, 128 or 0).</summary>
    public int MaxVectorBits => _bits == 0 ? 0 : (_bits - 1) * 128;

    /// <summary>Vector512 loops run (AVX-512F present and allowed).</summary>
    public bool Use512 => _bits >= 5 && Avx512F.IsSupported;
    /// <summary>Vector256 loops run.</summary>
    public bool Use256 => _bits >= 3 && Vector256.IsHardwareAccelerated;
    /// <summary>Vector128 loops run.</summary>
    public bool Use128 => _bits >= 2 && Vector128.IsHardwareAccelerated;

    public override string ToString() => $"simd≤{MaxVectorBits}";
}
