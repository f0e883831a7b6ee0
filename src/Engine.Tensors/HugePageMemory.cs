// Owns: large native buffers backed by transparent huge pages where the OS offers them (KV caches of GB size).
// Invariants: Allocate returns a 64-byte aligned (2 MiB aligned when mapped), writable, uninitialised block of at least
// the asked bytes (0 bytes: a valid pointer to free), or throws OutOfMemoryException; Free accepts exactly what Allocate returned (or null) and frees it
// with the matching call (munmap for mapped blocks, NativeMemory.AlignedFree for the rest). Thread-safe.
// Algorithm: on Linux, blocks of >= MinBytes are mmap(MAP_PRIVATE|MAP_ANONYMOUS)ed with 2 MiB of slack, trimmed to a
// 2 MiB boundary (munmap of head and tail) and marked madvise(MADV_HUGEPAGE), so with THP in "madvise" mode the kernel
// backs them with 2 MiB pages (one TLB entry instead of 512). Any failure, another OS, a small block or
// ENGINE_HUGEPAGES=0 (or Allocate(bytes, hugePages: false)) falls back to NativeMemory.AlignedAlloc. Source: mmap(2), madvise(2),
// Documentation/admin-guide/mm/transhuge.rst.
using System.Runtime.InteropServices;

namespace Engine.Tensors;

/// <summary>Native allocation for large buffers that asks Linux for transparent huge pages (falls back to
/// <see cref="NativeMemory.AlignedAlloc(nuint, nuint)"/>).</summary>
public static unsafe partial class HugePageMemory
{
    /// <summary>Huge-page size the mapping is aligned to (x86-64 and arm64 with 4 KiB base pages).</summary>
    public const nuint HugePageBytes = 2 * 1024 * 1024;

    /// <summary>Smallest block that is mapped (two huge pages); smaller ones go to the aligned allocator.</summary>
    public const nuint MinBytes = 2 * HugePageBytes;

    private const int ProtRead = 1, ProtWrite = 2, MapPrivate = 2, MapAnonymous = 0x20, MadvHugePage = 14;

    private static readonly Dictionary<nint, nuint> Mapped = new();
    private static readonly object Gate = new();

    /// <summary>Whether <see cref="Allocate(nuint)"/> maps large blocks with huge pages: read once from the environment
    /// (ENGINE_HUGEPAGES=0 turns it off). Callers that want a specific choice pass it to
    /// <see cref="Allocate(nuint, bool)"/> (Free always matches how a block was made).</summary>
    public static bool Enabled { get; } = Environment.GetEnvironmentVariable("ENGINE_HUGEPAGES") != "0";

    /// <summary>Bytes currently held by huge-page mappings (after alignment, including padding).</summary>
    public static long MappedBytes { get { lock (Gate) { long s = 0; foreach (var v in Mapped.Values) s += (long)v; return s; } } }

    /// <summary>Allocates <paramref name="bytes"/> of uninitialised memory, 64-byte aligned, with huge pages when
    /// <see cref="Enabled"/>. Free it with <see cref="Free"/>.</summary>
    public static void* Allocate(nuint bytes) => Allocate(bytes, Enabled);

    /// <summary>Allocates <paramref name="bytes"/> of uninitialised memory, 64-byte aligned; large blocks are mapped with
    /// huge pages when <paramref name="hugePages"/> (and the OS allows). Free it with <see cref="Free"/>.</summary>
    public static void* Allocate(nuint bytes, bool hugePages)
    {
        if (hugePages && bytes >= MinBytes && OperatingSystem.IsLinux())
        {
            void* p = TryMapHuge(bytes, out nuint length);
            if (p != null)
            {
                lock (Gate) Mapped.Add((nint)p, length);
                return p;
            }
        }
        return NativeMemory.AlignedAlloc(bytes, 64);
    }

    /// <summary>Frees a block from <see cref="Allocate"/>; null is ignored.</summary>
    public static void Free(void* p)
    {
        if (p == null) return;
        nuint length;
        bool mapped;
        lock (Gate) mapped = Mapped.Remove((nint)p, out length);
        if (!mapped) { NativeMemory.AlignedFree(p); return; }
        if (munmap(p, length) != 0)
            throw new InvalidOperationException($"munmap of a {length}-byte huge-page block failed (errno {Marshal.GetLastPInvokeError()})");
    }

    private static void* TryMapHuge(nuint bytes, out nuint length)
    {
        length = (bytes + HugePageBytes - 1) & ~(HugePageBytes - 1);
        nuint total = length + HugePageBytes;   // slack so a 2 MiB boundary lies inside
        void* raw;
        try { raw = mmap(null, total, ProtRead | ProtWrite, MapPrivate | MapAnonymous, -1, 0); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return null; }
        if (raw == (void*)-1 || raw == null) return null;
        nuint start = (nuint)raw, aligned = (start + HugePageBytes - 1) & ~(HugePageBytes - 1);
        nuint head = aligned - start, tail = total - head - length;
        if (head > 0) munmap(raw, head);
        if (tail > 0) munmap((void*)(aligned + length), tail);
        madvise((void*)aligned, length, MadvHugePage);   // advisory: failure (THP off) still leaves a usable mapping
        return (void*)aligned;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial void* mmap(void* addr, nuint length, int prot, int flags, int fd, nint offset);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int munmap(void* addr, nuint length);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int madvise(void* addr, nuint length, int advice);
}
