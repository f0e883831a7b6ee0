// Owns: `-- --pool-bytes`: the pool bytes one served KV-policy request holds (issue 14: a policy on the serving path frees
// real memory, measured from the one pool), per policy at budget 0.25 against the full float32 cache.
//   stories260K (real model, served): an InferenceEngine on the paged path (2 sequences, so the policy runs in the serving
//     loop), one greedy request of a 256-token prompt generating to the end of the 512-token context; the bytes come from
//     the pool: the peak of the blocks in use after each step (Stats.BlocksInUse, polled) and the request's final
//     KvPolicyUsage (its pool blocks + its own int8/int4/summary arenas).
//   llama-1b shape (16 layers, 8 KV heads × 64 = kvDim 512), 16K context: a replay through the serving path's own memory
//     pieces — Scheduler (the pool) → PagedKvStore → PolicyKvRouter — with random K/V rows instead of a forward (a real
//     1B forward over 16K tokens takes far too long on this box): prefill in chunks of 512, then 64 single-token decode
//     steps; every layer writes and builds its pages each step, so eviction / demotion run as served. No attention runs, so
//     heavy-hitter scores are all zero (h2o / snapkv keep the budget's count of tokens, chosen by ties) and ARKV keeps its
//     default float32 share (0.5): the byte counts are the policies' own, not which tokens they keep. Pool bytes = the
//     request's table blocks × bytes per block after the last step (the executor's KeptSlots rule: float32 slots used, most
//     over layers, + own arena bytes in slot units), read from the scheduler's pool.
// Switches: `--pool-bytes` (both), `--pool-bytes-stories`, `--pool-bytes-1b`.
using System.Diagnostics;
using Engine.Memory.Paged;
using Engine.Memory.Policies;
using Engine.Runtime;
using Engine.Runtime.Sampling;
using Engine.Scheduling;

namespace Engine.Bench;

public static class PoolBytesBench
{
    private static readonly string[] Policies = ["full", "sinks", "h2o", "snapkv", "arkv", "int8", "kivi4", "quest"];
    private const double Budget = 0.25;

    public static void Run(string[] args)
    {
        bool stories = !args.Contains("--pool-bytes-1b"), big = !args.Contains("--pool-bytes-stories");
        if (stories) Stories();
        if (big) Replay("llama-1b", layers: 16, kvDim: 512, context: 16384);
    }

    private static string Root()
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d != null && !File.Exists(Path.Combine(d.FullName, "Engine.sln"))) d = d.Parent;
        return d?.FullName ?? throw new InvalidOperationException("run from the repository (Engine.sln not found above the binary)");
    }

    private static void Stories()
    {
        string model = Path.Combine(Root(), "models", "stories260K.gguf");
        Console.WriteLine($"stories260K served (paged, 2 sequences), prompt 256 + 255 generated = 511 positions, budget {Budget}");
        Console.WriteLine("| policy | peak pool bytes | final held bytes | full cache bytes | held / full |");
        Console.WriteLine("|---|---:|---:|---:|---:|");
        var rng = new Random(11);
        int[] prompt = [1, .. Enumerable.Range(0, 255).Select(_ => rng.Next(3, 512))];
        foreach (var policy in Policies)
        {
            using var e = InferenceEngine.Load(model, new EngineOptions
            {
                Threads = 2, KvPolicy = "full", MaxConcurrentSequences = 2, BlockSize = 16, PrefillChunk = 64,
            });
            var o = new GenerationOptions
            {
                Sampling = SamplingOptions.Greedy, StopAtEndOfGeneration = false, MaxTokens = 255,
                KvPolicy = policy, KvPolicyBudget = policy == "full" ? null : Budget,
            };
            long blockBytes = BlockPool.BytesPerBlock(e.Config.LayerCount, e.Config.KvHeadCount, e.Config.HeadDim, 16, sizeof(float));
            int peak = 0;
            var run = Task.Run(async () => await e.GenerateTextAsync(e.GenerateAsync(prompt, o)));
            while (!run.IsCompleted) { peak = Math.Max(peak, e.Stats.BlocksInUse); Thread.Sleep(0); }
            run.GetAwaiter().GetResult();
            var u = e.KvPolicyUsage!;
            Console.WriteLine($"| {policy} | {peak * blockBytes:N0} | {u.HeldBytes:N0} | {u.FullBytes:N0} | {u.HeldBytes / u.FullBytes:F3} |");
        }
    }

    private static void Replay(string shape, int layers, int kvDim, int context)
    {
        const int blockSize = 16, chunk = 512, decode = 64;
        int prompt = context - decode;
        long slotBytes = 2L * layers * kvDim * sizeof(float);
        long blockBytes = slotBytes * blockSize;
        Console.WriteLine($"{shape} shape ({layers} layers, kvDim {kvDim}), {context} positions: prefill {prompt} in chunks of {chunk} + {decode} decode steps, budget {Budget} (replay, random K/V)");
        Console.WriteLine("| policy | peak pool bytes | final pool bytes | own arena bytes | full cache bytes | final (pool + own) / full | s |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|");
        var rows = new float[chunk * kvDim];
        var rng = new Random(3);
        for (int i = 0; i < rows.Length; i++) rows[i] = (float)(rng.NextDouble() * 2 - 1);
        int[] positions = new int[chunk];
        using var cpu = new Engine.Kernels.CpuBackend(1);
        foreach (var name in Policies)
        {
            var sw = Stopwatch.StartNew();
            var spec = KvPolicySpec.Parse(name, name == "full" ? 1.0 : Budget, null);
            int blocks = context / blockSize + 2;
            var scheduler = new Scheduler(new SchedulerOptions
            {
                BlockCount = blocks, BlockSize = blockSize, MaxTokensPerStep = chunk, MaxRunningRequests = 1, MaxModelLength = context + 1,
            });
            using var paged = new PagedKvStore(layers, kvDim, blockSize, blocks, context, 1);
            using var router = new PolicyKvRouter(paged, new PolicyBackend(cpu), 1, blockSize);
            bool packs = PolicyKvRouter.Packs(spec);
            scheduler.AddRequest(new Request(1, new int[prompt], decode + 1));
            long peak = 0, final = 0, own = 0;
            while (scheduler.HasUnfinishedRequests)
            {
                var plan = scheduler.Step();
                var r = plan.Requests.Single();
                paged.Bind(0, r.BlockTable, packs ? r.BlockTable.Length * blockSize : r.StartPosition);
                router.Route(0, spec, 0);
                int n = r.TokenCount;
                for (int i = 0; i < n; i++) positions[i] = r.StartPosition + i;
                for (int l = 0; l < layers; l++)
                {
                    router.Write(l, 0, positions.AsSpan(0, n), rows.AsSpan(0, n * kvDim), rows.AsSpan(0, n * kvDim));
                    router.Pages(l, 0);
                }
                var store = router.StoreFor(spec);
                own = store.OwnBytes(0);
                int kept = packs ? store.SlotsUsed(0) + (int)((own + slotBytes - 1) / slotBytes) : -1;
                scheduler.OnStepCompleted([new StepResult(1, r.SamplesToken ? 5 : null, KeptSlots: kept)]);
                if (scheduler.HasUnfinishedRequests)
                {
                    final = (long)scheduler.Blocks.Get(1).Blocks.Count * blockBytes;
                    peak = Math.Max(peak, final);
                }
            }
            scheduler.Validate();
            long full = (long)context * slotBytes;
            // own arenas are charged inside the pool's blocks for packing policies; pass-through ones hold them on top
            double total = packs ? final : final + own;
            Console.WriteLine($"| {name} | {peak:N0} | {final:N0} | {own:N0} | {full:N0} | {total / full:F3} | {sw.Elapsed.TotalSeconds:F1} |");
        }
    }
}
