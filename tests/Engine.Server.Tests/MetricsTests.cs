// GET /metrics scraped and parsed (Prometheus text format): request counts by status, prompt / generated tokens equal
// to the usage the responses reported, one TTFT and TPOT observation per generation, and the engine gauges/counters
// (KV blocks, queue, running, prefix hits) equal to InferenceEngine.Stats at the time of the scrape.
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Engine.Server.Tests;

[NonParallelizable]
public partial class MetricsTests
{
    [GeneratedRegex(@"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")]
    private static partial Regex Sample();

    /// <summary>Every sample line of a Prometheus text exposition: "name{labels}" → value; a malformed line fails.</summary>
    internal static Dictionary<string, double> Parse(string text)
    {
        var d = new Dictionary<string, double>();
        foreach (var line in text.Split('\n'))
        {
            if (line.Length == 0 || line.StartsWith('#')) continue;
            var m = Sample().Match(line);
            Assert.That(m.Success, $"not a Prometheus sample line: {line}");
            d[m.Groups[1].Value + m.Groups[2].Value] = double.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture);
        }
        return d;
    }

    [Test]
    public async Task ScrapeReportsRequestsTokensLatenciesAndKvBlocks()
    {
        await using var host = await TestServerHost.StartAsync();
        int prompt = 0, generated = 0;
        for (int i = 0; i < 3; i++)
        {
            // the same long system prompt each time: later requests take its blocks from the prefix cache
            var body = new
            {
                model = TestServerHost.ModelId, max_tokens = 10 + i, temperature = 0,
                messages = new object[] { new { role = "system", content = string.Concat(Enumerable.Repeat("Lily and Tom play in the park. ", 8)) }, new { role = "user", content = "Story " + i } },
            };
            using var r = await host.Http.PostAsync("/v1/chat/completions", OpenAiClientTests.Json(body));
            using var doc = JsonDocument.Parse(await r.Content.ReadAsStringAsync());
            prompt += doc.RootElement.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
            generated += doc.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32();
        }
        using (var bad = await host.Http.PostAsync("/v1/chat/completions", OpenAiClientTests.Json(new { model = "nope", messages = Array.Empty<object>() }))) { }

        using var resp = await host.Http.GetAsync("/metrics");
        Assert.That(resp.Content.Headers.ContentType!.MediaType, Is.EqualTo("text/plain"));
        var m = Parse(await resp.Content.ReadAsStringAsync());
        var s = host.Engine.Stats!;
        Assert.Multiple(() =>
        {
            Assert.That(m["engine_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"}"], Is.EqualTo(3));
            Assert.That(m["engine_requests_total{endpoint=\"/v1/chat/completions\",status=\"400\"}"], Is.EqualTo(1));
            Assert.That(m["engine_prompt_tokens_total"], Is.EqualTo(prompt));
            Assert.That(m["engine_generated_tokens_total"], Is.EqualTo(generated));
            Assert.That(m["engine_time_to_first_token_seconds_count"], Is.EqualTo(3));
            Assert.That(m["engine_time_to_first_token_seconds_sum"], Is.GreaterThan(0));
            Assert.That(m["engine_time_per_output_token_seconds_count"], Is.EqualTo(3));
            Assert.That(m["engine_time_to_first_token_seconds_bucket{le=\"+Inf\"}"], Is.EqualTo(3));
            Assert.That(m["engine_kv_blocks_capacity"], Is.EqualTo(s.BlockCount));
            Assert.That(m["engine_kv_blocks{state=\"used\"}"] + m["engine_kv_blocks{state=\"cached\"}"] + m["engine_kv_blocks{state=\"free\"}"], Is.EqualTo(s.BlockCount));
            Assert.That(m["engine_kv_blocks{state=\"used\"}"], Is.EqualTo(0));
            Assert.That(m["engine_kv_blocks{state=\"cached\"}"], Is.EqualTo(s.BlocksCached).And.GreaterThan(0));
            Assert.That(m["engine_kv_blocks{state=\"disk\"}"], Is.EqualTo(0));
            Assert.That(m["engine_queue_depth"], Is.EqualTo(0));
            Assert.That(m["engine_running_sequences"], Is.EqualTo(0));
            Assert.That(m["engine_prefix_hit_tokens_total"], Is.EqualTo(s.PrefixHitTokens).And.GreaterThan(0), "the shared system prompt was reused");
            Assert.That(m["engine_preemptions_total"], Is.EqualTo(s.Preemptions));
            Assert.That(m["engine_requests_in_flight"], Is.EqualTo(0));
        });
    }
}
