// Owns: `engine run` — one-shot text generation streamed to stdout (diagnostics on stderr).
// Defaults: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, 256 new tokens; --temperature 0 = greedy.
using System.CommandLine;
using Engine.Runtime;

namespace Engine.Cli.Commands;

public static class RunCommand
{
    public static Command Create()
    {
        var model = GenerationCommandSupport.ModelOption();
        var prompt = new Option<string>("--prompt", "-p") { Description = "Prompt text (empty = generate from BOS alone).", DefaultValueFactory = _ => "" };
        var maxTokens = new Option<int>("--max-tokens", "-n") { Description = "Maximum new tokens.", DefaultValueFactory = _ => 256 };
        var temperature = new Option<float>("--temperature") { Description = "Sampling temperature; 0 = greedy (argmax).", DefaultValueFactory = _ => 0.8f };
        var topK = new Option<int>("--top-k") { Description = "Keep the K most likely tokens (0 = off).", DefaultValueFactory = _ => 40 };
        var topP = new Option<float>("--top-p") { Description = "Nucleus: smallest set with probability mass ≥ P (1 = off).", DefaultValueFactory = _ => 0.95f };
        var minP = new Option<float>("--min-p") { Description = "Drop tokens below MIN-P × the top probability (0 = off).", DefaultValueFactory = _ => 0.05f };
        var repeat = new Option<float>("--repeat-penalty") { Description = "Repetition penalty over the last 64 tokens (1 = off).", DefaultValueFactory = _ => 1f };
        var seed = new Option<ulong?>("--seed", "-s") { Description = "Random seed (same seed = same output). Default: random." };
        var threads = GenerationCommandSupport.ThreadsOption();
        var tokenizer = GenerationCommandSupport.TokenizerOption();
        var backend = GenerationCommandSupport.BackendOption();
        var kvBudget = GenerationCommandSupport.KvBudgetOption();
        var kvDisk = GenerationCommandSupport.KvDiskOption();
        var kvPolicy = GenerationCommandSupport.KvPolicyOption();
        var kvPolicyBudget = GenerationCommandSupport.KvPolicyBudgetOption();
        var kvPolicyBudgetTokens = GenerationCommandSupport.KvPolicyBudgetTokensOption();
        var ctx = new Option<int>("--ctx-size", "-c") { Description = "Context length (0 = the model's).", DefaultValueFactory = _ => 0 };
        var memory = new Option<string?>("--memory") { Description = "Attend over the top-k chunks of this persistent memory (engine memory add; folder --memory-dir)." };
        var memoryDir = GenerationCommandSupport.MemoryDirOption();

        var cmd = new Command("run", "Generate text from a prompt; only the generated text goes to stdout.")
        {
            model, prompt, maxTokens, temperature, topK, topP, minP, repeat, seed, threads, backend, ctx, tokenizer, kvBudget, kvDisk, memory, memoryDir, kvPolicy, kvPolicyBudget, kvPolicyBudgetTokens,
        };
        cmd.SetAction((pr, ct) => GenerationCommandSupport.Guard(async () =>
        {
            var options = new GenerationOptions
            {
                MaxTokens = pr.GetValue(maxTokens),
                Sampling = GenerationCommandSupport.Sampling(pr.GetValue(temperature), pr.GetValue(topK), pr.GetValue(topP),
                    pr.GetValue(minP), pr.GetValue(repeat), pr.GetValue(seed)),
            };
            options.Validate();   // a bad sampling value fails before the model is loaded
            using var engine = GenerationCommandSupport.LoadEngine(pr.GetValue(model), pr.GetValue(backend)!, pr.GetValue(threads), pr.GetValue(ctx), pr.GetValue(tokenizer),
                GenerationCommandSupport.ParseBytes(pr.GetValue(kvBudget)), pr.GetValue(memory), GenerationCommandSupport.KvPolicyName(pr, kvPolicy, kvPolicyBudget), pr.GetValue(kvPolicyBudget), pr.GetValue(kvPolicyBudgetTokens), kvDiskBytes: GenerationCommandSupport.KvDiskBytes(pr.GetValue(kvDisk)),
                memoryDir: pr.GetValue(memoryDir));
            var stdout = Console.Out;
            await foreach (var chunk in engine.GenerateAsync(pr.GetValue(prompt) ?? "", options, ct))
            {
                stdout.Write(chunk.Text);
                stdout.Flush();
                if (chunk.Usage is { } u) { stdout.WriteLine(); GenerationCommandSupport.PrintUsage(u); GenerationCommandSupport.PrintKvPolicy(engine); }
            }
            return 0;
        }));
        return cmd;
    }
}
