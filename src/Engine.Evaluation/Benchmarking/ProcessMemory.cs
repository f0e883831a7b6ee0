// Owns: reading this process's memory figures from /proc/self/status (Linux): peak RSS (VmHWM), current RSS and its
// anonymous vs file-backed split (memory-mapped weights are file-backed pages; the KV store and scratch are anonymous).
// Invariant: on systems without /proc every figure is -1, never an exception.
namespace Engine.Runtime.Benchmarking;

/// <summary>A snapshot of the process's resident memory, in bytes (-1 when unknown).</summary>
public readonly record struct ProcessMemory(long PeakRssBytes, long RssBytes, long RssAnonBytes, long RssFileBytes)
{
    public static ProcessMemory Read()
    {
        long hwm = -1, rss = -1, anon = -1, file = -1;
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("VmHWM:")) hwm = Kb(line);
                else if (line.StartsWith("VmRSS:")) rss = Kb(line);
                else if (line.StartsWith("RssAnon:")) anon = Kb(line);
                else if (line.StartsWith("RssFile:")) file = Kb(line);
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return new ProcessMemory(hwm, rss, anon, file);
    }

    private static long Kb(string line)
    {
        var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return parts.Length >= 2 && long.TryParse(parts[1], out long kb) ? kb * 1024 : -1;
    }

    public override string ToString() =>
        $"peak RSS {PeakRssBytes / 1e6:F0} MB, RSS {RssBytes / 1e6:F0} MB (anon {RssAnonBytes / 1e6:F0} MB, file {RssFileBytes / 1e6:F0} MB)";
}
