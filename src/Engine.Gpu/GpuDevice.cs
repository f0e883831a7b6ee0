// Owns: one ILGPU accelerator (CUDA, or the CPU accelerator for gpu-sim), the kernels of kernels/ loaded on it, and
// the launch shapes: a lane group per work unit is a 32-lane warp on CUDA (4 warps per group); on gpu-sim it is a
// 32-lane warp when LaneMode is Warp (the CUDA code path, slow: the CPU accelerator emulates each shuffle with a
// barrier) or one thread when LaneMode is Single (the same kernels without shuffles, ~40× faster — whole-model tests).
// Invariants: launches are asynchronous on the accelerator's default stream, in order; only explicit host reads
// (GpuBuffer.Read, Synchronize) wait. Kernels are compiled once per device, on first use.
// Contexts enable ILGPU.Algorithms: without it the PTX backend cannot compile Math.Exp/Cos/Sin (internal compiler
// error; PtxCompileTests guards this). Source: ILGPU samples (LoadStreamKernel + KernelConfig for explicit grouping);
// CPUDeviceKind.Nvidia gives 32-wide warps.
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;

namespace Engine.Gpu;

/// <summary>Which accelerator a <see cref="GpuDevice"/> runs on.</summary>
public enum GpuKind
{
    /// <summary>The first CUDA device.</summary>
    Cuda,
    /// <summary>ILGPU's CPU accelerator (32-wide warps): the GPU kernels without a GPU.</summary>
    CpuSim,
}

/// <summary>How many threads cooperate on one work unit.</summary>
public enum LaneMode
{
    /// <summary>32-lane warps with shuffles (always on CUDA).</summary>
    Warp,
    /// <summary>One thread per work unit (gpu-sim only; no shuffles).</summary>
    Single,
}

/// <summary>An accelerator with the engine's kernels loaded.</summary>
public sealed partial class GpuDevice : IDisposable
{
    private readonly Context _context;
    private bool _disposed;

    private GpuDevice(Context context, Accelerator accelerator, GpuKind kind, LaneMode lanes)
    {
        _context = context; Accelerator = accelerator; Kind = kind; Lanes = lanes;
        LoadKernels();
    }

    public Accelerator Accelerator { get; }
    public GpuKind Kind { get; }
    public LaneMode Lanes { get; }

    /// <summary>Device name as bench rows print it: <c>cuda:NVIDIA H200</c> or <c>cpu-sim</c>.</summary>
    public string Label => Kind == GpuKind.Cuda ? $"cuda:{Accelerator.Name}" : "cpu-sim";

    /// <summary>Total device memory in bytes (gpu-sim: the memory the GC may use — ILGPU reports no real figure).</summary>
    public long MemoryBytes => Kind == GpuKind.Cuda ? Accelerator.MemorySize : HostBytes;

    private static long HostBytes => GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;

    /// <summary>Free device memory now (CUDA: the driver's figure; gpu-sim: the memory the GC can still use).</summary>
    public long FreeBytes => Accelerator is CudaAccelerator c ? c.GetFreeMemory() : HostBytes;

    /// <summary>Opens the first CUDA device (throws <see cref="GpuUnavailableException"/> when there is none).</summary>
    public static GpuDevice OpenCuda()
    {
        var ctx = Context.Create(b => b.Cuda().EnableAlgorithms().Optimize(OptimizationLevel.O2));
        try
        {
            var devs = ctx.GetCudaDevices();
            if (devs.Count == 0) throw new GpuUnavailableException("no CUDA device found (the NVIDIA driver and a CUDA GPU are needed for --backend gpu; --backend gpu-sim runs the same kernels on the CPU)");
            return new GpuDevice(ctx, devs[0].CreateCudaAccelerator(ctx), GpuKind.Cuda, LaneMode.Warp);
        }
        catch { ctx.Dispose(); throw; }
    }

    /// <summary>Opens ILGPU's CPU accelerator with 32-wide warps (gpu-sim).</summary>
    public static GpuDevice OpenCpuSim(LaneMode lanes = LaneMode.Single)
    {
        var ctx = Context.Create(b => b.CPU(CPUDeviceKind.Nvidia).EnableAlgorithms().Optimize(OptimizationLevel.O2));
        try { return new GpuDevice(ctx, ctx.CreateCPUAccelerator(0), GpuKind.CpuSim, lanes); }
        catch { ctx.Dispose(); throw; }
    }

    /// <summary>True when a CUDA device is present (false on any failure to ask: no driver, no device).</summary>
    public static bool CudaAvailable()
    {
        try
        {
            using var ctx = Context.Create(b => b.Cuda());
            return ctx.GetCudaDevices().Count > 0;
        }
        catch (Exception) { return false; }
    }

    /// <summary>Accelerators this machine offers: the CPU accelerator and every CUDA device.</summary>
    public static IReadOnlyList<GpuDeviceInfo> List()
    {
        var list = new List<GpuDeviceInfo>();
        using (var ctx = Context.Create(b => b.CPU(CPUDeviceKind.Nvidia)))
            foreach (var d in ctx)
                list.Add(new GpuDeviceInfo("gpu-sim", "cpu-sim", d.Name, HostBytes, HostBytes, d.NumMultiprocessors, d.WarpSize));
        try
        {
            using var ctx = Context.Create(b => b.Cuda());
            foreach (var d in ctx.GetCudaDevices())
            {
                long? free = null;
                try { using var acc = d.CreateCudaAccelerator(ctx); free = acc.GetFreeMemory(); }
                catch (Exception) { }
                list.Add(new GpuDeviceInfo("gpu", $"cuda:{d.Name}", d.Name, d.MemorySize, free, d.NumMultiprocessors, d.WarpSize));
            }
        }
        catch (Exception) { /* no CUDA driver: the CPU accelerator only */ }
        return list;
    }

    /// <summary>Waits for every launched kernel (host reads do this themselves).</summary>
    public void Synchronize() => Accelerator.Synchronize();

    /// <summary>Throws <see cref="GpuMemoryException"/> when <paramref name="neededBytes"/> exceeds free device memory.</summary>
    public void EnsureFree(long neededBytes, string what)
    {
        long free = FreeBytes;
        if (neededBytes > free)
            throw new GpuMemoryException($"not enough device memory on {Label} for {what}: need {Format(neededBytes)}, free {Format(free)}");
    }

    public static string Format(long bytes) => bytes >= 1L << 30 ? $"{bytes / (double)(1L << 30):F2} GiB" : $"{bytes / (double)(1 << 20):F1} MiB";

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Accelerator.Dispose();
        _context.Dispose();
    }
}

/// <summary>One accelerator as <c>engine inspect --devices</c> lists it.</summary>
public sealed record GpuDeviceInfo(string Backend, string Label, string Name, long MemoryBytes, long? FreeBytes, int Multiprocessors, int WarpSize);

/// <summary>The requested GPU is not there.</summary>
public sealed class GpuUnavailableException(string message) : InvalidOperationException(message);

/// <summary>Weights or KV do not fit the device's free memory.</summary>
public sealed class GpuMemoryException(string message) : InvalidOperationException(message);
