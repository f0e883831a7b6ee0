// Issue 13, findings 4, 5, 8, 10, 11 and 7 (+ issue 14's `bench -p 1 -n 1 -r 1`): options are checked in one place
// (OptionsValidation) for the API and the CLI — a bad field is an ArgumentException naming the field and its range, and a
// one-line error with exit 1 on the command line; budgets above the machine's memory are refused before allocating;
// errors quote and cut names; bench sizes its KV store for the warm-up as well.
using Engine.Cli.Commands;
using Engine.Runtime;
using Engine.Runtime.Benchmarking;
using Engine.Runtime.Sampling;
using Engine.Tensors;

namespace Engine.Reliability.Tests;

[NonParallelizable]
public class OptionValidationTests
{
    private static readonly object[] BadSampling =
    [
        new object[] { new SamplingOptions { Temperature = -1 }, "Temperature" },
        new object[] { new SamplingOptions { Temperature = float.NaN }, "Temperature" },
        new object[] { new SamplingOptions { TopP = 2 }, "TopP" },
        new object[] { new SamplingOptions { MinP = 2 }, "MinP" },
        new object[] { new SamplingOptions { MinP = -0.1f }, "MinP" },
        new object[] { new SamplingOptions { TopK = -1 }, "TopK" },
        new object[] { new SamplingOptions { RepetitionPenalty = 0 }, "RepetitionPenalty" },
        new object[] { new SamplingOptions { PenaltyWindow = -2 }, "PenaltyWindow" },
        new object[] { new SamplingOptions { FrequencyPenalty = float.PositiveInfinity }, "FrequencyPenalty" },
    ];

    [TestCaseSource(nameof(BadSampling))]
    public void BadSamplingFieldIsNamedByTheApi(SamplingOptions sampling, string field)
    {
        using var engine = InferenceEngine.Load(Cli.DefaultModel, new EngineOptions { Threads = 1 });
        var e = Assert.Throws<ArgumentException>(() => engine.GenerateAsync("hi", new GenerationOptions { Sampling = sampling, MaxTokens = 2 }));
        Assert.That(e!.Message, Does.Contain("SamplingOptions." + field).And.Contain("allowed"));
    }

    [Test]
    public void NegativeMaxTokensIsNamed()
    {
        var e = Assert.Throws<ArgumentException>(() => new GenerationOptions { MaxTokens = -1 }.Validate());
        Assert.That(e!.Message, Does.Contain("GenerationOptions.MaxTokens"));
    }

    private static readonly object[] BadEngine =
    [
        new object[] { new EngineOptions { Threads = -3 }, "Threads" },
        new object[] { new EngineOptions { ContextLength = -1 }, "ContextLength" },
        new object[] { new EngineOptions { MaxConcurrentSequences = 0 }, "MaxConcurrentSequences" },
        new object[] { new EngineOptions { BlockSize = 0 }, "BlockSize" },
        new object[] { new EngineOptions { PrefillChunk = 0 }, "PrefillChunk" },
        new object[] { new EngineOptions { KvBudgetBytes = -5 }, "KvBudgetBytes" },
        new object[] { new EngineOptions { KvDiskBytes = -5 }, "KvDiskBytes" },
        new object[] { new EngineOptions { MemoryTopK = 0 }, "MemoryTopK" },
    ];

    [TestCaseSource(nameof(BadEngine))]
    public void BadEngineFieldIsNamedByLoad(EngineOptions options, string field)
    {
        var e = Assert.Throws<ArgumentException>(() => InferenceEngine.Load(Cli.DefaultModel, options));
        Assert.That(e!.Message, Does.Contain("EngineOptions." + field).And.Contain("allowed"));
    }

    [Test]
    public void DefaultsAndOffValuesStayValid()
    {
        Assert.DoesNotThrow(() => new EngineOptions().Validate());
        Assert.DoesNotThrow(() => new GenerationOptions().Validate());
        Assert.DoesNotThrow(() => new SamplingOptions { Temperature = 0, TopK = 0, TopP = 1, MinP = 0, PenaltyWindow = 0 }.Validate());
    }

    [Test]   // finding 4: the machine's memory is the oracle (GC's view of RAM / the cgroup limit)
    public void KvBudgetAboveTheMachinesMemoryIsRefusedBeforeAllocating()
    {
        long tooMuch = OptionsValidation.MachineMemoryBytes + (1L << 30);
        var e = Assert.Throws<ArgumentException>(() => InferenceEngine.Load(Cli.DefaultModel, new EngineOptions { KvBudgetBytes = tooMuch }));
        Assert.That(e!.Message, Does.Contain("KvBudgetBytes").And.Contain("more than the memory"));
        var r = Cli.Invoke(RunCommand.Create(), "run", "-m", Cli.DefaultModel, "-p", "hi", "--kv-budget", "400000G");
        Cli.AssertOneLineError(r, "--kv-budget");
    }

    [TestCase("--temperature", "-1")]
    [TestCase("--top-p", "2")]
    [TestCase("--min-p", "2")]
    [TestCase("--top-k", "-1")]
    [TestCase("--threads", "-3")]
    [TestCase("--ctx-size", "-1")]
    [TestCase("--kv-disk-mb", "-1")]
    public void CliRejectsOutOfRangeValuesWithOneLine(string option, string value)
    {
        var r = Cli.Invoke(RunCommand.Create(), "run", "-m", Cli.DefaultModel, "-p", "hi", "-n", "2", option, value);
        Cli.AssertOneLineError(r, option);
        Assert.That(r.Out, Is.Empty, "nothing generated");
    }

    [Test]   // finding 8: too many threads are capped (with a warning), a huge ctx-size warns
    public void TooManyThreadsAreCappedAndLongContextWarns()
    {
        var r = Cli.Invoke(RunCommand.Create(), "run", "-m", Cli.DefaultModel, "-p", "hi", "-n", "2", "--temperature", "0",
            "--threads", "1000", "--ctx-size", "100000");
        Assert.Multiple(() =>
        {
            Assert.That(r.Code, Is.Zero, r.Err);
            Assert.That(r.Err, Does.Contain("warning: --threads 1000"));
            Assert.That(r.Err, Does.Contain($"on cpu({Environment.ProcessorCount}t)"), "the backend starts only the cores");
            Assert.That(r.Err, Does.Contain("warning: --ctx-size 100000 is beyond the 512 tokens"));
        });
    }

    [Test]   // finding 5
    public void LogitsIntoADirectoryIsAOneLineError()
    {
        using var dir = new TempDir();
        var r = Cli.Invoke(LogitsCommand.Create(), "logits", "-m", Cli.DefaultModel, "--tokens", "1,2,3", "--out", dir.Path);
        Cli.AssertOneLineError(r, "is a directory");
        Assert.That(Directory.GetFileSystemEntries(dir.Path), Is.Empty, "nothing written");
    }

    [Test]   // finding 5: an unwritable target (a file under a read-only place) is one line too, and leaves no temp file
    public void LogitsIntoAMissingFolderIsAOneLineError()
    {
        using var dir = new TempDir();
        var r = Cli.Invoke(LogitsCommand.Create(), "logits", "-m", Cli.DefaultModel, "--tokens", "1,2,3", "--out", dir["no/such/x.bin"]);
        Cli.AssertOneLineError(r, "error:");
        Assert.That(Directory.GetFileSystemEntries(dir.Path), Is.Empty);
    }

    // finding 7 and issue 14: every small -p/-n mix runs (the store holds the warm-up's tokens too)
    [TestCase(1, 1)]
    [TestCase(1, 0)]
    [TestCase(0, 1)]
    [TestCase(3, 3)]
    [TestCase(17, 0)]
    public void BenchRunsWithTinyPromptAndGenerationCounts(int p, int n)
    {
        var rs = ModelBenchmark.Run(Cli.DefaultModel, new BenchOptions { PromptTokens = p, GenTokens = n, Repetitions = 1, Threads = 1 });
        Assert.That(rs.Select(r => r.Test), Is.EqualTo(new[] { p > 0 ? $"pp{p}" : null, n > 0 ? $"tg{n}" : null }.OfType<string>()));
        Assert.That(rs.All(r => r.TokensPerSecondMean > 0));
    }

    [Test]
    public void BenchCliTinyRunExitsZero()
    {
        var r = Cli.Invoke(BenchCommand.Create(), "bench", "-m", Cli.DefaultModel, "-p", "1", "-n", "1", "-r", "1", "--threads", "1");
        Assert.That(r.Code, Is.Zero, r.Err);
        Assert.That(r.Out, Does.Contain("tg1"));
    }

    [Test]   // finding 8: a depth beyond the trained context warns before the minutes-long pre-fill
    public void BenchWarnsAboutDepthBeyondTheTrainedContext()
    {
        var log = new List<string>();
        ModelBenchmark.Run(Cli.DefaultModel, new BenchOptions { PromptTokens = 0, GenTokens = 1, Depths = [600], Repetitions = 1, Threads = 1, RandomKvFill = true }, log.Add);
        Assert.That(log, Has.Some.Contains("warning: depth 600").And.Some.Contains("512 tokens"));
    }

    [Test]   // finding 10: a 115 KB binary key is quoted, escaped and cut
    public void MutatedGgufKeyIsQuotedAndCut()
    {
        using var dir = new TempDir();
        var bytes = File.ReadAllBytes(Cli.DefaultModel);
        bytes[11400] = 0xff;
        File.WriteAllBytes(dir["k.gguf"], bytes);
        var r = Cli.Invoke(RunCommand.Create(), "run", "-m", dir["k.gguf"], "-p", "hi");
        Cli.AssertOneLineError(r, "chars)");
        Assert.That(r.Err.Length, Is.LessThan(ErrorText.MaxMessage + 200), "the error is cut, not 115 KB");
        Assert.That(r.Err.TrimEnd('\n').Any(c => char.IsControl(c)), Is.False, "no raw control bytes on the terminal");
    }

    [Test]
    public void ErrorTextQuoteAndClean()
    {
        var binary = new string(Enumerable.Range(0, 100_000).Select(i => (char)(i % 256)).ToArray());
        string q = ErrorText.Quote(binary);
        Assert.Multiple(() =>
        {
            Assert.That(ErrorText.Quote("blk.0.attn_q.weight"), Is.EqualTo("'blk.0.attn_q.weight'"), "short names unchanged");
            Assert.That(q.Length, Is.LessThan(ErrorText.MaxQuoted + 30));
            Assert.That(q, Does.EndWith("(100000 chars)"));
            Assert.That(q.Any(char.IsControl), Is.False);
            Assert.That(ErrorText.Clean("plain message"), Is.EqualTo("plain message"));
            string cleaned = ErrorText.Clean($"metadata '{binary.Replace("'", "")}' is bad");
            Assert.That(cleaned.Length, Is.LessThanOrEqualTo(ErrorText.MaxMessage + 20));
            Assert.That(cleaned.Any(char.IsControl), Is.False);
        });
    }

    [Test]   // finding 11
    public void HelpTextsNameTheRightOptions()
    {
        var eval = Cli.Invoke(EvalCommand.Create(), "eval", "--help");
        var run = Cli.Invoke(RunCommand.Create(), "run", "--help");
        var chat = Cli.Invoke(ChatCommand.Create(), "chat", "--help");
        Assert.Multiple(() =>
        {
            Assert.That(eval.Out, Does.Contain("With --policy").And.Not.Contain("--kv-policy"));
            Assert.That(run.Out, Does.Contain("--memory-dir"));
            Assert.That(chat.Out, Does.Contain("--memory-dir").And.Contain("--memory "));
        });
    }
}
