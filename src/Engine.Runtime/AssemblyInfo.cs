// Owns: the assembly attributes of Engine.Runtime — test projects see its internal test hooks (InferenceEngine.PauseServing,
// ValidateKvPool, EvictPrefixCache), which are not public API; so does Engine.Evaluation (the benchmarks).
using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("Engine.Runtime.Tests")]
[assembly: InternalsVisibleTo("Engine.Recurrent.Tests")]
[assembly: InternalsVisibleTo("Engine.Server.Tests")]
// The benchmark runner (engine bench-parallel) evicts the prefix cache between cold runs through the same hook.
[assembly: InternalsVisibleTo("Engine.Evaluation")]
