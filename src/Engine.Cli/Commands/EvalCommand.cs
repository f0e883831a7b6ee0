// Owns: `engine eval` — the KV-policy quality table (policy × budget → KLD vs full cache, top-1 agreement, bytes of KV
// held per token, decode tokens/s) over a fixed text, and the planted-needle retrieval test (--needle). Logic lives in
// Engine.Evaluation (EvalSession); this file parses options and prints (table to stdout, --json one object per line).
using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Engine.Runtime.Evaluation;

namespace Engine.Cli.Commands;

public static class EvalCommand
{
    public static Command Create()
    {
        var model = GenerationCommandSupport.ModelOption();
        var text = new Option<string?>("--text") { Description = "Text file to evaluate on (default: the built-in ≥ 512-token story)." };
        var policy = new Option<string>("--policy") { Description = "Comma-separated KV policies (e.g. sinks,h2o,arkv+quest).", DefaultValueFactory = _ => "full,sinks,h2o,snapkv,arkv,quest,msa,int8,kivi4" };
        var budget = new Option<string>("--budget") { Description = "Comma-separated budgets in (0, 1]: fractions of the full float32 cache's bytes for mix2/mix3/mix4/auto, of the context's tokens for the other policies.", DefaultValueFactory = _ => "0.1,0.25,0.5" };
        var prefill = new Option<int>("--prefill") { Description = "Tokens processed as one prompt batch before teacher-forced decoding (0 = a quarter of the text, at most 128).", DefaultValueFactory = _ => 0 };
        var json = new Option<bool>("--json") { Description = "One JSON object per line." };
        var needle = new Option<bool>("--needle") { Description = "Run the planted-needle retrieval test instead." };
        var context = new Option<int>("--context") { Description = "Needle test context length in tokens.", DefaultValueFactory = _ => 16384 };
        var disk = new Option<bool>("--disk") { Description = "Needle test: keep K/V rows in a memory-mapped file (disk tier)." };
        var trials = new Option<int>("--trials") { Description = "Needle trials (needle depths spread over the context).", DefaultValueFactory = _ => 5 };
        var budgetTokens = GenerationCommandSupport.KvPolicyBudgetTokensOption("--policy");
        var backend = GenerationCommandSupport.BackendOption();
        var threads = GenerationCommandSupport.ThreadsOption();
        var cmd = new Command("eval", "Compare KV memory policies with the full cache (quality, memory, speed), or run the needle test.")
        {
            model, text, policy, budget, prefill, json, needle, context, trials, disk, backend, threads, budgetTokens,
        };
        cmd.SetAction((pr, ct) => GenerationCommandSupport.Guard(() =>
        {
            GenerationCommandSupport.WarnThreads(pr.GetValue(threads));
            var budgets = pr.GetValue(budget)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(b => double.TryParse(b, NumberStyles.Float, CultureInfo.InvariantCulture, out double x) ? x : throw new ArgumentException($"--budget: '{b}' is not a number"))
                .ToArray();
            var policies = pr.GetValue(policy)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            // validate every combination before running anything
            int? bt = pr.GetValue(budgetTokens);
            foreach (var pol in policies) foreach (double b in budgets) EvalSession.Validate(pol, b, bt);
            bool asJson = pr.GetValue(json);
            using var session = EvalSession.Open(pr.GetValue(backend)!, pr.GetValue(threads));
            if (pr.GetValue(needle))
            {
                if (!asJson) Console.WriteLine($"{"policy",-14} {"budget",6} {"context",9} {"retrieved",9} {"seconds",8} {"decode ms",10}");
                foreach (var pol in policies)
                    foreach (double b in budgets)
                    {
                        ct.ThrowIfCancellationRequested();
                        var r = session.Needle(pol, b, bt, pr.GetValue(context), pr.GetValue(trials), pr.GetValue(disk));
                        if (asJson) Console.WriteLine(JsonSerializer.Serialize(new { policy = r.Policy, budget = r.Budget, context = r.Context, trials = r.Trials, retrieved = r.Retrieved, seconds = Math.Round(r.Seconds, 3), decode_ms = Math.Round(r.DecodeMs, 3), peak_held_mib = Math.Round(r.PeakHeldBytes / 1048576.0, 1) }));
                        else Console.WriteLine($"{r.Policy,-14} {r.Budget,6:0.###} {r.Context,9} {r.Retrieved,9:P0} {r.Seconds,8:F2} {r.DecodeMs,10:F3}");
                    }
                return Task.FromResult(0);
            }

            string path = GenerationCommandSupport.ResolveModel(pr.GetValue(model));
            string body = pr.GetValue(text) is { } tf ? File.ReadAllText(tf) : KvEvaluator.DefaultText();
            using var ev = session.OpenText(path, body, pr.GetValue(prefill));
            Console.Error.WriteLine($"eval: {Path.GetFileName(path)}, {ev.Tokens} tokens ({ev.Prefill} prefill + {ev.Steps} teacher-forced decode steps), backend {session.BackendName}");
            var rows = new List<KvEvalResult> { ev.Full() };
            foreach (var pol in policies)
            {
                bool budgetFree = EvalSession.IsBudgetFree(pol);
                foreach (double b in budgetFree ? [1.0] : budgets)
                {
                    ct.ThrowIfCancellationRequested();
                    var r = ev.Evaluate(pol, b, bt);
                    rows.Add(r);
                    if (asJson) Console.WriteLine(JsonSerializer.Serialize(new
                    {
                        model = Path.GetFileName(path), policy = r.Policy, budget = r.Budget, tokens = r.Tokens, steps = r.Steps,
                        kld_mean = r.KldMean, top1 = r.Top1, bytes_per_token = Math.Round(r.BytesPerToken, 1),
                        full_bytes_per_token = r.FullBytesPerToken, held_fraction = Math.Round(r.HeldFraction, 4), bytes_read_per_step = Math.Round(r.BytesReadPerStep), read_fraction = Math.Round(r.ReadFraction, 4), tokens_per_s = Math.Round(r.TokensPerSecond, 1),
                    }));
                }
            }
            if (!asJson)
            {
                Console.WriteLine($"{"policy",-14} {"budget",6} {"KLD mean",10} {"top-1",7} {"bytes/tok",10} {"held",6} {"read B/step",11} {"read",6} {"tok/s",9}");
                foreach (var r in rows)
                    Console.WriteLine($"{r.Policy,-14} {r.Budget,6:0.###} {r.KldMean,10:0.00000} {r.Top1,7:0.000} {r.BytesPerToken,10:0.0} {r.HeldFraction,6:0.000} {r.BytesReadPerStep,11:0} {r.ReadFraction,6:0.00} {r.TokensPerSecond,9:0}");
            }
            return Task.FromResult(0);
        }));
        return cmd;
    }
}
