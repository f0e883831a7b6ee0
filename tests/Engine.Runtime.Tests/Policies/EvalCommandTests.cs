// Owns: tests of `engine eval` invoked in-process: --json objects carry the documented fields (full policy: KLD 0,
// top-1 1); bad policies and budgets give a one-line error and a non-zero exit code before any work.
using System.CommandLine;
using System.Text.Json;
using Engine.Cli.Commands;

namespace Engine.Runtime.Tests.Policies;

[NonParallelizable]
public class EvalCommandTests
{
    private static (int Code, string Out, string Err) Invoke(params string[] args) => CliInvoker.Invoke(EvalCommand.Create(), args);

    [Test]
    public void Json_HasDocumentedFields()
    {
        string model = SharedData.Get("reference/stories260K/stories260K.gguf");
        var (code, stdout, stderr) = Invoke("eval", "--model", model, "--policy", "full,sinks", "--budget", "0.5", "--json", "--threads", "2");
        Assert.That(code, Is.EqualTo(0), stderr);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(2));
        foreach (var line in lines)
        {
            using var doc = JsonDocument.Parse(line);
            foreach (var f in new[] { "policy", "budget", "kld_mean", "top1", "bytes_per_token", "tokens_per_s" })
                Assert.That(doc.RootElement.TryGetProperty(f, out _), $"field {f} in {line}");
        }
        using var full = JsonDocument.Parse(lines[0]);
        Assert.That(full.RootElement.GetProperty("kld_mean").GetDouble(), Is.EqualTo(0.0));
        Assert.That(full.RootElement.GetProperty("top1").GetDouble(), Is.EqualTo(1.0));
    }

    [TestCase("lru", "0.5", "unknown KV policy")]
    [TestCase("h2o+sinks", "0.5", "combines")]
    [TestCase("h2o", "0", "impossible")]
    [TestCase("h2o", "2", "impossible")]
    public void BadInput_OneLineError(string policy, string budget, string message)
    {
        var (code, stdout, stderr) = Invoke("eval", "--policy", policy, "--budget", budget);
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(stdout, Is.Empty);
        Assert.That(stderr, Does.Contain(message));
        Assert.That(stderr.Trim().Split('\n'), Has.Length.EqualTo(1));
    }

    [Test]
    public void Needle_Json()
    {
        var (code, stdout, stderr) = Invoke("eval", "--needle", "--context", "4096", "--trials", "2", "--policy", "quest,sinks", "--budget", "0.1", "--json");
        Assert.That(code, Is.EqualTo(0), stderr);
        var rows = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToArray();
        Assert.That(rows.Select(r => r.GetProperty("policy").GetString()), Is.EqualTo(new[] { "quest", "sinks" }));
        Assert.That(rows[0].GetProperty("retrieved").GetDouble(), Is.EqualTo(1.0));
        Assert.That(rows[0].GetProperty("context").GetInt32(), Is.EqualTo(4096));
    }
}
