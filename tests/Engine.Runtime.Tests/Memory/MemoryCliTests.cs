// Owns: tests of `engine memory add|ls|rm` and `engine run --memory` invoked in-process on stories260K: documents are
// listed after add, run uses the memory, a memory built with another model is rejected with a one-line error, rm
// removes a document and then the memory. Expected values: the files the test writes and the CLI contract (exit codes).
using System.CommandLine;
using Engine.Cli.Commands;

namespace Engine.Runtime.Tests.Memory;

[NonParallelizable]
public class MemoryCliTests
{
    private static (int Code, string Out, string Err) Invoke(Command command, params string[] args) => CliInvoker.Invoke(command, args);

    [Test]
    public void AddListRunRemove()
    {
        string model = SharedData.Get("reference/stories260K/stories260K.gguf");
        string dir = Path.Combine(Path.GetTempPath(), "engine-memcli-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string a = Path.Combine(dir, "kite.txt"), b = Path.Combine(dir, "owl.txt");
            File.WriteAllText(a, "Lily had a blue kite. Every morning she went to the hill with her dad to fly it.");
            File.WriteAllText(b, "The old owl lived in a hole in the oak tree. At night she flew over the quiet forest.");
            string mem = Path.Combine(dir, "memories");
            var add = Invoke(MemoryCommand.Create(), "memory", "add", "--model", model, "--memory", "tales", "--memory-dir", mem, "--chunk-size", "8", "--threads", "2", a, b);
            Assert.That(add.Code, Is.EqualTo(0), add.Err);
            Assert.That(add.Err, Does.Contain("added 2 documents"));
            var ls = Invoke(MemoryCommand.Create(), "memory", "ls", "--memory-dir", mem);
            Assert.That(ls.Out.Trim(), Is.EqualTo("tales"));
            var docs = Invoke(MemoryCommand.Create(), "memory", "ls", "--memory", "tales", "--memory-dir", mem);
            Assert.That(docs.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split('\t')[0]), Is.EqualTo(new[] { "kite.txt", "owl.txt" }));

            Environment.SetEnvironmentVariable("ENGINE_MEMORY_DIR", mem);
            try
            {
                var run = Invoke(RunCommand.Create(), "run", "--model", model, "--memory", "tales", "--prompt", "Lily had", "--temperature", "0", "-n", "8", "--threads", "2");
                Assert.That(run.Code, Is.EqualTo(0), run.Err);
                Assert.That(run.Err, Does.Contain("generated 8 tokens"));
                // Tamper the stored identity hash → one-line error, exit 1 (the manifest's checksum catches the edit; a real
                // other-model open is MemoryDocumentTests' "built with model" case).
                var header = Path.Combine(mem, "tales", "header.json");
                var text = File.ReadAllText(header);
                File.WriteAllText(header, System.Text.RegularExpressions.Regex.Replace(text, "\"TensorHash\": \"[0-9a-f]+\"", "\"TensorHash\": \"00\""));
                var wrong = Invoke(RunCommand.Create(), "run", "--model", model, "--memory", "tales", "--prompt", "Lily", "-n", "2", "--threads", "2");
                Assert.That(wrong.Code, Is.EqualTo(1));
                Assert.That(wrong.Err, Does.Contain("does not match its checksum"));
                File.WriteAllText(header, text);
            }
            finally { Environment.SetEnvironmentVariable("ENGINE_MEMORY_DIR", null); }

            var rm = Invoke(MemoryCommand.Create(), "memory", "rm", "--memory", "tales", "--memory-dir", mem, "kite.txt");
            Assert.That(rm.Code, Is.EqualTo(0), rm.Err);
            docs = Invoke(MemoryCommand.Create(), "memory", "ls", "--memory", "tales", "--memory-dir", mem);
            Assert.That(docs.Out.Trim().Split('\t')[0], Is.EqualTo("owl.txt"));
            Assert.That(Invoke(MemoryCommand.Create(), "memory", "rm", "--memory", "tales", "--memory-dir", mem, "nope").Code, Is.EqualTo(1));
            Assert.That(Invoke(MemoryCommand.Create(), "memory", "rm", "--memory", "tales", "--memory-dir", mem).Code, Is.EqualTo(0));
            Assert.That(Invoke(MemoryCommand.Create(), "memory", "ls", "--memory-dir", mem).Out.Trim(), Is.Empty);
        }
        finally { Directory.Delete(dir, true); }
    }
}
