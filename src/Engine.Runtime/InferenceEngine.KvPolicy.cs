// Owns: per-request KV policy selection (GenerationOptions.KvPolicy / KvPolicyBudget).
// Rules: only an engine loaded with EngineOptions.KvPolicy (its model runs over a PolicyBackend) and no other KV decorator
// can take one; a request without a policy uses the engine's. Paged path: each request simply carries its spec into the
// serving loop (PolicyKvRouter; requests with different policies batch together). Single-sequence path: switching replaces the PolicyKvStore over the same float32
// inner store and drops the cached prefix (the kept/quantized layout of the old policy does not carry over); a request
// with the current policy keeps the prefix. Runs under the generation gate, so no forward sees a half-switched store.
using Engine.Memory.Policies;

namespace Engine.Runtime;

public sealed partial class InferenceEngine
{
    private KvPolicySpec? _enginePolicy;   // EngineOptions.KvPolicy as parsed by Load (null = none)

    /// <summary>The policy <paramref name="o"/> asks for (null = the engine's, or none); throws KvPolicyException on a bad
    /// spec and ArgumentException when this engine cannot switch policies.</summary>
    private KvPolicySpec? RequestPolicy(GenerationOptions o)
    {
        if (o.KvPolicy == null && o.KvPolicyBudget == null) return null;
        bool single = _policyBackend?.Store is { } s && ReferenceEquals(_kv, s);
        if (_enginePolicy == null || !(single || _serving?.HasPolicies == true))
            throw new ArgumentException("a per-request KV policy needs an engine loaded with EngineOptions.KvPolicy (e.g. \"full\") "
                + "and no other KV store decorator");
        return KvPolicySpec.Parse(o.KvPolicy ?? _enginePolicy.Name, o.KvPolicyBudget ?? _enginePolicy.Budget, _enginePolicy.TokenBudget);
    }

    /// <summary>Makes the engine's store carry the request's policy (or the engine's), switching stores if it differs.</summary>
    private void ApplyRequestPolicy(GenerationOptions o)
    {
        if (_enginePolicy == null || _policyBackend?.Store is not { } current || !ReferenceEquals(_kv, current)) return;
        var wanted = RequestPolicy(o) ?? _enginePolicy;
        if (wanted == current.Spec) return;
        current.Clear(SeqId);   // frees the old policy's per-sequence state and empties the shared inner store
        _cached.Clear();
        var next = new PolicyKvStore(current.Inner, wanted);   // the old wrapper is dropped undisposed: it would dispose the inner store
        _policyBackend.Store = next;
        _kv = next;
    }
}
