// Owns: `engine chat` — an interactive loop on stdin using the model's chat template (plain "role: text" transcript
// for models without one). Replies stream to stdout; the "> " prompt and diagnostics go to stderr.
// Commands typed at the prompt: /reset clears the conversation, /exit (or end of input) quits.
using System.CommandLine;
using Engine.Runtime;

using Engine.Runtime.Tools;

namespace Engine.Cli.Commands;

public static class ChatCommand
{
    public static Command Create()
    {
        var model = GenerationCommandSupport.ModelOption();
        var system = new Option<string?>("--system") { Description = "Optional system message." };
        var maxTokens = new Option<int>("--max-tokens", "-n") { Description = "Maximum tokens per reply.", DefaultValueFactory = _ => 512 };
        var temperature = new Option<float>("--temperature") { Description = "Sampling temperature; 0 = greedy.", DefaultValueFactory = _ => 0.7f };
        var topK = new Option<int>("--top-k") { Description = "Top-k (0 = off).", DefaultValueFactory = _ => 40 };
        var topP = new Option<float>("--top-p") { Description = "Top-p (1 = off).", DefaultValueFactory = _ => 0.95f };
        var minP = new Option<float>("--min-p") { Description = "Min-p (0 = off).", DefaultValueFactory = _ => 0.05f };
        var seed = new Option<ulong?>("--seed", "-s") { Description = "Random seed." };
        var threads = GenerationCommandSupport.ThreadsOption();
        var tokenizer = GenerationCommandSupport.TokenizerOption();
        var backend = GenerationCommandSupport.BackendOption();
        var kvBudget = GenerationCommandSupport.KvBudgetOption();
        var kvDisk = GenerationCommandSupport.KvDiskOption();
        var kvPolicy = GenerationCommandSupport.KvPolicyOption();
        var kvPolicyBudget = GenerationCommandSupport.KvPolicyBudgetOption();
        var kvPolicyBudgetTokens = GenerationCommandSupport.KvPolicyBudgetTokensOption();
        var memory = new Option<string?>("--memory") { Description = "Attend over the top-k chunks of this persistent memory (engine memory add; folder --memory-dir)." };
        var memoryDir = GenerationCommandSupport.MemoryDirOption();
        var ctx = new Option<int>("--ctx-size", "-c") { Description = "Context length (0 = the model's).", DefaultValueFactory = _ => 0 };

        var cmd = new Command("chat", "Interactive chat on stdin/stdout with the model's chat template.")
        {
            model, system, maxTokens, temperature, topK, topP, minP, seed, threads, backend, ctx, tokenizer, kvBudget, kvDisk, kvPolicy, kvPolicyBudget, kvPolicyBudgetTokens, memory, memoryDir,
        };
        cmd.SetAction((pr, ct) => GenerationCommandSupport.Guard(async () =>
        {
            var options = new GenerationOptions
            {
                MaxTokens = pr.GetValue(maxTokens),
                Sampling = GenerationCommandSupport.Sampling(pr.GetValue(temperature), pr.GetValue(topK), pr.GetValue(topP),
                    pr.GetValue(minP), 1f, pr.GetValue(seed)),
            };
            options.Validate();   // a bad sampling value fails before the model is loaded
            using var engine = GenerationCommandSupport.LoadEngine(pr.GetValue(model), pr.GetValue(backend)!, pr.GetValue(threads), pr.GetValue(ctx), pr.GetValue(tokenizer),
                GenerationCommandSupport.ParseBytes(pr.GetValue(kvBudget)), memory: pr.GetValue(memory), kvPolicy: GenerationCommandSupport.KvPolicyName(pr, kvPolicy, kvPolicyBudget), kvPolicyBudget: pr.GetValue(kvPolicyBudget), kvPolicyBudgetTokens: pr.GetValue(kvPolicyBudgetTokens), kvDiskBytes: GenerationCommandSupport.KvDiskBytes(pr.GetValue(kvDisk)),
                memoryDir: pr.GetValue(memoryDir));
            var history = new List<ChatMessage>();
            if (pr.GetValue(system) is { Length: > 0 } sys) history.Add(new ChatMessage("system", sys));
            int baseCount = history.Count;
            Console.Error.WriteLine("chat: type a message; /reset clears the conversation, /exit quits.");
            while (true)
            {
                ct.ThrowIfCancellationRequested();
                Console.Error.Write("> ");
                string? line = Console.In.ReadLine();
                if (line == null || line.Trim() == "/exit") break;
                if (line.Trim() == "/reset") { history.RemoveRange(baseCount, history.Count - baseCount); continue; }
                if (line.Length == 0) continue;
                history.Add(new ChatMessage("user", line));
                var reply = new System.Text.StringBuilder();
                try
                {
                    await foreach (var chunk in engine.GenerateAsync(history, options, ct))
                    {
                        Console.Out.Write(chunk.Text);
                        Console.Out.Flush();
                        reply.Append(chunk.Text);
                        if (chunk.Usage is { } u) { Console.Out.WriteLine(); GenerationCommandSupport.PrintUsage(u); GenerationCommandSupport.PrintKvPolicy(engine); }
                    }
                }
                catch (PromptTooLongException e)
                {
                    history.RemoveAt(history.Count - 1);
                    Console.Error.WriteLine($"error: {EngineErrors.Clean(e.Message)}; use /reset");
                    continue;
                }
                history.Add(new ChatMessage("assistant", reply.ToString().Trim()));
            }
            return 0;
        }));
        return cmd;
    }
}
