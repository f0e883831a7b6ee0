// Owns: a read-only memory mapping of a whole file (zero-copy access for model loaders).
// Invariants: Pointer addresses Length readable bytes until Dispose; an empty file maps to (null, 0);
// the mapping is read-only (writing through Pointer faults). Disposing twice is harmless.
// Source: System.IO.MemoryMappedFiles; the view pointer is acquired once and released on Dispose.
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;

namespace Engine.Tensors;

/// <summary>A read-only, zero-copy memory mapping of a file. Tensor views into it stay valid until Dispose.</summary>
public sealed unsafe partial class MappedFile : IDisposable
{
    // Live mappings (start, length): ReleaseResidentPages only ever advises pages inside one of these read-only file
    // mappings — MADV_DONTNEED on anonymous memory would zero it, on a read-only file mapping it only drops the pages
    // from this process (the next read faults them back from the file).
    private static readonly List<(nint Start, long Length)> Live = new();

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private byte* _pointer;
    private int _disposed;

    private MappedFile(string path, MemoryMappedFile? map, MemoryMappedViewAccessor? view, byte* pointer, long length)
    {
        Path = path; _map = map; _view = view; _pointer = pointer; Length = length;
    }

    /// <summary>Maps <paramref name="path"/> read-only. Throws IOException/FileNotFoundException as the OS reports.</summary>
    public static MappedFile Open(string path)
    {
        var full = System.IO.Path.GetFullPath(path);
        var stream = new FileStream(full, FileMode.Open, FileAccess.Read, FileShare.Read);
        long length = stream.Length;
        if (length == 0) { stream.Dispose(); return new MappedFile(full, null, null, null, 0); }
        MemoryMappedFile map;
        try
        {
            map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read,
                HandleInheritability.None, leaveOpen: false);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
        MemoryMappedViewAccessor? view = null;
        try
        {
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            p += view.PointerOffset;
            lock (Live) Live.Add(((nint)p, length));
            return new MappedFile(full, map, view, p, length);
        }
        catch
        {
            view?.Dispose();
            map.Dispose();
            throw;
        }
    }

    /// <summary>Full path of the mapped file.</summary>
    public string Path { get; }

    /// <summary>File length in bytes.</summary>
    public long Length { get; }

    /// <summary>First byte of the mapping (null for an empty file).</summary>
    public byte* Pointer
    {
        get { ObjectDisposedException.ThrowIf(_disposed != 0, this); return _pointer; }
    }

    /// <summary>First byte of the mapping as an address.</summary>
    public nint BaseAddress => (nint)Pointer;

    /// <summary>A span over [offset, offset + length); bounds are checked.</summary>
    public ReadOnlySpan<byte> Span(long offset, int length)
    {
        if (offset < 0 || length < 0 || offset > Length - length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset}, +{length}) is outside the {Length}-byte file");
        return new ReadOnlySpan<byte>(Pointer + offset, length);
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        if (_pointer != null) lock (Live) Live.Remove(((nint)_pointer, Length));
        if (_view != null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _map?.Dispose();
        _pointer = null;
    }

    /// <summary>
    /// Drops this process's resident pages of [address, address + length) when the range lies inside a live read-only
    /// file mapping (Linux; elsewhere, or for any other memory, it does nothing and returns false). The bytes stay
    /// readable: a later read faults them back from the file. Used after a backend has copied weights into its own
    /// layout, so the process holds one copy of them (RSS), not two.
    /// </summary>
    public static bool ReleaseResidentPages(nint address, long length)
    {
        if (!OperatingSystem.IsLinux() || length <= 0) return false;
        lock (Live)
        {
            bool inside = false;
            foreach (var (start, len) in Live)
                if (address >= start && length <= len && address - start <= len - length) { inside = true; break; }
            if (!inside) return false;
            long page = Environment.SystemPageSize;
            long first = (address + page - 1) & ~(page - 1), end = (address + length) & ~(page - 1);
            if (end <= first) return false;
            try { return madvise((void*)first, (nuint)(end - first), MadvDontNeed) == 0; }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return false; }
        }
    }

    private const int MadvDontNeed = 4;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int madvise(void* addr, nuint length, int advice);
}
