// Owns: the scheduler side of a packing KV policy (StepResult.KeptSlots): after a step the request's table keeps the
// blocks of the slots its policy still uses and the rest go back to the pool at once — available to the next admission —
// and later reservations append after the kept slots. Expected block counts are derived by hand from the block size.
using Engine.Scheduling;

namespace Engine.Scheduling.Tests;

public class SchedulerKeptSlotsTests
{
    [Test]
    public void KeptSlotsShrinkTheTableAndFreeBlocksForTheNextAdmission()
    {
        var s = new Scheduler(new SchedulerOptions { BlockCount = 8, BlockSize = 4, MaxTokensPerStep = 64 });
        s.AddRequest(new Request(1, Enumerable.Range(1, 20).ToArray(), 10));   // 20 prompt tokens: 5 blocks
        var p = s.Step();
        Assert.That(p.Requests.Single().BlockTable, Has.Length.EqualTo(5));
        s.OnStepCompleted([new StepResult(1, 7, KeptSlots: 6)]);              // the policy keeps 6 rows: 2 blocks
        Assert.That(s.Pool.UsedCount, Is.EqualTo(2));
        s.Validate();

        // the freed blocks admit a second request of 24 tokens (6 blocks) in the same pool of 8
        s.AddRequest(new Request(2, Enumerable.Range(1, 24).ToArray(), 2));
        p = s.Step();
        var one = p.Requests.Single(r => r.RequestId == 1);
        Assert.That(p.Requests.Select(r => r.RequestId), Is.EquivalentTo(new long[] { 1, 2 }));
        Assert.That(one.StartPosition, Is.EqualTo(20), "positions continue; only the slots were packed");
        Assert.That(one.BlockTable, Has.Length.EqualTo(2), "slot 6 (the 7th) is in the second block");
        s.OnStepCompleted([new StepResult(1, 8, KeptSlots: 3), new StepResult(2, 9)]);
        Assert.That(s.Pool.UsedCount, Is.EqualTo(1 + 6), "request 1 keeps 1 block; request 2 holds its 6");
        s.Validate();

        // a charge above the reservation is capped at the table (its rows always lie within it)
        p = s.Step();
        s.OnStepCompleted([new StepResult(1, 8, KeptSlots: 99), new StepResult(2, 9)]);
        Assert.That(s.Blocks.Get(1).TokenCount, Is.EqualTo(4));
        s.Validate();

        // finishing frees everything
        while (s.HasUnfinishedRequests)
        {
            p = s.Step();
            s.OnStepCompleted(p.Requests.Where(r => r.SamplesToken).Select(r => new StepResult(r.RequestId, 5, KeptSlots: r.RequestId == 1 ? 2 : -1)).ToArray());
            s.Validate();
        }
        Assert.That(s.Pool.UsedCount, Is.Zero);
        Assert.That(s.Pool.FreeCount + s.Pool.CachedCount, Is.EqualTo(8));
    }

    [Test]
    public void KeptSlotsBeyondTheTableAreRejectedByShrinkButCappedByTheScheduler()
    {
        var s = new Scheduler(new SchedulerOptions { BlockCount = 4, BlockSize = 4, MaxTokensPerStep = 64 });
        s.AddRequest(new Request(1, Enumerable.Range(1, 5).ToArray(), 1));
        s.Step();
        Assert.Throws<ArgumentOutOfRangeException>(() => s.Blocks.Shrink(1, 6));
        s.OnStepCompleted([new StepResult(1, 3, KeptSlots: 6)]);   // finishes (max 1 new token): all freed
        Assert.That(s.Pool.UsedCount, Is.Zero);
    }
}
