// Owns: starting a burst of requests on one InferenceEngine so they are batched together whatever the thread timing —
// shared by the serving tests of Engine.Runtime.Tests and Engine.Recurrent.Tests (linked into those two projects only:
// it needs Engine.Runtime and its internal PauseServing hook).
// Invariants: every request is queued (Stats.Waiting + Running = count) before the step loop is released, unless one
// fails first or 30 s pass.
using Engine.Runtime;

namespace Engine.Tests.Common;

public static class EngineBurst
{
    /// <summary>Starts <paramref name="count"/> requests (start(i)) while the step loop is held, waits until all are
    /// queued, then releases the loop and returns their results in order.</summary>
    public static async Task<T[]> Run<T>(InferenceEngine e, int count, Func<int, Task<T>> start)
    {
        Task<T>[] tasks;
        using (e.PauseServing())
        {
            tasks = Enumerable.Range(0, count).Select(i => Task.Run(() => start(i))).ToArray();
            var sw = System.Diagnostics.Stopwatch.StartNew();
            while (e.Stats.Waiting + e.Stats.Running < count && !tasks.Any(t => t.IsFaulted) && sw.Elapsed < TimeSpan.FromSeconds(30))
                await Task.Delay(1);
        }
        return await Task.WhenAll(tasks);
    }
}
