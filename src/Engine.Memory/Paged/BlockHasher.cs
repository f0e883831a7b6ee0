// Owns: the content hash that identifies a full KV block for automatic prefix caching.
// Invariants: hash(block i) = H(hash(block i-1), token ids of block i), with hash(block -1) = RootHash, so equal
// hashes stand for equal whole prefixes (up to collisions). The pool never trusts the hash alone: a hit is
// verified against the stored token ids and the exact parent block (see BlockPool.TryAcquireCached), so a
// collision costs a cache miss, never wrong KV.
// Algorithm: FNV-1a-style multiply/xor over 32-bit tokens into a 64-bit state seeded by the parent hash,
// finished with the xxHash64 avalanche (prime multiplies and xor-shifts). Stable across runs and platforms.
namespace Engine.Memory.Paged;

/// <summary>Chained block hash: <c>(parentHash, tokens of this block) → hash</c>.</summary>
public delegate ulong BlockHashFunction(ulong parentHash, ReadOnlySpan<int> tokens);

/// <summary>The default stable 64-bit chained block hash.</summary>
public static class BlockHasher
{
    /// <summary>The parent hash of a sequence's first block.</summary>
    public const ulong RootHash = 0xCBF29CE484222325UL; // FNV-1a 64 offset basis

    private const ulong FnvPrime = 0x00000100000001B3UL;
    private const ulong Prime2 = 0xC2B2AE3D27D4EB4FUL;  // xxHash64 PRIME64_2
    private const ulong Prime3 = 0x165667B19E3779F9UL;  // xxHash64 PRIME64_3

    /// <summary>Hash of one block given its parent's hash.</summary>
    public static ulong Hash(ulong parentHash, ReadOnlySpan<int> tokens)
    {
        ulong h = parentHash ^ ((ulong)tokens.Length * Prime2);
        foreach (int t in tokens)
        {
            uint u = (uint)t;
            // Four bytes, FNV-1a order, so every bit of every token reaches the state.
            h = (h ^ (u & 0xFF)) * FnvPrime;
            h = (h ^ ((u >> 8) & 0xFF)) * FnvPrime;
            h = (h ^ ((u >> 16) & 0xFF)) * FnvPrime;
            h = (h ^ (u >> 24)) * FnvPrime;
        }
        // xxHash64 avalanche.
        h ^= h >> 33;
        h *= Prime2;
        h ^= h >> 29;
        h *= Prime3;
        h ^= h >> 32;
        return h;
    }
}
