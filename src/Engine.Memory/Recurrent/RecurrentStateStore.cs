// Owns: the per-sequence memory of recurrent models (RWKV): one fixed-size live state per sequence, the token history
// that produced it, and checkpoints (state snapshots keyed by the exact token prefix) used for prefix reuse,
// rollback / fork and offload to a disk tier.
// Invariants:
//   - State(seq) is the model state after consuming exactly History(seq) from the initial (all-zero) state.
//   - A checkpoint holds the state after exactly its Tokens; it is found by prefix hash and confirmed by comparing
//     the token ids, so a hash collision can never restore a wrong state.
//   - Checkpoints are taken automatically whenever a sequence's length reaches a multiple of CheckpointInterval
//     (the model splits its chunks there, see MaxTokensBeforeCheckpoint), and explicitly via SaveCheckpoint.
//   - Memory-tier checkpoint bytes are reserved in the MemoryBudget (shared with other consumers, e.g. KV blocks);
//     when a new checkpoint does not fit, the least recently used ones move to the disk file (if configured) or are
//     dropped. Live sequence states are reserved in the budget too (fixed StateBytes each while the sequence exists).
//   - Disk-tier checkpoints are reloaded transparently (bit-exact) when restored; each disk copy carries an XxHash64
//     checked on reload (a changed or damaged file → InvalidDataException naming the checkpoint, never a wrong state).
//     A disk write that fails (full disk) is rolled back (the file is cut to its previous length); evicting then drops
//     the checkpoint instead (it is a cache), an explicit Offload rethrows. The disk file is deleted on Dispose.
// Implements IKvStore so a recurrent model fits the runtime's ILanguageModel.Forward(batch, IKvStore, ...) unchanged:
// Write / Pages are not supported (no attention K/V); Truncate rewinds to a checkpoint at exactly that length.
using System.Runtime.InteropServices;
using Engine.Kernels;

namespace Engine.Memory.Recurrent;

/// <summary>Settings of a <see cref="RecurrentStateStore"/>.</summary>
public sealed record RecurrentStoreOptions
{
    /// <summary>A checkpoint every this many tokens of a sequence (0 = only explicit checkpoints).</summary>
    public int CheckpointInterval { get; init; } = 64;
    /// <summary>Budget for live states + memory-tier checkpoints when no shared <see cref="Budget"/> is given.</summary>
    public long MemoryBudgetBytes { get; init; } = 64L << 20;
    /// <summary>A budget shared with other memory consumers; overrides <see cref="MemoryBudgetBytes"/>.</summary>
    public MemoryBudget? Budget { get; init; }
    /// <summary>File for the disk tier (created/overwritten); null = evicted checkpoints are dropped.</summary>
    public string? DiskPath { get; init; }
}

/// <summary>Counters of a <see cref="RecurrentStateStore"/>.</summary>
public sealed class RecurrentStoreStats
{
    public long CheckpointsSaved { get; internal set; }
    public long PrefixHits { get; internal set; }
    public long TokensRestored { get; internal set; }
    public long Rollbacks { get; internal set; }
    public long Forks { get; internal set; }
    public long Offloaded { get; internal set; }
    public long Reloaded { get; internal set; }
    public long Dropped { get; internal set; }
}

/// <summary>A saved state: the state after consuming exactly <see cref="Tokens"/>.</summary>
public sealed class RecurrentCheckpoint
{
    internal RecurrentCheckpoint(int[] tokens, ulong hash) { Tokens = tokens; Hash = hash; }

    public int[] Tokens { get; }
    public int Length => Tokens.Length;
    internal ulong Hash { get; }
    internal float[]? Data;          // [StateFloats] when in memory
    internal long DiskOffset = -1;   // byte offset in the disk file when a disk copy exists
    internal ulong DiskSum;          // XxHash64 of the disk copy
    internal long LastUse;
    public bool InMemory => Data != null;
    public bool OnDisk => DiskOffset >= 0;
}

/// <summary>Live states, histories and checkpoints of recurrent sequences.</summary>
public sealed class RecurrentStateStore : IKvStore
{
    private readonly float[][] _states;              // [seq][StateFloats]
    private readonly List<int>[] _history;           // [seq] tokens consumed
    private readonly bool[] _reserved;               // [seq] live state bytes reserved in the budget
    private readonly object?[] _attachments;         // [seq] model-specific per-sequence extras (e.g. Memory Caching segments)
    private readonly Dictionary<ulong, List<RecurrentCheckpoint>> _byHash = new();
    private readonly List<RecurrentCheckpoint> _all = new();
    private readonly MemoryBudget _budget;
    private FileStream? _disk;
    private long _tick;

    public RecurrentStateStore(int layerCount, int floatsPerLayer, RecurrentStoreOptions? options = null, int sequenceCapacity = 1)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(layerCount);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(floatsPerLayer);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(sequenceCapacity);
        Options = options ?? new RecurrentStoreOptions();
        if (Options.CheckpointInterval < 0) throw new ArgumentOutOfRangeException(nameof(options), "CheckpointInterval must be ≥ 0");
        LayerCount = layerCount; FloatsPerLayer = floatsPerLayer; SequenceCapacity = sequenceCapacity;
        StateFloats = checked(layerCount * floatsPerLayer);
        _budget = Options.Budget ?? new MemoryBudget(Options.MemoryBudgetBytes);
        _states = new float[sequenceCapacity][];
        _history = new List<int>[sequenceCapacity];
        _reserved = new bool[sequenceCapacity];
        _attachments = new object?[sequenceCapacity];
        for (int s = 0; s < sequenceCapacity; s++) { _states[s] = new float[StateFloats]; _history[s] = new List<int>(); }
    }

    public RecurrentStoreOptions Options { get; }
    public RecurrentStoreStats Stats { get; } = new();
    public int LayerCount { get; }
    /// <summary>Floats of state per layer (the IKvStore "row width" of this store).</summary>
    public int FloatsPerLayer { get; }
    public int StateFloats { get; }
    public long StateBytes => StateFloats * 4L;
    public int KvDim => FloatsPerLayer;
    /// <summary>A recurrent state has no positional capacity limit.</summary>
    public int Capacity => int.MaxValue;
    public int SequenceCapacity { get; }
    public MemoryBudget Budget => _budget;
    public IReadOnlyList<RecurrentCheckpoint> Checkpoints => _all;
    public long CheckpointBytesInMemory { get { long b = 0; foreach (var c in _all) if (c.InMemory) b += StateBytes; return b; } }
    public long CheckpointBytesOnDisk { get { long b = 0; foreach (var c in _all) if (c.OnDisk && !c.InMemory) b += StateBytes; return b; } }

    /// <summary>The live state of <paramref name="seqId"/>: [LayerCount, FloatsPerLayer]; the model reads and updates it in place.</summary>
    public Span<float> State(int seqId) { Reserve(seqId); return _states[Check(seqId)]; }

    /// <summary>A model-specific object that lives with the sequence (reset by Clear / Restore / Fork; not counted in
    /// the budget). Used by the experimental Memory Caching read mode to keep its cached segment states.</summary>
    public object? GetAttachment(int seqId) => _attachments[Check(seqId)];
    public void SetAttachment(int seqId, object? value) => _attachments[Check(seqId)] = value;

    /// <summary>Tokens consumed by <paramref name="seqId"/> so far.</summary>
    public ReadOnlySpan<int> History(int seqId) => CollectionsMarshal.AsSpan(_history[Check(seqId)]);

    public int Length(int layer, int seqId) => _history[Check(seqId)].Count;
    public int Length(int seqId) => _history[Check(seqId)].Count;

    /// <summary>How many more tokens <paramref name="seqId"/> may consume before its next automatic checkpoint.</summary>
    public int MaxTokensBeforeCheckpoint(int seqId)
    {
        int n = Options.CheckpointInterval;
        return n <= 0 ? int.MaxValue : n - Length(seqId) % n;
    }

    /// <summary>Called by the model after State(seq) consumed <paramref name="tokens"/>: appends them to the
    /// history and takes the automatic checkpoint when the length reaches a multiple of the interval.</summary>
    public void Advance(int seqId, ReadOnlySpan<int> tokens)
    {
        var h = _history[Check(seqId)];
        int before = h.Count, n = Options.CheckpointInterval;
        if (n > 0 && before / n != (before + tokens.Length) / n && (before + tokens.Length) % n != 0)
            throw new ArgumentException($"a chunk of {tokens.Length} tokens from length {before} crosses a checkpoint boundary (interval {n}); split it (MaxTokensBeforeCheckpoint)");
        foreach (int t in tokens) h.Add(t);
        if (n > 0 && h.Count % n == 0 && tokens.Length > 0) SaveCheckpoint(seqId);
    }

    /// <summary>Snapshots the current state of <paramref name="seqId"/> (deduplicated by exact token prefix).</summary>
    public RecurrentCheckpoint SaveCheckpoint(int seqId)
    {
        var h = History(seqId);
        ulong hash = PrefixHash(h);
        var existing = Find(hash, h);
        if (existing != null) { existing.LastUse = ++_tick; return existing; }
        var cp = new RecurrentCheckpoint(h.ToArray(), hash) { LastUse = ++_tick };
        MakeRoom();
        if (_budget.TryReserve(StateBytes)) cp.Data = (float[])_states[seqId].Clone();
        else if (Options.DiskPath != null) WriteToDisk(cp, _states[seqId]);
        else { Stats.Dropped++; return cp; } // no room anywhere: the checkpoint is not kept
        if (!_byHash.TryGetValue(hash, out var list)) _byHash[hash] = list = new List<RecurrentCheckpoint>(1);
        list.Add(cp);
        _all.Add(cp);
        Stats.CheckpointsSaved++;
        return cp;
    }

    /// <summary>
    /// Prefix reuse: restores into <paramref name="seqId"/> the longest checkpoint whose tokens are a prefix of
    /// <paramref name="prompt"/> and no longer than <paramref name="maxLength"/> (pass prompt.Length - 1 to keep at
    /// least one token to compute logits from). Returns the restored length; 0 means the sequence was reset.
    /// </summary>
    public int RestoreLongestPrefix(int seqId, ReadOnlySpan<int> prompt, int maxLength)
    {
        Check(seqId);
        maxLength = Math.Min(maxLength, prompt.Length);
        RecurrentCheckpoint? best = null;
        ulong hash = HashSeed;
        for (int len = 1; len <= maxLength; len++)
        {
            hash = HashStep(hash, prompt[len - 1]);
            var cp = Find(hash, prompt[..len]);
            if (cp != null) best = cp;
        }
        if (best == null) { Clear(seqId); return 0; }
        Restore(seqId, best);
        Stats.PrefixHits++;
        Stats.TokensRestored += best.Length;
        return best.Length;
    }

    /// <summary>Loads <paramref name="checkpoint"/> into <paramref name="seqId"/> (state and history).</summary>
    public void Restore(int seqId, RecurrentCheckpoint checkpoint)
    {
        Check(seqId);
        Reserve(seqId);
        var data = Load(checkpoint);
        data.CopyTo(_states[seqId], 0);
        _attachments[seqId] = null;
        var h = _history[seqId];
        h.Clear();
        h.AddRange(checkpoint.Tokens);
        checkpoint.LastUse = ++_tick;
    }

    /// <summary>
    /// Rollback: rewinds <paramref name="seqId"/> to the nearest checkpoint of its own history at or before
    /// <paramref name="length"/>. Returns the restored length r ≤ length; the caller recomputes History[r..length)
    /// (captured before the call) to reach exactly <paramref name="length"/>.
    /// </summary>
    public int Rollback(int seqId, int length)
    {
        var h = History(seqId);
        if (length >= h.Length) return h.Length;
        Stats.Rollbacks++;
        var tokens = h[..length].ToArray();
        int restored = RestoreLongestPrefix(seqId, tokens, length);
        Stats.PrefixHits -= restored > 0 ? 1 : 0; // a rollback is not a prefix hit of a new request
        Stats.TokensRestored -= restored;
        return restored;
    }

    /// <summary>Branching: <paramref name="dstSeq"/> becomes a copy of <paramref name="srcSeq"/> (state and history).</summary>
    public void Fork(int srcSeq, int dstSeq)
    {
        Check(srcSeq); Check(dstSeq);
        if (srcSeq == dstSeq) return;
        Reserve(dstSeq);
        _states[srcSeq].CopyTo(_states[dstSeq], 0);
        _history[dstSeq].Clear();
        _history[dstSeq].AddRange(_history[srcSeq]);
        _attachments[dstSeq] = null;
        Stats.Forks++;
    }

    /// <summary>Moves every memory-tier checkpoint to the disk file (requires DiskPath) and frees its budget.</summary>
    public void OffloadAll()
    {
        foreach (var cp in _all) if (cp.InMemory) Offload(cp);
    }

    /// <summary>Moves one checkpoint to the disk tier.</summary>
    public void Offload(RecurrentCheckpoint cp)
    {
        if (Options.DiskPath == null) throw new InvalidOperationException("no disk tier configured (RecurrentStoreOptions.DiskPath)");
        if (cp.Data == null) return;
        if (!cp.OnDisk) WriteToDisk(cp, cp.Data);
        cp.Data = null;
        _budget.Release(StateBytes);
        Stats.Offloaded++;
    }

    /// <summary>Drops positions ≥ <paramref name="length"/>: exact only when a checkpoint at that length of this
    /// history exists (or length is 0); otherwise use <see cref="Rollback"/> and recompute.</summary>
    public void Truncate(int seqId, int length)
    {
        int len = Length(seqId);
        if (length >= len) return;
        if (length <= 0) { Clear(seqId); return; }
        var tokens = History(seqId)[..length].ToArray();
        var cp = Find(PrefixHash(tokens), tokens)
            ?? throw new InvalidOperationException($"no checkpoint at length {length} of sequence {seqId}; a recurrent state cannot be truncated there (use Rollback and recompute)");
        Restore(seqId, cp);
    }

    /// <summary>Resets <paramref name="seqId"/> to the initial state (checkpoints are kept for reuse).</summary>
    public void Clear(int seqId)
    {
        Array.Clear(_states[Check(seqId)]);
        _history[seqId].Clear();
        _attachments[seqId] = null;
    }

    /// <summary>Ends the sequence: resets it and returns its live-state bytes to the budget.</summary>
    public void Release(int seqId)
    {
        Clear(seqId);
        if (_reserved[seqId]) { _budget.Release(StateBytes); _reserved[seqId] = false; }
    }

    public void Write(int layer, int seqId, ReadOnlySpan<int> positions, ReadOnlySpan<float> k, ReadOnlySpan<float> v) =>
        throw new NotSupportedException("a recurrent state store holds no attention K/V");

    public ReadOnlySpan<KvPage> Pages(int layer, int seqId) =>
        throw new NotSupportedException("a recurrent state store holds no attention K/V");

    public void Dispose()
    {
        if (_disk != null)
        {
            _disk.Dispose();
            try { File.Delete(Options.DiskPath!); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
        _disk = null;
        foreach (var cp in _all) if (cp.InMemory) { cp.Data = null; _budget.Release(StateBytes); }
        for (int s = 0; s < SequenceCapacity; s++) if (_reserved[s]) { _budget.Release(StateBytes); _reserved[s] = false; }
        _all.Clear();
        _byHash.Clear();
    }

    // ---- internals ----

    private int Check(int seqId)
    {
        if ((uint)seqId >= (uint)SequenceCapacity)
            throw new ArgumentOutOfRangeException(nameof(seqId), $"sequence id {seqId} is outside 0..{SequenceCapacity - 1}");
        return seqId;
    }

    private void Reserve(int seqId)
    {
        if (_reserved[seqId]) return;
        MakeRoom();
        if (!_budget.TryReserve(StateBytes))
            throw new InsufficientMemoryException($"the memory budget ({_budget.Capacity} bytes) has no room for another {StateBytes}-byte recurrent state");
        _reserved[seqId] = true;
    }

    /// <summary>Frees StateBytes of budget by offloading (or dropping) least recently used memory-tier checkpoints.</summary>
    private void MakeRoom()
    {
        while (_budget.Available < StateBytes)
        {
            RecurrentCheckpoint? lru = null;
            foreach (var cp in _all) if (cp.InMemory && (lru == null || cp.LastUse < lru.LastUse)) lru = cp;
            if (lru == null) return;
            bool offloaded = false;
            if (Options.DiskPath != null)
            {
                try { Offload(lru); offloaded = true; }
                catch (IOException) { }   // disk full or failing: drop it like a store without a disk tier
            }
            if (!offloaded)
            {
                lru.Data = null;
                _budget.Release(StateBytes);
                _all.Remove(lru);
                _byHash[lru.Hash].Remove(lru);
                Stats.Dropped++;
            }
        }
    }

    private float[] Load(RecurrentCheckpoint cp)
    {
        if (cp.Data != null) return cp.Data;
        if (!cp.OnDisk || _disk == null) throw new InvalidOperationException("checkpoint has neither a memory nor a disk copy");
        var data = new float[StateFloats];
        _disk.Position = cp.DiskOffset;
        try { _disk.ReadExactly(MemoryMarshal.AsBytes(data.AsSpan())); }
        catch (EndOfStreamException)
        {
            throw new InvalidDataException($"recurrent-state checkpoint ({cp.Length} tokens) at byte {cp.DiskOffset} of {Options.DiskPath}: the file was cut short");
        }
        if (System.IO.Hashing.XxHash64.HashToUInt64(MemoryMarshal.AsBytes(data.AsSpan())) != cp.DiskSum)
            throw new InvalidDataException($"recurrent-state checkpoint ({cp.Length} tokens) at byte {cp.DiskOffset} of {Options.DiskPath}: "
                + "the disk copy does not match its checksum (the file was changed or damaged)");
        Stats.Reloaded++;
        MakeRoom();
        if (_budget.TryReserve(StateBytes)) cp.Data = data; // back in the memory tier (the disk copy stays valid)
        return data;
    }

    private void WriteToDisk(RecurrentCheckpoint cp, float[] data)
    {
        _disk ??= new FileStream(Options.DiskPath!, FileMode.Create, FileAccess.ReadWrite, FileShare.Read, 1 << 16);
        long at = _disk.Length;
        var bytes = MemoryMarshal.AsBytes(data.AsSpan());
        try
        {
            _disk.Position = at;
            _disk.Write(bytes);
            _disk.Flush();
        }
        catch (IOException e)
        {
            try { _disk.SetLength(at); } catch (IOException) { }
            throw new IOException($"recurrent-state disk tier {Options.DiskPath}: could not write a {bytes.Length}-byte checkpoint ({e.Message})", e);
        }
        cp.DiskSum = System.IO.Hashing.XxHash64.HashToUInt64(bytes);
        cp.DiskOffset = at;
    }

    private RecurrentCheckpoint? Find(ulong hash, ReadOnlySpan<int> tokens)
    {
        if (!_byHash.TryGetValue(hash, out var list)) return null;
        foreach (var cp in list) if (tokens.SequenceEqual(cp.Tokens)) return cp;
        return null;
    }

    private const ulong HashSeed = 0xcbf29ce484222325UL;

    private static ulong HashStep(ulong h, int token)
    {
        h ^= (uint)token;
        h *= 0x100000001b3UL;
        return h ^ (h >> 29);
    }

    /// <summary>FNV-style chained hash of a token prefix (collisions are resolved by comparing tokens).</summary>
    public static ulong PrefixHash(ReadOnlySpan<int> tokens)
    {
        ulong h = HashSeed;
        foreach (int t in tokens) h = HashStep(h, t);
        return h;
    }
}
