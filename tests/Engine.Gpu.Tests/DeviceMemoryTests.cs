// Owns: the GPU backend's up-front memory check and its error text — weights plus KV budget that exceed the device's
// free memory fail before any upload with a message naming needed and free bytes; and the device listing.
using Engine.Formats;
using Engine.Runtime;

namespace Engine.Gpu.Tests;

[TestFixture]
public sealed class DeviceMemoryTests
{
    [Test]
    public void KvBudgetBeyondFreeMemory_FailsBeforeUpload_NamingNeededAndFree()
    {
        using var file = ModelFiles.Open(SharedData.Get("reference/stories260K/stories260K.gguf"));
        using var be = GpuCases.Backend(LaneMode.Single);
        long free = be.Device.FreeBytes;
        var e = Assert.Throws<GpuMemoryException>(() => Backends.LoadModel(file, be, kvBytesF32: 4 * free))!;
        TestContext.Out.WriteLine(e.Message);
        Assert.That(e.Message, Does.Contain("not enough device memory on cpu-sim").And.Contain("need").And.Contain("free").And.Contain("KV budget"));
    }

    [Test]
    public void EnsureFree_PassesWithinAndFailsBeyond()
    {
        var d = GpuCases.Device(LaneMode.Single);
        Assert.DoesNotThrow(() => d.EnsureFree(1 << 20, "a small buffer"));
        var e = Assert.Throws<GpuMemoryException>(() => d.EnsureFree(d.FreeBytes + (1L << 40), "a huge buffer"))!;
        Assert.That(e.Message, Does.Contain("a huge buffer").And.Contain("GiB"));
    }

    [Test]
    public void Devices_ListTheCpuAccelerator()
    {
        var list = Backends.Devices();
        Assert.That(list.Any(d => d.Backend == "gpu-sim" && d.Label == "cpu-sim" && d.WarpSize == 32 && d.MemoryBytes > 0), string.Join("; ", list));
    }

    [Test]
    public void AutoBackend_WithoutCuda_IsTheCpuBackend()
    {
        if (GpuDevice.CudaAvailable()) Assert.Ignore("a CUDA device is present: auto picks it");
        using var b = Backends.Create("auto", 1);
        Assert.That(b.Name, Does.StartWith("cpu"));
        var e = Assert.Throws<GpuUnavailableException>(() => Backends.Create("gpu"))!;
        Assert.That(e.Message, Does.Contain("no CUDA device"));
    }
}
