// Owns: one writable, memory-mapped file of a fixed size — the disk tier's storage primitive, shared by every disk-backed
// KV store (PagedKvStore's disk blocks, DiskKvFile's segments, MappedKvStore's rows): creation with every block reserved
// up front (FileStreamOptions.PreallocationSize = fallocate(2) on Linux: a full disk fails here with a clear IOException,
// not later as a SIGBUS when a page of a sparse mapping is first touched), a stable base pointer, flush, and deletion of
// a file it owns.
// Invariants: Base addresses Bytes writable bytes until Dispose and never moves; a region created as temporary (or with
// deleteOnDispose) removes its file on Dispose; a creation that fails removes the file it started; an existing file is
// reopened only with its exact expected size.
using System.IO.MemoryMappedFiles;

namespace Engine.Memory.Disk;

/// <summary>A fixed-size read-write memory mapping of one file.</summary>
public sealed unsafe class MappedRegion : IDisposable
{
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private readonly bool _deleteOnDispose;
    private bool _disposed;

    /// <param name="path">The file; null = a fresh temporary file (always deleted on Dispose).</param>
    /// <param name="bytes">Size of the mapping (≥ 1).</param>
    /// <param name="create">True: create or overwrite the file with <paramref name="bytes"/> bytes (zeros, sparse).
    /// False: open an existing file that must be exactly that long (InvalidDataException otherwise).</param>
    /// <param name="deleteOnDispose">Delete the file on Dispose (implied for a temporary file).</param>
    public MappedRegion(string? path, long bytes, bool create = true, bool deleteOnDispose = false)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(bytes, 1);
        _deleteOnDispose = deleteOnDispose || path == null;
        Path = System.IO.Path.GetFullPath(path ?? System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"engine-kv-{Environment.ProcessId}-{Guid.NewGuid():N}.bin"));
        Bytes = bytes;
        if (create)
        {
            var dir = System.IO.Path.GetDirectoryName(Path);
            if (dir != null) Directory.CreateDirectory(dir);
            try
            {
                using var fs = new FileStream(Path, new FileStreamOptions
                {
                    Mode = FileMode.Create, Access = FileAccess.ReadWrite, Share = FileShare.Read, PreallocationSize = bytes,
                });
                fs.SetLength(bytes);
            }
            catch (IOException e)
            {
                TryDelete();
                throw new IOException($"KV disk tier: cannot reserve {bytes / 1048576.0:F1} MiB for {Path}: {e.Message} "
                    + "(free disk space, choose another folder, or a smaller disk tier)", e);
            }
            catch (UnauthorizedAccessException e)
            {
                throw new IOException($"KV disk tier: cannot create {Path}: {e.Message}", e);
            }
        }
        else
        {
            if (!File.Exists(Path)) throw new InvalidDataException($"disk tier file missing: {Path}");
            long actual = new FileInfo(Path).Length;
            if (actual != bytes) throw new InvalidDataException($"disk tier file {Path} is {actual} bytes, expected {bytes} (truncated or corrupted)");
        }
        try
        {
            _map = MemoryMappedFile.CreateFromFile(Path, FileMode.Open, null, bytes, MemoryMappedFileAccess.ReadWrite);
            _view = _map.CreateViewAccessor(0, bytes, MemoryMappedFileAccess.ReadWrite);
        }
        catch
        {
            _map?.Dispose();
            if (create) TryDelete();   // a file this region created and could not map
            throw;
        }
        byte* p = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        Base = p + _view.PointerOffset;
    }

    public string Path { get; }
    public long Bytes { get; }

    /// <summary>Start of the mapping (valid until Dispose).</summary>
    public byte* Base { get; private set; }

    /// <summary>Writes dirty mapped pages to the file.</summary>
    public void Flush()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _view.Flush();
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Base = null;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
        if (_deleteOnDispose) TryDelete();
    }

    private void TryDelete()
    {
        try { File.Delete(Path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
