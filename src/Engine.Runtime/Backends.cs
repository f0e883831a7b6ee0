// Owns: mapping a backend name to an IBackend instance, and building a model on it — for the GPU backends the model
// gets the device forward (TransformerModel.Executor) so weights, activations and KV stay on the device.
// Names: cpu (SIMD), reference (scalar), gpu (first CUDA device), gpu-sim (the GPU kernels on ILGPU's CPU
// accelerator), auto (gpu when a CUDA device is present, else cpu — so a machine without a GPU behaves as before).
using Engine.Formats;
using Engine.Gpu;
using Engine.Kernels;
using Engine.Model;
using Engine.Runtime.Gpu;

namespace Engine.Runtime;

public static class Backends
{
    public static IReadOnlyList<string> Names { get; } = ["auto", "cpu", "reference", "gpu", "gpu-sim"];

    /// <summary>Creates the backend <paramref name="name"/>; <paramref name="threads"/> ≤ 0 = all cores.</summary>
    public static IBackend Create(string name, int threads = 0) => name.ToLowerInvariant() switch
    {
        "reference" => new ReferenceBackend(),
        "cpu" => CreateCpu(threads),
        "gpu" => new GpuBackend(GpuDevice.OpenCuda()),
        "gpu-sim" => new GpuBackend(GpuDevice.OpenCpuSim()),
        "auto" => GpuDevice.CudaAvailable() ? new GpuBackend(GpuDevice.OpenCuda()) : CreateCpu(threads),
        _ => throw new ArgumentException($"unknown backend '{name}' (known: {string.Join(", ", Names)})", nameof(name)),
    };

    // more threads than cores only slow a compute-bound engine (the issue-13 probe: 1000 threads, first token 50×
    // slower), so the API caps them at the core count; negative values are refused by OptionsValidation first.
    private static IBackend CreateCpu(int threads) => threads < 0
        ? throw new ArgumentException($"threads = {threads} is out of range; allowed: 0 (all cores) .. {OptionsValidation.MaxThreads}")
        : new CpuBackend(OptionsValidation.EffectiveThreads(threads));

    /// <summary>Builds any supported model on <paramref name="backend"/>. On a GPU backend a transformer runs its whole
    /// forward on the device (KV in device memory, F16 unless <paramref name="gpuKvF32"/>); the device must hold the
    /// weights plus <paramref name="kvBytesF32"/> of KV budget (counted at F32, halved for F16) — checked before any upload.</summary>
    public static ILanguageModel LoadModel(ModelFile file, IBackend backend, bool ownsFile = false, long kvBytesF32 = 0, bool gpuKvF32 = false)
    {
        var model = ModelLoader.LoadAny(file, backend, ownsFile);
        if (backend is GpuBackend gpu && model is TransformerModel tm)
        {
            try
            {
                long kv = gpuKvF32 ? kvBytesF32 : kvBytesF32 / 2;
                long weights = DeviceTransformer.EstimateWeightBytes(tm.Weights.TokenEmbedding, tm.Weights.Output,
                    tm.Weights.Layers.SelectMany(l => new[] { l.Query, l.Key, l.Value, l.Output, l.Gate, l.Up, l.Down }));
                gpu.Device.EnsureFree(weights + kv, $"the weights ({GpuDevice.Format(weights)}) and the KV budget ({GpuDevice.Format(kv)})");
                tm.Executor = new GpuTransformerExecutor(tm, gpu.Device, kvF16: !gpuKvF32);
            }
            catch
            {
                if (!ownsFile) model.Dispose();
                throw;
            }
        }
        return model;
    }

    /// <summary>The accelerators the GPU backends can use: ILGPU's CPU accelerator (gpu-sim) and every CUDA device.</summary>
    public static IReadOnlyList<GpuDeviceInfo> Devices() => GpuDevice.List();

    /// <summary>The accelerators as Runtime records (<see cref="Devices"/> without Engine.Gpu types), for front ends.</summary>
    public static IReadOnlyList<AcceleratorInfo> Accelerators() =>
        GpuDevice.List().Select(d => new AcceleratorInfo(d.Backend, d.Label, d.Name, d.MemoryBytes, d.FreeBytes, d.Multiprocessors, d.WarpSize)).ToList();

    /// <summary>A device label for result rows: <c>cuda:NVIDIA H200</c>, <c>cpu-sim</c>, or the backend's name.</summary>
    public static string DeviceLabel(IBackend backend) => backend is GpuBackend g ? g.Device.Label : backend.Name;
}

/// <summary>One accelerator a GPU backend can use: backend name (gpu / gpu-sim), label, device name, memory (free where
/// known), multiprocessors, warp size.</summary>
public sealed record AcceleratorInfo(string Backend, string Label, string Name, long MemoryBytes, long? FreeBytes, int Multiprocessors, int WarpSize);
