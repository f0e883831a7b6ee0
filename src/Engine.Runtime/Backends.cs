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

    private static IBackend CreateCpu(int threads) => new CpuBackend(threads);
}
