// Owns: the assembly attributes of Engine.Runtime — test projects see its internal test hooks (InferenceEngine.PauseServing,
// ValidateKvPool, EvictPrefixCache), which are not public API.
using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("Engine.Runtime.Tests")]
[assembly: InternalsVisibleTo("Engine.Recurrent.Tests")]
[assembly: InternalsVisibleTo("Engine.Server.Tests")]
