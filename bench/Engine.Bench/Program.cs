// Owns: the entry point of the BenchmarkDotNet micro-benchmarks (kernels of the CPU backend).
// `dotnet run -c Release --project bench/Engine.Bench -- --filter '*'` runs everything with BenchmarkDotNet's defaults;
// add `--quick` for a ShortRun job in-process (3 warm-up + 3 measured iterations, no per-benchmark project build), which
// finishes in minutes. Threads: ENGINE_BENCH_THREADS (default 2, the machine's core count for the reference table).
// `-- --depth` runs SelectionDepthBench (decode ms/step vs context depth per KV policy; see that file for its switches).
// `-- --ingest` runs IngestBench (prompt-ingest tokens/s vs prompt length per KV policy; see that file for its switches).
// `-- --pool-bytes` runs PoolBytesBench (pool bytes one served KV-policy request holds vs the full cache; see that file).
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using Engine.Bench;

if (args.Contains("--cpu-ab")) { CpuTimeAb.Run(); return; }
if (args.Contains("--cpu-ab-f16")) { F16GemvCpuAb.Run(); return; }
if (args.Contains("--depth")) { SelectionDepthBench.Run(args); return; }
if (args.Contains("--ingest")) { IngestBench.Run(args); return; }
if (args.Any(a => a.StartsWith("--pool-bytes"))) { PoolBytesBench.Run(args); return; }
if (args.Contains("--cpu-ab-paged")) { PagedCpuAb.Run(threads: args.Contains("--threads2") ? 2 : 1); return; }
if (args.Contains("--cpu-ab-f32walk")) { F32WalkCpuAb.Run(threads: args.Contains("--threads2") ? 2 : 1, contexts: args.Contains("--ctx1k") ? [1024] : args.Contains("--quick") ? [4096] : null); return; }
if (args.Contains("--cpu-ab-kvtier")) { KvTierCpuAb.Run(threads: args.Contains("--threads2") ? 2 : 1, bits: args.Contains("--bits256") ? 256 : 512, generic: args.Contains("--generic")); return; }
bool quick = args.Contains("--quick");
args = args.Where(a => a != "--quick").ToArray();
var config = DefaultConfig.Instance.AddColumn(new BandwidthColumn());
if (quick)
    config = config.AddJob(Job.ShortRun.WithToolchain(InProcessEmitToolchain.Instance).WithId("quick"))
        .WithOptions(ConfigOptions.DisableOptimizationsValidator);
BenchmarkSwitcher.FromAssembly(typeof(BandwidthColumn).Assembly).Run(args, config);
