// Owns: `engine gpu-check`'s checks (what bench/gpu/device-check.sh runs on a real GPU) pass on gpu-sim at small
// sizes in both lane modes, so the device script's correctness stage cannot rot unnoticed.
using Engine.Runtime.Gpu;

namespace Engine.Gpu.Tests;

[TestFixture]
public sealed class GpuSelfCheckTests
{
    [TestCaseSource(typeof(GpuCases), nameof(GpuCases.Modes))]
    public void SmallChecksPass(LaneMode m)
    {
        using var be = GpuCases.Backend(m);
        var lines = new List<string>();
        string? model = m == LaneMode.Single ? SharedData.Get("reference/stories260K/stories260K.gguf") : null;
        int fails = GpuSelfCheck.Run(be, small: true, model, lines.Add);
        TestContext.Out.WriteLine(string.Join("\n", lines));
        Assert.That(fails, Is.Zero, string.Join("\n", lines.Where(l => l.StartsWith("FAIL"))));
        Assert.That(lines.Count(l => l.StartsWith("PASS")), Is.GreaterThanOrEqualTo(m == LaneMode.Single ? 24 : 22));
    }
}
