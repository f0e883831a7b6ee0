// Owns: `engine memory add|ls|rm` — persistent memory documents (MemoryStore): add computes each file's K/V with the
// model (document-wise RoPE) into a named memory under --memory-dir (default $ENGINE_MEMORY_DIR or
// ~/.cache/engine/memories) with a progress bar on stderr; ls lists memories or one memory's documents (stdout);
// rm removes one document or the whole memory. `engine run --memory NAME` then attends over the memory.
using System.CommandLine;
using Engine.Runtime.Memory;
using Spectre.Console;

using Engine.Runtime.Tools;

namespace Engine.Cli.Commands;

public static class MemoryCommand
{
    private static Option<string?> DirOption() => GenerationCommandSupport.MemoryDirOption();

    public static Command Create()
    {
        MemoryStore.OnLockWait(line => Console.Error.WriteLine(line));   // "waiting for memory X: another process is …"
        var cmd = new Command("memory", "Persistent memory documents: add, list, remove.");
        cmd.Subcommands.Add(Add());
        cmd.Subcommands.Add(List());
        cmd.Subcommands.Add(Remove());
        return cmd;
    }

    private static Command Add()
    {
        var model = GenerationCommandSupport.ModelOption();
        var name = new Option<string>("--memory") { Description = "Memory name (created when absent).", Required = true };
        var dir = DirOption();
        var chunk = new Option<int>("--chunk-size") { Description = "Tokens per routed chunk (new memories).", DefaultValueFactory = _ => 32 };
        var threads = GenerationCommandSupport.ThreadsOption();
        var files = new Argument<string[]>("files") { Description = "Text files; each becomes one document named by its file name.", Arity = ArgumentArity.OneOrMore };
        var cmd = new Command("add", "Compute documents' K/V with the model and store them in a memory.") { model, name, dir, chunk, threads, files };
        cmd.SetAction((pr, ct) => GenerationCommandSupport.Guard(() =>
        {
            string path = GenerationCommandSupport.ResolveModel(pr.GetValue(model));
            if (!File.Exists(path)) throw new FileNotFoundException($"model file not found: {path}");
            var paths = pr.GetValue(files)!;
            foreach (var f in paths) if (!File.Exists(f)) throw new FileNotFoundException($"document not found: {f}");
            var root = pr.GetValue(dir) ?? MemoryStore.DefaultRoot;
            // a failed or cancelled add leaves the memory as it was; one it created is removed again (MemoryIngest.Dispose)
            using var ingest = MemoryIngest.Open(path, pr.GetValue(threads), root, pr.GetValue(name)!, pr.GetValue(chunk), ct);
            var mem = ingest.Store;
            foreach (var bad in mem.CorruptDocuments)
                Console.Error.WriteLine($"warning: memory '{mem.Name}': document {EngineErrors.Quote(bad)} is corrupt; engine memory rm it and add it again");
            var docs = paths.Select(f => (Name: Path.GetFileName(f), Tokens: ingest.Encode(File.ReadAllText(f)))).ToList();
            foreach (var d in docs)
                if (mem.Documents.Any(x => x.Name == d.Name))
                    throw new ArgumentException($"memory {EngineErrors.Quote(mem.Name)} already holds a document named {EngineErrors.Quote(d.Name)} (engine memory rm it first)");
            long total = docs.Sum(d => (long)d.Tokens.Length);
            var sw = System.Diagnostics.Stopwatch.StartNew();
            var err = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            void Ingest(Action<string, int>? report)
            {
                foreach (var d in docs)
                {
                    ct.ThrowIfCancellationRequested();
                    ingest.Add(d.Name, d.Tokens, report == null ? null : new Progress<int>(n => report(d.Name, n)), cancellationToken: ct);
                    report?.Invoke(d.Name, d.Tokens.Length);
                }
            }
            Console.Error.WriteLine($"memory '{mem.Name}': adding {docs.Count} documents, {total} tokens…");
            if (Console.IsErrorRedirected) Ingest(null);
            else
                err.Progress().Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                    .Start(ctx =>
                    {
                        var tasks = docs.ToDictionary(d => d.Name, d => ctx.AddTask(d.Name, maxValue: d.Tokens.Length));
                        Ingest((doc, n) => tasks[doc].Value = n);
                    });
            ct.ThrowIfCancellationRequested();
            ingest.Save();   // the commit: all files of this add, or none
            Console.Error.WriteLine($"memory '{mem.Name}': added {docs.Count} documents, {total} tokens in {sw.Elapsed.TotalSeconds:F2} s " +
                $"({total / Math.Max(1e-9, sw.Elapsed.TotalSeconds):F0} tok/s); {mem.Documents.Count} documents, {mem.DiskBytes / 1024.0:F0} KiB on disk");
            return Task.FromResult(0);
        }));
        return cmd;
    }

    private static Command List()
    {
        var name = new Option<string?>("--memory") { Description = "List this memory's documents (default: list memories)." };
        var dir = DirOption();
        var cmd = new Command("ls", "List memories, or the documents of one memory.") { name, dir };
        cmd.SetAction((pr, ct) => GenerationCommandSupport.Guard(() =>
        {
            var root = pr.GetValue(dir) ?? MemoryStore.DefaultRoot;
            if (pr.GetValue(name) is { } n)
            {
                using var mem = MemoryStore.OpenUnchecked(root, n, writable: false);
                Console.Error.WriteLine($"memory '{n}': model {mem.IdentityText}, chunk {mem.ChunkSize} tokens, {mem.DiskBytes / 1024.0:F0} KiB on disk");
                foreach (var d in mem.Documents) Console.WriteLine($"{d.Name}\t{d.TokenCount} tokens\t{d.ChunkCount} chunks");
            }
            else
                foreach (var m in MemoryStore.Names(root)) Console.WriteLine(m);
            return Task.FromResult(0);
        }));
        return cmd;
    }

    private static Command Remove()
    {
        var name = new Option<string>("--memory") { Description = "Memory name.", Required = true };
        var dir = DirOption();
        var doc = new Argument<string?>("document") { Description = "Document to remove (omit to delete the whole memory).", Arity = ArgumentArity.ZeroOrOne };
        var cmd = new Command("rm", "Remove a document from a memory, or the whole memory.") { name, dir, doc };
        cmd.SetAction((pr, ct) => GenerationCommandSupport.Guard(() =>
        {
            var root = pr.GetValue(dir) ?? MemoryStore.DefaultRoot;
            var n = pr.GetValue(name)!;
            if (pr.GetValue(doc) is { } d)
            {
                using var mem = MemoryStore.OpenUnchecked(root, n);
                if (!mem.Remove(d)) throw new ArgumentException($"memory '{n}' has no document '{d}'");
                mem.Save();
                Console.Error.WriteLine($"removed '{d}' from memory '{n}'");
            }
            else
            {
                if (!MemoryStore.Delete(root, n)) throw new ArgumentException($"no memory named '{n}' under {root}");
                Console.Error.WriteLine($"deleted memory '{n}'");
            }
            return Task.FromResult(0);
        }));
        return cmd;
    }
}
