// Owns: CLI tests of the KV disk tier flag (--kv-disk-mb), invoked in-process on stories260K: `run` with RAM for only
// two 16-token blocks plus a disk tier generates llama.cpp's greedy text (the reference fixture) for a request that
// could not even be admitted without the disk tier; `bench-parallel` with a quarter-size RAM budget and a disk tier
// reports blocks moved to disk and no preemption; a negative size is a one-line error.
using System.CommandLine;
using System.Text.Json;
using Engine.Cli.Commands;

namespace Engine.Runtime.Tests.Disk;

[NonParallelizable]
public class DiskTierCliTests
{
    private static (int Code, string Out, string Err) Invoke(Command command, params string[] args) => CliInvoker.Invoke(command, args);

    [Test]
    public void RunWithTwoRamBlocksAndADiskTier_GivesTheReferenceGreedyText()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(SharedData.Get("reference/stories260K/stories260K.greedy.json")));
        var g = doc.RootElement.GetProperty("generations")[1];   // "Once upon a time", 200 greedy tokens
        string model = SharedData.Get("reference/stories260K/stories260K.gguf");
        // One 16-token block of stories260K (5 layers, kvDim 32, F32 K + V) = 20480 bytes: RAM for 2 blocks = 32 tokens.
        string[] args = ["run", "--model", model, "--prompt", g.GetProperty("prompt").GetString()!,
            "--temperature", "0", "--max-tokens", "200", "--threads", "2", "--kv-budget", "40K"];
        var (code, stdout, stderr) = Invoke(RunCommand.Create(), [.. args, "--kv-disk-mb", "1"]);
        Assert.Multiple(() =>
        {
            Assert.That(code, Is.EqualTo(0), stderr);
            Assert.That(stdout.TrimEnd('\n').TrimStart(' '), Is.EqualTo(g.GetProperty("generated_text").GetString()));
        });
    }

    [Test]
    public void BenchParallelWithQuarterRamAndDiskTier_MovesBlocksAndNeverPreempts()
    {
        string model = SharedData.Get("reference/stories260K/stories260K.gguf");
        // 8 sequences × (16 prompt + 48 generated) ≈ 4 blocks each = 32 blocks; RAM for 8 (160K), disk 1 MiB (51 blocks).
        var (code, stdout, stderr) = Invoke(BenchParallelCommand.Create(), "bench-parallel", "--model", model, "--parallel", "8",
            "-n", "48", "-p", "16", "-r", "1", "--threads", "2", "--kv-budget", "160K", "--kv-disk-mb", "1", "--json");
        Assert.That(code, Is.EqualTo(0), stderr);
        using var doc = JsonDocument.Parse(stdout);
        var row = doc.RootElement[0];
        Assert.Multiple(() =>
        {
            Assert.That(row.GetProperty("preemptions").GetInt64(), Is.EqualTo(0));
            Assert.That(row.GetProperty("blocks_to_disk").GetInt64(), Is.GreaterThan(0));
        });
    }

    [Test]
    public void NegativeDiskSizeIsAOneLineError()
    {
        string model = SharedData.Get("reference/stories260K/stories260K.gguf");
        var (code, stdout, stderr) = Invoke(RunCommand.Create(), "run", "--model", model, "--prompt", "x", "--kv-disk-mb", "-5");
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith("error:")).ToArray();
        Assert.Multiple(() =>
        {
            Assert.That(code, Is.Not.EqualTo(0));
            Assert.That(lines, Has.Length.EqualTo(1), stderr);
            Assert.That(lines.FirstOrDefault(), Does.Contain("--kv-disk-mb"));
            Assert.That(stdout.Trim(), Is.Empty);
        });
    }
}
