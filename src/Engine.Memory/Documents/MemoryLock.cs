// Owns: the lock of one persistent memory folder (file "lock" inside it): writers hold it exclusively, readers shared,
// for as long as the memory is open. On Linux/macOS .NET takes it with flock(2) — FileShare.None = LOCK_EX, any other
// share mode = LOCK_SH — per open file description, so it excludes other processes and other opens in this process
// alike, and the kernel drops it when the holder dies (a crashed writer never leaves a stale lock).
// Invariants: Acquire returns only once the lock is held; while another holder blocks it, onWait is called once and the
// attempt is retried until the timeout, then a MemoryLockedException names the memory, the mode and the time waited.
namespace Engine.Memory.Documents;

/// <summary>Another process (or another open in this process) holds the memory longer than the timeout allowed.</summary>
public sealed class MemoryLockedException(string folder, bool exclusive, TimeSpan waited)
    : IOException($"{folder}: the memory is in use by another {(exclusive ? "reader or writer" : "writer")} (waited {waited.TotalSeconds:F0} s); "
        + "try again when it has finished (ENGINE_MEMORY_LOCK_TIMEOUT sets the wait in seconds)");

public sealed class MemoryLock : IDisposable
{
    private readonly FileStream _file;

    private MemoryLock(FileStream file, bool exclusive) { _file = file; Exclusive = exclusive; }

    public bool Exclusive { get; }

    /// <summary>Default wait: $ENGINE_MEMORY_LOCK_TIMEOUT seconds, else 10 minutes.</summary>
    public static TimeSpan DefaultTimeout =>
        double.TryParse(Environment.GetEnvironmentVariable("ENGINE_MEMORY_LOCK_TIMEOUT"), System.Globalization.NumberStyles.Float,
            System.Globalization.CultureInfo.InvariantCulture, out double s) && s >= 0 ? TimeSpan.FromSeconds(s) : TimeSpan.FromMinutes(10);

    /// <summary>Called once when a lock is not free at the first attempt (e.g. the CLI prints "waiting for …").</summary>
    public static Action<string>? OnWait { get; set; }

    /// <summary>Takes the lock of <paramref name="folder"/> (created when absent), waiting up to <paramref name="timeout"/>.</summary>
    public static MemoryLock Acquire(string folder, bool exclusive, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        Directory.CreateDirectory(folder);
        string path = Path.Combine(folder, "lock");
        var limit = timeout ?? DefaultTimeout;
        var sw = System.Diagnostics.Stopwatch.StartNew();
        bool told = false;
        int delayMs = 5;
        while (true)
        {
            try
            {
                var fs = new FileStream(path, FileMode.OpenOrCreate, exclusive ? FileAccess.ReadWrite : FileAccess.Read,
                    exclusive ? FileShare.None : FileShare.ReadWrite | FileShare.Delete);
                return new MemoryLock(fs, exclusive);
            }
            catch (IOException e) when (e is not FileNotFoundException and not DirectoryNotFoundException && IsSharingViolation(e))
            {
                if (sw.Elapsed >= limit) throw new MemoryLockedException(folder, exclusive, sw.Elapsed);
                if (!told)
                {
                    told = true;
                    OnWait?.Invoke($"waiting for memory {Path.GetFileName(folder)}: another process is {(exclusive ? "using" : "writing")} it…");
                }
                cancellationToken.WaitHandle.WaitOne(delayMs);
                cancellationToken.ThrowIfCancellationRequested();
                delayMs = Math.Min(delayMs * 2, 200);
            }
        }
    }

    // .NET reports a held flock as an IOException with the sharing-violation HResult (0x80070020) or EWOULDBLOCK.
    private static bool IsSharingViolation(IOException e) => (e.HResult & 0xffff) is 0x20 or 11 or 35 || e.HResult == 11;

    public void Dispose() => _file.Dispose();
}
