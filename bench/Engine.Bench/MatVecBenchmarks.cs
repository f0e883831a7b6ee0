// Owns: matrix × vector (decode GEMV) per weight type on the CPU backend: a 32768 × 4096 matrix (128 M weights:
// 42 MB as Q2_K … 512 MB as F32, all larger than the 32 MiB L3) times one activation row, reported with the GB/s of
// weights streamed (BandwidthColumn) to compare with MemoryBenchmarks' copy bandwidth in the same run.
// Invariant: weights are valid blocks of the type (256 distinct rows quantized by Engine.Tensors' reference quantizer,
// repeated to fill the matrix — the kernel's speed does not depend on the values).
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using Engine.Kernels;
using Engine.Tensors;
using Engine.Tensors.Quants;

namespace Engine.Bench;

public unsafe class MatVecBenchmarks : IStreamsBytes
{
    public const int Cols = 4096, Rows = 32768;

    [Params(DType.F32, DType.F16, DType.BF16, DType.Q8_0, DType.Q4_0, DType.Q4_1, DType.Q5_0, DType.Q5_1,
        DType.Q2_K, DType.Q3_K, DType.Q4_K, DType.Q5_K, DType.Q6_K)]
    public DType Type { get; set; }

    private CpuBackend _backend = null!;
    private byte* _w;
    private TensorView _view;
    private float[] _x = [], _y = [];

    public static long BytesPerCall(IReadOnlyDictionary<string, object> p) => ((DType)p[nameof(Type)]).ByteCount((long)Cols * Rows);

    [GlobalSetup]
    public void Setup()
    {
        _backend = new CpuBackend(BenchSettings.Threads);
        long rowBytes = Type.ByteCount(Cols), total = rowBytes * Rows;
        _w = (byte*)NativeMemory.AlignedAlloc((nuint)total, 64);
        var rng = new Random(1);
        var row = new float[Cols];
        const int distinct = 256;
        for (int r = 0; r < distinct; r++)
        {
            for (int c = 0; c < Cols; c++) row[c] = (float)(rng.NextDouble() * 2 - 1) * 0.05f;
            Quantize.Row(Type, row, new Span<byte>(_w + r * rowBytes, (int)rowBytes));
        }
        for (int r = distinct; r < Rows; r++) Buffer.MemoryCopy(_w + (r % distinct) * rowBytes, _w + r * rowBytes, rowBytes, rowBytes);
        _view = new TensorView("w", Type, [Cols, Rows], (nint)_w, total);
        _x = Enumerable.Range(0, Cols).Select(i => MathF.Sin(i)).ToArray();
        _y = new float[Rows];
    }

    [Benchmark]
    public void MatVec() => _backend.MatMul(_x, 1, _view, _y);

    [GlobalCleanup]
    public void Cleanup()
    {
        _backend.Dispose();
        NativeMemory.AlignedFree(_w);
    }
}
