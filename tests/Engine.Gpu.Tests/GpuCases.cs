// Owns: the GPU test devices — gpu-sim (ILGPU's CPU accelerator, 32-wide warps) in both lane modes: Warp (the
// shuffle code path CUDA runs; slow here, so its tests use tiny shapes) and Single (one thread per work unit).
// Devices are opened once per test run (kernel compilation is the expensive part) and shared.
namespace Engine.Gpu.Tests;

using Engine.Kernels.Tests;

public static class GpuCases
{
    private static readonly Lazy<GpuDevice> WarpDevice = new(() => GpuDevice.OpenCpuSim(LaneMode.Warp));
    private static readonly Lazy<GpuDevice> SingleDevice = new(() => GpuDevice.OpenCpuSim(LaneMode.Single));

    public static GpuDevice Device(LaneMode m) => m == LaneMode.Warp ? WarpDevice.Value : SingleDevice.Value;

    /// <summary>One test body per GPU lane mode (candle's test_device! idea, as the kernel tests do per CPU backend).</summary>
    public static IEnumerable<TestCaseData> Modes()
    {
        yield return new TestCaseData(LaneMode.Warp).SetArgDisplayNames("gpu-sim-warp32");
        yield return new TestCaseData(LaneMode.Single).SetArgDisplayNames("gpu-sim-lane1");
    }

    public static GpuBackend Backend(LaneMode m) => new(Device(m), ownsDevice: false);
}
