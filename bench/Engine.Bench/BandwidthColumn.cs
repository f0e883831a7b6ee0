// Owns: the "GB/s" summary column: bytes a benchmark streams per call (IStreamsBytes.BytesPerCall, computed from the
// case's parameters) divided by its mean time. For matrix × vector that is the weight bytes (the memory-bound part),
// for memory copy the bytes copied, for attention the K and V bytes read.
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace Engine.Bench;

/// <summary>A benchmark class whose cases stream a known number of bytes per call.</summary>
public interface IStreamsBytes
{
    /// <summary>Bytes per invocation for the case's parameter values (by name).</summary>
    static abstract long BytesPerCall(IReadOnlyDictionary<string, object> parameters);
}

public sealed class BandwidthColumn : IColumn
{
    public string Id => "GBps";
    public string ColumnName => "GB/s";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => "Bytes streamed per call / mean time (weights for matvec, copied bytes for memcpy, K+V for attention)";

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public bool IsAvailable(Summary summary) => true;
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) => GetValue(summary, benchmarkCase);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase)
    {
        var stats = summary[benchmarkCase]?.ResultStatistics;
        if (stats == null) return "-";
        var ps = benchmarkCase.Parameters.Items.ToDictionary(p => p.Name, p => p.Value);
        var type = benchmarkCase.Descriptor.Type;
        long bytes = type == typeof(MatVecBenchmarks) ? MatVecBenchmarks.BytesPerCall(ps)
            : type == typeof(MemoryBenchmarks) ? MemoryBenchmarks.BytesPerCall(ps)
            : type == typeof(AttentionBenchmarks) ? AttentionBenchmarks.BytesPerCall(ps)
            : -1;
        return bytes < 0 ? "-" : $"{bytes / stats.Mean:F2}";   // bytes per ns = GB/s
    }
}
