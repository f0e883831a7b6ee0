// Owns: a byte budget that several memory consumers (recurrent-state checkpoints, KV blocks) can draw from, so that
// "state checkpoints are counted against the same budget as KV blocks" is one shared counter.
// Invariants: 0 ≤ Used ≤ Capacity at all times; TryReserve either reserves all the bytes or none; thread-safe.
namespace Engine.Memory.Recurrent;

/// <summary>A shared, thread-safe byte budget.</summary>
public sealed class MemoryBudget
{
    private readonly Lock _lock = new();
    private long _used;

    public MemoryBudget(long capacityBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(capacityBytes);
        Capacity = capacityBytes;
    }

    public long Capacity { get; }
    public long Used { get { lock (_lock) return _used; } }
    public long Available { get { lock (_lock) return Capacity - _used; } }

    /// <summary>Reserves <paramref name="bytes"/> if they fit; false (and nothing reserved) otherwise.</summary>
    public bool TryReserve(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        lock (_lock)
        {
            if (_used + bytes > Capacity) return false;
            _used += bytes;
            return true;
        }
    }

    /// <summary>Returns <paramref name="bytes"/> reserved earlier.</summary>
    public void Release(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        lock (_lock)
        {
            if (bytes > _used) throw new InvalidOperationException($"releasing {bytes} bytes but only {_used} are reserved");
            _used -= bytes;
        }
    }
}
