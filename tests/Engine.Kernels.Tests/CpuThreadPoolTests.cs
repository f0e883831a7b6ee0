// Owns: the worker pool's contract — every item runs exactly once for any count/chunk/thread mix, worker exceptions
// reach the caller, the pool is reusable after an error, and Dispose stops (joins) its threads.
namespace Engine.Kernels.Tests;

[TestFixture]
public sealed class CpuThreadPoolTests
{
    private sealed class CountJob : CpuJob
    {
        public int[] Hits = [];
        public int[] ThreadsSeen = new int[8];
        public override void Execute(int start, int end, int thread)
        {
            Interlocked.Increment(ref ThreadsSeen[thread]);
            for (int i = start; i < end; i++) Interlocked.Increment(ref Hits[i]);
        }
    }

    private sealed class ThrowJob : CpuJob
    {
        public override void Execute(int start, int end, int thread)
        {
            if (start <= 17 && 17 < end) throw new InvalidOperationException("boom");
        }
    }

    [Test]
    public void EveryItemRunsExactlyOnce([Values(1, 2, 3, 5)] int threads)
    {
        using var pool = new CpuThreadPool(threads);
        Assert.That(pool.ThreadCount, Is.EqualTo(threads));
        var job = new CountJob();
        var rng = new Random(threads);
        for (int run = 0; run < 300; run++)
        {
            int count = rng.Next(0, 2000), chunk = rng.Next(1, 70);
            job.Hits = new int[count];
            pool.Run(job, count, chunk);
            Assert.That(job.Hits.All(h => h == 1), Is.True, $"count={count} chunk={chunk}");
        }
    }

    [Test]
    public void WorkerExceptionReachesCaller_AndPoolStaysUsable()
    {
        using var pool = new CpuThreadPool(3);
        var ex = Assert.Throws<AggregateException>(() => pool.Run(new ThrowJob(), 100, 1));
        Assert.That(ex!.InnerException, Is.TypeOf<InvalidOperationException>());
        var job = new CountJob { Hits = new int[1000] };
        pool.Run(job, 1000, 3);
        Assert.That(job.Hits.All(h => h == 1), Is.True);
    }

    [Test]
    public void Dispose_StopsWorkers_AndRejectsRuns()
    {
        var pool = new CpuThreadPool(4, spinMicroseconds: 0);
        var before = System.Diagnostics.Process.GetCurrentProcess().Threads.Count;
        pool.Run(new CountJob { Hits = new int[64] }, 64, 1);
        pool.Dispose();
        Assert.Throws<ObjectDisposedException>(() => pool.Run(new CountJob { Hits = new int[4] }, 4, 1));
        var threads = typeof(CpuThreadPool).GetField("_workers", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!
            .GetValue(pool) as Thread[];
        Assert.That(threads!.All(t => !t.IsAlive), Is.True, $"workers still alive (process had {before} threads)");
    }

    [Test]
    public void IdleWorkersSleep_ThenWakeForTheNextOp()
    {
        using var pool = new CpuThreadPool(3, spinMicroseconds: 10);
        var job = new CountJob { Hits = new int[10_000] };
        for (int i = 0; i < 5; i++)
        {
            Thread.Sleep(20);                                    // workers are blocked on the monitor by now
            job.Hits = new int[10_000];
            pool.Run(job, 10_000, 10);
            Assert.That(job.Hits.All(h => h == 1), Is.True);
        }
    }

    private sealed class ReentrantJob(CpuThreadPool pool) : CpuJob
    {
        public Exception? Seen;
        public override void Execute(int start, int end, int thread)
        {
            try { pool.Run(new CountJob { Hits = new int[2] }, 2, 1); }
            catch (Exception e) { Seen = e; }
        }
    }

    [Test]
    public void ConcurrentRun_IsAClearError()
    {
        using var pool = new CpuThreadPool(1);
        var job = new ReentrantJob(pool);
        pool.Run(job, 1, 1);
        Assert.That(job.Seen, Is.TypeOf<InvalidOperationException>());
        var ok = new CountJob { Hits = new int[8] };
        pool.Run(ok, 8, 2);                                      // still usable afterwards
        Assert.That(ok.Hits.All(h => h == 1), Is.True);
    }
}
