// Owns: the "all KV on disk" configuration of the disk tier, as used by the needle 1M run (`engine eval --needle --disk`):
// a TieredKvStore with every block in the memory-mapped disk file from its first write (written and read in place, so
// the KV can exceed RAM; the OS pages blocks in on demand), large blocks (few pages per sequence), and the whole file
// created up front (sparse). A thin configuration — all bookkeeping is TieredKvStore's; there is one disk store.
// Invariants: the file (FilePath) exists from construction and is deleted on Dispose when the store created it as a
// temporary; lengths are tracked in memory (the file holds rows only, not a format).
namespace Engine.Memory.Disk;

public sealed class MappedKvStore : TieredKvStore
{
    /// <summary>Tokens per block (one KvPage each): large, so a long sequence is a few pages.</summary>
    public const int DefaultBlockSize = 4096;

    /// <param name="path">Prefix of the backing file (<c>{path}.0.bin</c>); null = a temporary file deleted on Dispose.</param>
    public MappedKvStore(int layerCount, int kvDim, int capacity, int sequenceCapacity = 1, string? path = null)
        : base(layerCount, kvDim, capacity, sequenceCapacity, blockSize: Math.Min(capacity, DefaultBlockSize), ramBudgetBytes: 0,
            diskPathPrefix: path, blocksOnDisk: true)
    {
    }

    /// <summary>The backing file (all blocks of all layers and sequences).</summary>
    public string FilePath => DiskFiles[0];

    /// <summary>Logical size of the backing file.</summary>
    public long FileBytes => DiskFileBytes;
}
