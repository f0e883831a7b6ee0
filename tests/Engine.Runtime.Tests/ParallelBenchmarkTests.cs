// Tests of Engine.Runtime.Benchmarking.ParallelBenchmark on stories260K: one row per parallelism with the JSON fields
// the issue asks for, every sequence generating exactly N tokens; the attention A/B reads identical values through both
// layouts (it throws otherwise); the prefix-cache TTFT run reuses the whole-block part of the prefix.
using System.Text.Json;
using Engine.Runtime.Benchmarking;

namespace Engine.Runtime.Tests;

public class ParallelBenchmarkTests
{
    [Test]
    public void ParallelRowsCarryParallelAndTokensPerSecond()
    {
        var path = SharedData.Get("reference/stories260K/stories260K.gguf");
        var rows = ParallelBenchmark.Run(path, [1, 4], genTokens: 8, promptTokens: 5, repetitions: 1, threads: 2);
        Assert.That(rows.Select(r => r.Parallel), Is.EqualTo(new[] { 1, 4 }));
        Assert.That(rows.All(r => r.TokensPerSecondMean > 0 && r.Preemptions == 0), Is.True);
        using var doc = JsonDocument.Parse(JsonSerializer.Serialize(rows));
        var first = doc.RootElement[0];
        Assert.That(first.GetProperty("parallel").GetInt32(), Is.EqualTo(1));
        Assert.That(first.GetProperty("tokens_per_s_mean").GetDouble(), Is.GreaterThan(0));
    }

    [Test]
    public void AttentionLayoutsAgreeAndPrefixTtftReusesBlocks()
    {
        var (tc, tp, ratio) = ParallelBenchmark.AttentionPaging(context: 300, headCount: 4, kvHeadCount: 2, headDim: 16, threads: 2, iterations: 2);
        Assert.That(tc > 0 && tp > 0 && ratio > 0, Is.True);
        var (_, _, reused) = ParallelBenchmark.PrefixCacheTtft(SharedData.Get("reference/stories260K/stories260K.gguf"),
            prefixTokens: 100, suffixTokens: 4, repetitions: 1, threads: 2);
        Assert.That(reused, Is.EqualTo(96), "6 whole 16-token blocks of the 100-token prefix");
    }
}
