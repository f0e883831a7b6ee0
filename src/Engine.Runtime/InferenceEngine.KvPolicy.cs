// Owns: per-request KV policy selection (GenerationOptions.KvPolicy / KvPolicyBudget).
// Rules: only an engine loaded with EngineOptions.KvPolicy (its model runs over a PolicyBackend) and no other KV decorator
// can take one; a request without a policy uses the engine's. Each request carries its spec into the step loop: the paged
// executor batches requests with different policies (PolicyKvRouter); the single-sequence store adapter
// (ContiguousKvExecutor) switches its PolicyKvStore when a request's policy differs, dropping the cached prefix.
using Engine.Memory.Policies;
using Engine.Runtime.Serving;

namespace Engine.Runtime;

public sealed partial class InferenceEngine
{
    private readonly KvPolicySpec? _enginePolicy;   // EngineOptions.KvPolicy as parsed by Load (null = none)

    /// <summary>The policy <paramref name="o"/> asks for (null = the engine's, or none); throws KvPolicyException on a bad
    /// spec and ArgumentException when this engine cannot switch policies.</summary>
    private KvPolicySpec? RequestPolicy(GenerationOptions o)
    {
        if (o.KvPolicy == null && o.KvPolicyBudget == null) return null;
        bool canSwitch = _serving.Executor is ContiguousKvExecutor { CanSwitchPolicy: true } or PagedKvExecutor { HasPolicies: true };
        if (_enginePolicy == null || !canSwitch)
            throw new ArgumentException("a per-request KV policy needs an engine loaded with EngineOptions.KvPolicy (e.g. \"full\") "
                + "and no other KV store decorator");
        return KvPolicySpec.Parse(o.KvPolicy ?? _enginePolicy.Name, o.KvPolicyBudget ?? _enginePolicy.Budget, _enginePolicy.TokenBudget);
    }
}
