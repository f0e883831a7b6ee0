// Tests of the run / logits CLI commands, invoked in-process: `logits` writes the fixture layout and agrees with
// llama.cpp (batch and --decode); `run` prints only generated text on stdout (llama.cpp's greedy text) and
// diagnostics on stderr; bad input gives a one-line error and a non-zero exit code.
using System.CommandLine;
using System.Text.Json;
using Engine.Cli.Commands;

namespace Engine.Runtime.Tests;

[NonParallelizable]
public class CliCommandTests
{
    private static (int Code, string Out, string Err) Invoke(Command command, params string[] args) => InvokeWithInput(command, "", args);

    private static (int Code, string Out, string Err) InvokeWithInput(Command command, string stdin, params string[] args) => CliInvoker.Invoke(command, args, stdin);

    [Test]
    public void ChatAnswersEachLineUntilExit()
    {
        string model = SharedData.Get("reference/stories260K/stories260K.gguf");
        var (code, stdout, stderr) = InvokeWithInput(ChatCommand.Create(), "Once upon a time\n/reset\nLily\n/exit\nnever read\n",
            "chat", "--model", model, "--temperature", "0", "--max-tokens", "8", "--threads", "2");
        Assert.Multiple(() =>
        {
            Assert.That(code, Is.EqualTo(0), stderr);
            Assert.That(stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries), Has.Length.EqualTo(2), "one reply line per user message");
            Assert.That(System.Text.RegularExpressions.Regex.Matches(stderr, "generated 8 tokens").Count, Is.EqualTo(2));
        });
    }

    [TestCase(false)]
    [TestCase(true)]
    public void LogitsCommandMatchesLlamaCpp(bool decode)
    {
        string stem = "reference/qwen2-256x2/rand-qwen2-F32";
        string outFile = Path.GetTempFileName();
        try
        {
            var args = new List<string> { "logits", "--model", SharedData.Get(stem + ".gguf"), "--tokens", string.Join(",", Fixtures.Seq128()), "--out", outFile, "--threads", "2" };
            if (decode) args.Add("--decode");
            var (code, stdout, _) = Invoke(LogitsCommand.Create(), [.. args]);
            Assert.That(code, Is.EqualTo(0));
            Assert.That(stdout, Is.Empty, "stdout stays clean");
            var actual = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(outFile)).ToArray();
            var c = Fixtures.Compare(Fixtures.ReadLogits(stem + ".logits.f32"), actual, Fixtures.Vocab, 0.1);
            // README main table, rand-qwen2-F32: max abs Δ 4.41e-06 → tolerance max(1e-4, 2×) = 1e-4.
            Assert.That(c.MaxAbs, Is.LessThanOrEqualTo(1e-4), c.ToString());
            Assert.That(c.MarginAgree, Is.EqualTo(c.MarginPositions), c.ToString());
        }
        finally { File.Delete(outFile); }
    }

    [Test]
    public void RunPrintsOnlyGeneratedTextOnStdout()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(SharedData.Get("reference/stories260K/stories260K.greedy.json")));
        var g = doc.RootElement.GetProperty("generations")[1];   // "Once upon a time"
        string model = SharedData.Get("reference/stories260K/stories260K.gguf");
        var (code, stdout, stderr) = Invoke(RunCommand.Create(), "run", "--model", model, "--prompt", g.GetProperty("prompt").GetString()!,
            "--temperature", "0", "--max-tokens", "200", "--threads", "2");
        Assert.Multiple(() =>
        {
            Assert.That(code, Is.EqualTo(0), stderr);
            Assert.That(stdout.TrimEnd('\n').TrimStart(' '), Is.EqualTo(g.GetProperty("generated_text").GetString()));
            Assert.That(stderr, Does.Contain("tok/s"));
        });
    }

    [Test]
    public void ErrorsAreOneLineWithNonZeroExit()
    {
        string model = SharedData.Get("reference/stories260K/stories260K.gguf");
        var cases = new (Command Cmd, string[] Args, string Expect)[]
        {
            (LogitsCommand.Create(), ["logits", "--model", "/no/such/model.gguf", "--tokens", "1", "--out", "/tmp/x"], "not found"),
            (LogitsCommand.Create(), ["logits", "--model", model, "--tokens", "1,abc", "--out", "/tmp/x"], "abc"),
            (LogitsCommand.Create(), ["logits", "--model", model, "--tokens", "1,9999", "--out", "/tmp/x"], "9999"),
            (LogitsCommand.Create(), ["logits", "--model", SharedData.Get("reference/tokens/seq128.json"), "--tokens", "1", "--out", "/tmp/x"], "seq128.json"),
            (RunCommand.Create(), ["run", "--model", "/no/such/model.gguf", "--prompt", "x"], "not found"),
            (RunCommand.Create(), ["run", "--model", model, "--ctx-size", "4", "--prompt", "Once upon a time there was"], "context"),
        };
        foreach (var (cmd, args, expect) in cases)
        {
            var (code, stdout, stderr) = Invoke(cmd, args);
            var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith("error:")).ToArray();
            Assert.Multiple(() =>
            {
                Assert.That(code, Is.Not.EqualTo(0), string.Join(" ", args));
                Assert.That(lines, Has.Length.EqualTo(1), stderr);
                Assert.That(lines.FirstOrDefault(), Does.Contain(expect));
                Assert.That(stdout.Trim(), Is.Empty);
            });
        }
    }
}
