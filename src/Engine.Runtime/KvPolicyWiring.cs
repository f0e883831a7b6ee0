// Owns: wiring a KV memory policy (EngineOptions.KvPolicy, `--kv-policy`) into an engine being loaded: parse + validate the
// spec before any model work, build the model over a PolicyBackend (so the policy store sees each attention query), and
// return the KV-store decorator that wraps the engine's contiguous store in a PolicyKvStore and attaches it to that backend.
// Rules: the policy is chosen per engine here; a request may override it (GenerationOptions.KvPolicy, see
// InferenceEngine.KvPolicy.cs) on an engine loaded with one. On the paged path (the default) policy requests run batched in
// the serving loop (PolicyKvRouter over the paged store, no decorator); with Paged = false the Decorator below wraps the
// single-sequence store. Transformer models only; not combined with EngineOptions.Memory in this version (clear error).
// Null or empty KvPolicy = no policy layer at all; "full" = the policy layer with full retention (keeps everything, so the
// output equals the plain engine's — a check of the wiring).
using Engine.Kernels;
using Engine.Memory;
using Engine.Memory.Policies;

namespace Engine.Runtime;

/// <summary>What a KV policy store holds at a point in time, summed over layers for sequence 0.</summary>
/// <param name="Policy">The spec's name, e.g. "sinks" or "arkv+quest".</param>
/// <param name="Budget">The spec's budget fraction.</param>
/// <param name="Tokens">Cached tokens (positions) of the sequence.</param>
/// <param name="HeldBytes">Bytes the policy store has allocated for K/V (kept tokens' rows at their precision, in row blocks,
/// + selection summaries), all layers — PolicyKvStore.HeldBytes: evicted and quantized tokens' float32 rows are freed. On the
/// paged serving path an evicting / quantizing policy's float32 rows are counted as the pool blocks the request holds.</param>
/// <param name="FullBytes">Bytes a float32 cache of the same tokens holds, all layers.</param>
public sealed record KvPolicyUsage(string Policy, double Budget, int Tokens, double HeldBytes, double FullBytes)
{
    /// <summary>Held bytes per cached token (all layers, K + V).</summary>
    public double HeldBytesPerToken => Tokens > 0 ? HeldBytes / Tokens : 0;
    /// <summary>Float32 bytes per cached token (all layers, K + V).</summary>
    public double FullBytesPerToken => Tokens > 0 ? FullBytes / Tokens : 0;
}

internal static class KvPolicyWiring
{
    /// <summary>Default KvPolicyBudget: a quarter of the sequence (the middle of `engine eval`'s default sweep).</summary>
    public const double DefaultBudget = 0.25;

    /// <summary>Parses options.KvPolicy (null when none is set); throws KvPolicyException on a bad name, combination or budget,
    /// and ArgumentException on a combination the runtime does not support.</summary>
    public static KvPolicySpec? Parse(EngineOptions options)
    {
        if (string.IsNullOrWhiteSpace(options.KvPolicy)) return null;
        var spec = KvPolicySpec.Parse(options.KvPolicy, options.KvPolicyBudget, options.KvPolicyBudgetTokens);
        if (options.Memory != null)
            throw new ArgumentException($"KV policy '{spec.Name}' cannot be combined with a persistent memory (--memory) in this version; use one or the other");
        return spec;
    }

    /// <summary>Checks the model can carry the policy and returns the decorator that wraps its KV store (and attaches the
    /// policy store to <paramref name="backend"/>), composed inside <paramref name="inner"/>'s decorator if any.</summary>
    public static Func<IKvStore, IKvStore> Decorator(KvPolicySpec spec, Engine.Model.ILanguageModel model, PolicyBackend backend,
        Func<IKvStore, IKvStore>? inner)
    {
        if (model is not Engine.Model.TransformerModel)
            throw new NotSupportedException($"KV policy '{spec.Name}' applies to transformer models; {model.Config.Architecture} keeps a recurrent state, not a KV cache");
        return kv =>
        {
            var store = new PolicyKvStore(kv, spec);
            backend.Store = store;
            return inner?.Invoke(store) ?? store;
        };
    }

    /// <summary>What <paramref name="store"/> holds for sequence <paramref name="seqId"/> now.</summary>
    public static KvPolicyUsage Usage(PolicyKvStore store, int seqId)
    {
        double held = 0, full = 0;
        int tokens = 0;
        for (int l = 0; l < store.LayerCount; l++)
        {
            int len = store.Length(l, seqId);
            tokens = Math.Max(tokens, len);
            held += store.HeldBytes(l, seqId);
            full += len * KvDecode.BytesPerToken(KvElementType.F32, store.KvDim, store.Spec.BlockSize);
        }
        return new KvPolicyUsage(store.Spec.Name, store.Spec.Budget, tokens, held, full);
    }
}
