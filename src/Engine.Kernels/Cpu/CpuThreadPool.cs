// Owns: the persistent worker pool the CPU backend splits ops over (N threads including the calling thread).
// Invariants: no allocation per Run (jobs are pre-allocated CpuJob objects whose fields the backend sets); work is
// handed out in chunks of items through one atomic counter (dynamic scheduling, robust when cores are shared);
// workers spin briefly for the next op, then block on a monitor (spin-then-wait), so an idle pool costs no CPU.
// Run is not re-entrant and not thread-safe: one op at a time (the backend is used by one forward at a time).
// Source: the ggml thread pool idea (persistent workers, a barrier per op, chunked rows), written fresh.
namespace Engine.Kernels;

using System.Diagnostics;

/// <summary>A unit of parallel work: processes items [start, end) on worker <paramref name="thread"/> (0 = caller).</summary>
public abstract class CpuJob
{
    public abstract void Execute(int start, int end, int thread);
}

public sealed class CpuThreadPool : IDisposable
{
    private readonly Thread[] _workers;                 // [ThreadCount - 1]; the caller is thread 0
    private readonly object _gate = new();
    private readonly long _spinTicks;
    private CpuJob? _job;
    private int _itemCount, _chunk;
    private int _next;                                  // next unclaimed item
    private int _pending;                               // workers still inside the current op
    private int _generation;                            // bumped once per Run; workers wait for a change
    private int _sleepers;
    private volatile bool _disposed;
    private int _busy;                                  // 1 while a Run is in progress (concurrent use is an error)
    private Exception? _error;

    /// <param name="threadCount">Total threads including the caller; ≤ 0 means Environment.ProcessorCount.</param>
    /// <param name="spinMicroseconds">How long an idle worker spins for the next op before blocking.</param>
    public CpuThreadPool(int threadCount, int spinMicroseconds = 50)
    {
        ThreadCount = threadCount <= 0 ? Environment.ProcessorCount : threadCount;
        _spinTicks = Math.Max(0, spinMicroseconds) * Stopwatch.Frequency / 1_000_000;
        _workers = new Thread[ThreadCount - 1];
        for (int i = 0; i < _workers.Length; i++)
        {
            int index = i + 1;
            _workers[i] = new Thread(() => WorkerLoop(index)) { IsBackground = true, Name = $"engine-cpu-{index}" };
            _workers[i].Start();
        }
    }

    public int ThreadCount { get; }

    /// <summary>Runs <paramref name="job"/> over items [0, itemCount) in chunks of <paramref name="chunk"/>; returns when all are done.</summary>
    public void Run(CpuJob job, int itemCount, int chunk)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (itemCount <= 0) return;
        if (Interlocked.Exchange(ref _busy, 1) != 0)
            throw new InvalidOperationException("CpuThreadPool.Run called concurrently: a CPU backend runs one op at a time");
        try { RunCore(job, itemCount, Math.Max(1, chunk)); }
        finally { Volatile.Write(ref _busy, 0); }
    }

    private void RunCore(CpuJob job, int itemCount, int chunk)
    {
        if (_workers.Length == 0 || itemCount <= chunk)
        {
            job.Execute(0, itemCount, 0);
            return;
        }
        _job = job; _itemCount = itemCount; _chunk = chunk; _error = null;
        Volatile.Write(ref _next, 0);
        Volatile.Write(ref _pending, _workers.Length);
        Interlocked.Increment(ref _generation);        // full fence: publishes the job before workers see the change
        if (Volatile.Read(ref _sleepers) > 0)
            lock (_gate) Monitor.PulseAll(_gate);

        Work(0);

        var spin = new SpinWait();
        while (Volatile.Read(ref _pending) != 0) spin.SpinOnce(sleep1Threshold: -1);
        _job = null;
        if (_error is { } e) throw new AggregateException("a CPU kernel worker failed", e);
    }

    private void Work(int thread)
    {
        var job = _job!;
        int count = _itemCount, chunk = _chunk;
        while (true)
        {
            int start = Interlocked.Add(ref _next, chunk) - chunk;
            if (start >= count) return;
            try { job.Execute(start, Math.Min(count, start + chunk), thread); }
            catch (Exception e) { Interlocked.CompareExchange(ref _error, e, null); }
        }
    }

    private void WorkerLoop(int index)
    {
        int seen = 0;
        while (true)
        {
            long until = Stopwatch.GetTimestamp() + _spinTicks;
            while (Volatile.Read(ref _generation) == seen && !_disposed && Stopwatch.GetTimestamp() < until)
                Thread.SpinWait(20);
            if (Volatile.Read(ref _generation) == seen && !_disposed)
            {
                lock (_gate)
                {
                    Interlocked.Increment(ref _sleepers);
                    while (Volatile.Read(ref _generation) == seen && !_disposed) Monitor.Wait(_gate);
                    Interlocked.Decrement(ref _sleepers);
                }
            }
            if (_disposed) return;
            seen = Volatile.Read(ref _generation);
            Work(index);
            Interlocked.Decrement(ref _pending);
        }
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        lock (_gate) Monitor.PulseAll(_gate);
        foreach (var t in _workers) t.Join();
    }
}
