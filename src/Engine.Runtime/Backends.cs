// Owns: mapping a backend name ("cpu", "reference") to an IBackend instance.
using Engine.Kernels;

namespace Engine.Runtime;

public static class Backends
{
    public static IReadOnlyList<string> Names { get; } = ["cpu", "reference"];

    /// <summary>Creates the backend <paramref name="name"/>; <paramref name="threads"/> ≤ 0 = all cores.</summary>
    public static IBackend Create(string name, int threads = 0) => name.ToLowerInvariant() switch
    {
        "reference" => new ReferenceBackend(),
        "cpu" => CreateCpu(threads),
        _ => throw new ArgumentException($"unknown backend '{name}' (known: {string.Join(", ", Names)})", nameof(name)),
    };

    // more threads than cores only slow a compute-bound engine (the issue-13 probe: 1000 threads, first token 50×
    // slower), so the API caps them at the core count; negative values are refused by OptionsValidation first.
    private static IBackend CreateCpu(int threads) => threads < 0
        ? throw new ArgumentException($"threads = {threads} is out of range; allowed: 0 (all cores) .. {OptionsValidation.MaxThreads}")
        : new CpuBackend(OptionsValidation.EffectiveThreads(threads));
}
