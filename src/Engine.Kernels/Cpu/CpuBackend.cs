// Owns: the SIMD, multi-threaded CPU implementation of IBackend (the production backend).
// Invariants: ops validate with OpChecks, then run on a persistent CpuThreadPool (N threads incl. the caller) with
// pre-allocated jobs and per-thread scratch — steady-state calls allocate nothing. Not thread-safe: one op at a time.
// Results match ReferenceBackend to NMSE ≤ 1e-7 on float paths (float32 accumulation vs the reference's float64);
// quantized weights compute against Q8-quantized activations as llama.cpp's CPU backend does (bounds in the tests);
// multi-threaded results are bitwise equal to single-threaded ones (each output element is computed by one thread
// with the same instruction sequence, whatever the split) — except attention for few query rows over a long cache,
// whose cache split depends on the thread count (flash-decoding merge; equal within float rounding, ~1e-7).
namespace Engine.Kernels;

using System.Runtime.InteropServices;
using Engine.Kernels.Quant;
using Engine.Tensors;

public sealed unsafe class CpuBackend : IBackend
{
    /// <summary>Element-wise ops below this many elements run on the caller only.</summary>
    private const int ParallelElements = 1 << 15;
    /// <summary>Multiply-adds below which a matmul runs on the caller alone: waking and joining workers costs more than
    /// ~256K multiply-adds (≈ 20–40 µs on one core), and far more on a shared machine where a descheduled worker holds
    /// the barrier. Small models batched over many rows (16 sequences of stories260K) lived in that regime.</summary>
    private const long InlineMultiplyAdds = 1 << 18;
    /// <summary>Activation floats per chunk when quantizing matmul inputs (rows below this run on the caller).</summary>
    private const int QuantizeChunkFloats = 1 << 16;

    private readonly CpuThreadPool _pool;
    private readonly Scratch _scratch;
    private readonly Scratch _massScratch;                       // per-thread attention-mass accumulators [kvHeads, tokens]
    private readonly MatMulJob _matMul = new();
    private readonly QuantizeJob _quantize = new();
    private byte* _qx;                   // [n, activation bytes] quantized activations for quantized weights
    private long _qxBytes;
    private byte* _partials;             // attention block partials [n, blocks, heads, headDim + 2]
    private long _partialBytes;
    private int[] _pageStart = new int[16];
    private readonly RmsNormJob _rmsNorm = new();
    private readonly RopeJob _rope = new();
    private readonly AttentionJob _attention = new();
    private readonly BinaryJob<AddOp> _add = new();
    private readonly BinaryJob<SiluMulOp> _siluMul = new();
    private RopeParams? _ropeKey;
    private double[] _invFreq = [];
    private readonly bool _repack;
    private readonly Dictionary<nint, (RepackedMatrix M, RepackArena Arena)> _repacked = new();
    private readonly RepackedMatMulJob _repackedMatMul = new();
    private ActBlock* _offsets;          // [n, cols / 32] activation block offsets and scales for repacked weights
    private long _offsetCount;
    private byte[] _rowBuffer = [];      // one row of a repacked table (GetRows)

    private readonly SimdWidth _isa;

    /// <param name="threadCount">Threads including the caller; ≤ 0 = Environment.ProcessorCount.</param>
    /// <param name="spinMicroseconds">How long idle workers spin for the next op before blocking.</param>
    /// <param name="options">Kernel variants (null = <see cref="CpuKernelOptions.Default"/>, the production paths;
    /// <see cref="CpuKernelOptions.RepackWeights"/> decides whether PrepareWeights repacks Q4_0/Q8_0 matrices).</param>
    public CpuBackend(int threadCount = 0, int spinMicroseconds = 50, CpuKernelOptions? options = null)
    {
        Options = options ?? CpuKernelOptions.Default;
        _isa = Options.Width;
        _repack = Options.RepackWeights;
        _pool = new CpuThreadPool(threadCount, spinMicroseconds);
        _scratch = new Scratch(_pool.ThreadCount);
        _massScratch = new Scratch(_pool.ThreadCount);
        _matMul.Scratch = _rope.Scratch = _attention.Scratch = _scratch;
        _attention.MassScratch = _massScratch;
        _matMul.Isa = _rmsNorm.Isa = _attention.Isa = _add.Isa = _siluMul.Isa = _isa;
        _attention.Options = Options;
    }

    /// <summary>The kernel variants this backend runs (fixed at construction).</summary>
    public CpuKernelOptions Options { get; }

    public int ThreadCount => _pool.ThreadCount;
    public string Name => $"cpu({ThreadCount}t)";

    /// <summary>Repacks the Q4_0/Q8_0 matrices (when this machine has the kernels and the backend was built with
    /// repackWeights) into one huge-page arena, largest first, and releases each one's mapped file pages right after its
    /// copy, so the process holds about one copy of the weights. A matrix prepared again is repacked again (the bytes at
    /// an address may belong to another file by now).</summary>
    public void PrepareWeights(IReadOnlyList<TensorView> matrices)
    {
        if (!_repack) return;
        var path = QuantDot.BestPath;
        var todo = matrices.Where(w => w.Data != 0 && RepackedMatrix.CanRepack(w, path))
            .DistinctBy(w => w.Data).OrderByDescending(w => w.ByteLength).ToList();
        if (todo.Count == 0) return;
        ReleaseWeights(todo);
        long total = 0;
        foreach (var w in todo) total += (RepackedMatrix.PackedBytes(w) + 63) & ~63L;
        var arena = new RepackArena((byte*)HugePageMemory.Allocate((nuint)total));
        long offset = 0;
        foreach (var w in todo)
        {
            var m = RepackedMatrix.TryCreate(w, path, arena.Base + offset);
            offset += (RepackedMatrix.PackedBytes(w) + 63) & ~63L;
            if (m == null) continue;
            _repacked.Add(w.Data, (m, arena));
            arena.Live++;
            MappedFile.ReleaseResidentPages(w.Data, w.ByteLength);
        }
        if (arena.Live == 0) arena.Free();
    }

    public void ReleaseWeights(IReadOnlyList<TensorView> matrices)
    {
        foreach (var w in matrices)
            if (_repacked.Remove(w.Data, out var e))
            {
                e.M.Dispose();
                if (--e.Arena.Live == 0) e.Arena.Free();
            }
    }

    /// <summary>One native block holding several repacked matrices; freed when the last of them is released.</summary>
    private sealed class RepackArena(byte* bytes)
    {
        public byte* Base { get; private set; } = bytes;
        public int Live;
        public void Free() { HugePageMemory.Free(Base); Base = null; }
    }

    /// <summary>The repacked copy of <paramref name="w"/>, if it has one (same address, type and shape).</summary>
    internal RepackedMatrix? Repacked(TensorView w) =>
        _repacked.Count != 0 && _repacked.TryGetValue(w.Data, out var e) && e.M.Type == w.Type && e.M.Cols == w.RowLength
            && e.M.Rows == w.RowCount && e.M.SourceBytes == w.ByteLength ? e.M : null;

    public void MatMul(ReadOnlySpan<float> x, int n, TensorView w, Span<float> y)
    {
        OpChecks.MatMul(x.Length, n, w, y.Length);
        if (n == 0) return;
        if (Repacked(w) is { } rp) { RepackedMatMul(x, n, rp, y); return; }
        fixed (float* px = x, py = y)
        {
            var j = _matMul;
            j.X = px; j.Y = py; j.W = (byte*)w.Data; j.RowBytes = w.RowBytes;
            j.N = n; j.Cols = w.RowLength; j.Rows = w.RowCount; j.Type = w.Type;
            j.Qx = null; j.ActBytes = 0;
            long chunkRowBytes = (long)j.Cols * sizeof(float);
            if (QuantDot.Supports(w.Type))
            {
                var q = _quantize;
                q.X = px; q.Cols = j.Cols; q.Type = w.Type; q.ActBytes = QuantDot.ActivationBytes(w.Type, j.Cols);
                q.Qx = QxBuffer((long)n * q.ActBytes);
                _pool.Run(q, n, Math.Max(1, QuantizeChunkFloats / Math.Max(1, j.Cols)));
                j.Qx = q.Qx; j.ActBytes = q.ActBytes;
                chunkRowBytes = w.RowBytes;
            }
            // small products run on the caller: waking workers would cost more than the work
            int chunk = (long)n * j.Rows * j.Cols < InlineMultiplyAdds ? j.Rows : MatMulJob.ChunkRows(j.Rows, chunkRowBytes, n, ThreadCount);
            _pool.Run(j, j.Rows, chunk);
            j.X = j.Y = null; j.W = null; j.Qx = null; _quantize.X = null;
        }
    }

    private void RepackedMatMul(ReadOnlySpan<float> x, int n, RepackedMatrix m, Span<float> y)
    {
        fixed (float* px = x, py = y)
        {
            int nb = m.Blocks;
            var q = _quantize;
            q.X = px; q.Cols = m.Cols; q.Type = m.Type; q.ActBytes = QuantDot.ActivationBytes(m.Type, m.Cols);
            q.Qx = QxBuffer((long)n * q.ActBytes);
            if (_offsetCount < (long)n * nb)
            {
                if (_offsets != null) NativeMemory.AlignedFree(_offsets);
                _offsetCount = Math.Max((long)n * nb, 2 * _offsetCount);
                _offsets = (ActBlock*)NativeMemory.AlignedAlloc((nuint)(_offsetCount * sizeof(ActBlock)), 64);
            }
            q.Offsets = _offsets;
            _pool.Run(q, n, Math.Max(1, QuantizeChunkFloats / Math.Max(1, m.Cols)));
            q.Offsets = null; q.X = null;
            var j = _repackedMatMul;
            j.M = m; j.Qx = q.Qx; j.Offsets = _offsets; j.Y = py; j.N = n; j.ActBytes = q.ActBytes;
            int items = m.Groups + (m.Groups * RepackedMatrix.GroupRows < m.Rows ? 1 : 0);
            int chunk = (long)n * m.Rows * m.Cols < InlineMultiplyAdds ? items
                : Math.Max(1, MatMulJob.ChunkRows(m.Rows, m.RowBytes, n, ThreadCount) / RepackedMatrix.GroupRows);
            _pool.Run(j, items, chunk);
            j.Qx = null; j.Offsets = null; j.Y = null;
        }
    }

    private byte* QxBuffer(long bytes)
    {
        if (_qxBytes < bytes)
        {
            if (_qx != null) NativeMemory.AlignedFree(_qx);
            _qxBytes = Math.Max(bytes, 2 * _qxBytes);
            _qx = (byte*)NativeMemory.AlignedAlloc((nuint)_qxBytes, 64);
        }
        return _qx;
    }

    public void GetRows(TensorView table, ReadOnlySpan<int> ids, Span<float> dst)
    {
        OpChecks.GetRows(table, ids, dst.Length);
        int dim = table.RowLength;
        if (Repacked(table) is { } rp)
        {
            // a tied embedding that was repacked for MatMul: read its rows back from the copy, so the mapped pages the
            // copy replaced are not faulted in again (each fault maps a whole fault-around window of the file)
            if (_rowBuffer.Length < rp.RowBytes) _rowBuffer = new byte[rp.RowBytes];
            var row = _rowBuffer.AsSpan(0, (int)rp.RowBytes);
            for (int i = 0; i < ids.Length; i++)
            {
                rp.CopyRow(ids[i], row);
                RowDecode.Row(table.Type, row, dst.Slice(i * dim, dim));
            }
            return;
        }
        fixed (float* pd = dst)
        {
            for (int i = 0; i < ids.Length; i++)
            {
                byte* src = (byte*)table.Data + ids[i] * table.RowBytes;
                float* d = pd + (long)i * dim;
                switch (table.Type)
                {
                    case DType.F32: new ReadOnlySpan<float>(src, dim).CopyTo(new Span<float>(d, dim)); break;
                    case DType.F16: HalfConvert.F16ToFloat(_isa, (ushort*)src, d, dim); break;
                    case DType.BF16: HalfConvert.Bf16ToFloat(_isa, (ushort*)src, d, dim); break;
                    default: RowDecode.Row(table.Type, table.Row(ids[i]), new Span<float>(d, dim)); break;
                }
            }
        }
    }

    public void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> y)
    {
        OpChecks.RmsNorm(x.Length, weight.Length, y.Length);
        fixed (float* px = x, pw = weight, py = y)
        {
            var j = _rmsNorm;
            j.X = px; j.W = pw; j.Y = py; j.Dim = weight.Length; j.Eps = eps;
            int rows = x.Length / weight.Length;
            _pool.Run(j, rows, x.Length < ParallelElements ? rows : Math.Max(1, rows / (4 * ThreadCount)));
        }
    }

    public void Rope(Span<float> x, int headCount, int headDim, ReadOnlySpan<int> positions, RopeParams rope)
    {
        OpChecks.Rope(x.Length, headCount, headDim, positions.Length, rope);
        if (!Equals(_ropeKey, rope))
        {
            int half = rope.Dimensions / 2;
            var f = new double[half];
            for (int i = 0; i < half; i++)
            {
                f[i] = rope.FreqScale * Math.Pow(rope.FreqBase, -2.0 * i / rope.Dimensions);
                if (rope.FreqFactors is { } ff) f[i] /= ff[i];
            }
            _invFreq = f; _ropeKey = rope;
        }
        fixed (float* px = x)
        fixed (int* pp = positions)
        fixed (double* pf = _invFreq)
        {
            var j = _rope;
            j.X = px; j.Positions = pp; j.InvFreq = pf; j.HeadCount = headCount; j.HeadDim = headDim;
            j.Dims = rope.Dimensions; j.Neox = rope.Style == RopeStyle.Neox;
            int n = positions.Length;
            _pool.Run(j, n, (long)n * headCount * headDim < ParallelElements ? n : Math.Max(1, n / (4 * ThreadCount)));
        }
    }

    public void Softmax(Span<float> x)
    {
        if (x.IsEmpty) return;
        fixed (float* p = x)
        {
            float max = Simd.Reduce(_isa, new IdentityOp(), new MaxOp(), p, x.Length, float.NegativeInfinity);
            Simd.Map(_isa, new ExpSubOp(max), p, p, x.Length);
            float sum = Simd.Reduce(_isa, new IdentityOp(), new AddOp(), p, x.Length, 0f);
            Simd.Map(_isa, new ScaleOp(1f / sum), p, p, x.Length);
        }
    }

    public void SiluMul(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> dst)
    {
        OpChecks.SameLength(nameof(SiluMul), gate.Length, up.Length, dst.Length);
        fixed (float* a = gate, b = up, d = dst) RunBinary(_siluMul, a, b, d, gate.Length);
    }

    public void Add(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> dst)
    {
        OpChecks.SameLength(nameof(Add), a.Length, b.Length, dst.Length);
        fixed (float* pa = a, pb = b, pd = dst) RunBinary(_add, pa, pb, pd, a.Length);
    }

    private void RunBinary<TOp>(BinaryJob<TOp> j, float* a, float* b, float* d, int n) where TOp : struct, IBinaryOp
    {
        j.A = a; j.B = b; j.Dst = d;
        // chunks are multiples of 64 elements so every chunk but the last runs full vectors
        _pool.Run(j, n, n < ParallelElements ? n : Math.Max(4096, (n / (4 * ThreadCount) + 63) & ~63));
    }

    public void Attention(ReadOnlySpan<float> q, ReadOnlySpan<int> qPositions, ReadOnlySpan<KvPage> pages, AttentionParams p, Span<float> output)
        => AttentionCore(q, qPositions, pages, p, output, default, false);

    public void Attention(ReadOnlySpan<float> q, ReadOnlySpan<int> qPositions, ReadOnlySpan<KvPage> pages, AttentionParams p, Span<float> output,
        Span<float> tokenMass)
    {
        OpChecks.AttentionMass(pages, p, tokenMass.Length);
        AttentionCore(q, qPositions, pages, p, output, tokenMass, true);
    }

    private void AttentionCore(ReadOnlySpan<float> q, ReadOnlySpan<int> qPositions, ReadOnlySpan<KvPage> pages, AttentionParams p, Span<float> output,
        Span<float> tokenMass, bool withMass)
    {
        OpChecks.Attention(q.Length, qPositions, pages, p, output.Length);
        int n = qPositions.Length;
        if (n == 0) return;
        if (_pageStart.Length < pages.Length) _pageStart = new int[Math.Max(pages.Length, 2 * _pageStart.Length)];
        int total = 0;
        for (int i = 0; i < pages.Length; i++) { _pageStart[i] = total; total += pages[i].TokenCount; }
        var j = _attention;
        // Enough query rows → one item per row over the whole cache. Few rows (decode) and a long cache → split the
        // cache into blocks (≥ 128 tokens) so every thread gets work, then merge the partials.
        int blocks = 1;
        // (with attention mass requested: one block per row, so every row's softmax normaliser is known in place)
        if (!withMass && n < 2 * ThreadCount && total >= 256)
        {
            int perRow = (4 * ThreadCount + n - 1) / n;
            int bt = Math.Max(128, (total + perRow - 1) / perRow);
            blocks = (total + bt - 1) / bt;
        }
        j.BlockCount = blocks;
        j.BlockTokens = blocks == 1 ? Math.Max(1, total) : (total + blocks - 1) / blocks;
        long partialFloats = blocks == 1 ? 0 : (long)n * blocks * p.HeadCount * (p.HeadDim + 2);
        fixed (float* pq = q, po = output)
        fixed (int* pp = qPositions, pstart = _pageStart)
        fixed (KvPage* pk = pages)
        {
            j.Q = pq; j.Out = po; j.Positions = pp; j.Pages = pk; j.PageStart = pstart; j.PageCount = pages.Length;
            j.TotalTokens = total; j.P = p;
            j.Partials = blocks == 1 ? null : (float*)PartialBuffer(partialFloats * sizeof(float));
            j.WithMass = withMass;
            bool general = withMass;
            for (int i = 0; i < pages.Length && !general; i++) general = pages[i].Type != KvElementType.F32;
            j.General = general;
            j.Quant = general && AttentionRangeQuant.Applies(Options, pk, pages.Length, p.HeadDim);
            long massFloats = (long)p.KvHeadCount * total;
            if (withMass)
                for (int th = 0; th < ThreadCount; th++) new Span<float>(_massScratch.Floats(th, massFloats), (int)massFloats).Clear();
            _pool.Run(j, n * blocks, 1);
            if (withMass)
                for (int th = 0; th < ThreadCount; th++)
                {
                    var part = new ReadOnlySpan<float>(_massScratch.Floats(th, massFloats), (int)massFloats);
                    for (int i = 0; i < part.Length; i++) tokenMass[i] += part[i];
                }
            j.WithMass = j.General = j.Quant = false;
            if (blocks > 1) j.Merge(n);
            j.Q = j.Out = j.Partials = null; j.Positions = j.PageStart = null; j.Pages = null;
        }
    }

    private byte* PartialBuffer(long bytes)
    {
        if (_partialBytes < bytes)
        {
            if (_partials != null) NativeMemory.AlignedFree(_partials);
            _partialBytes = Math.Max(bytes, 2 * _partialBytes);
            _partials = (byte*)NativeMemory.AlignedAlloc((nuint)_partialBytes, 64);
        }
        return _partials;
    }

    public void Dispose()
    {
        _pool.Dispose();
        _scratch.Dispose();
        _massScratch.Dispose();
        if (_qx != null) { NativeMemory.AlignedFree(_qx); _qx = null; _qxBytes = 0; }
        if (_offsets != null) { NativeMemory.AlignedFree(_offsets); _offsets = null; _offsetCount = 0; }
        foreach (var e in _repacked.Values) e.M.Dispose();
        foreach (var a in _repacked.Values.Select(e => e.Arena).Distinct()) a.Free();
        _repacked.Clear();
        if (_partials != null) { NativeMemory.AlignedFree(_partials); _partials = null; _partialBytes = 0; }
    }
}
