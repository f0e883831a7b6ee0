// Owns: every kernel of kernels/ compiles to PTX for the H200's SM_90 with the context GpuDevice.OpenCuda uses —
// checked without a GPU (ILGPU's PTX backend needs no device), so a kernel that gpu-sim runs but the CUDA backend
// cannot compile (e.g. Math.Exp without ILGPU.Algorithms: an internal compiler error) fails here, not on the H200.
using System.Reflection;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime.Cuda;
using Engine.Gpu.Kernels;

namespace Engine.Gpu.Tests;

[TestFixture]
public sealed class PtxCompileTests
{
    // (kernel, explicitly grouped: launched with KernelConfig)
    private static readonly (MethodInfo Method, bool Explicit)[] Kernels =
    [
        (typeof(MatMulKernel).GetMethod(nameof(MatMulKernel.Run))!, true),
        (typeof(RmsNormKernel).GetMethod(nameof(RmsNormKernel.Run))!, true),
        (typeof(SoftmaxKernel).GetMethod(nameof(SoftmaxKernel.Run))!, true),
        (typeof(ArgmaxKernel).GetMethod(nameof(ArgmaxKernel.Run))!, true),
        (typeof(PagedAttentionKernel).GetMethod(nameof(PagedAttentionKernel.Partial))!, true),
        (typeof(PagedAttentionKernel).GetMethod(nameof(PagedAttentionKernel.Combine))!, false),
        (typeof(GetRowsKernel).GetMethod(nameof(GetRowsKernel.Run))!, false),
        (typeof(RopeKernel).GetMethod(nameof(RopeKernel.Run))!, false),
        (typeof(SiluMulKernel).GetMethod(nameof(SiluMulKernel.Run))!, false),
        (typeof(AddKernel).GetMethod(nameof(AddKernel.Run))!, false),
        (typeof(KvWriteKernel).GetMethod(nameof(KvWriteKernel.Run))!, false),
    ];

    [Test]
    public void EveryKernel_CompilesToPtx_ForSm90()
    {
        Assert.That(Kernels, Has.Length.EqualTo(typeof(GpuMath).Assembly.GetTypes().Count(t => t.Name.EndsWith("Kernel") && t.Namespace == "Engine.Gpu.Kernels") + 1),
            "every kernel class is listed here (PagedAttention has two entry points)");
        using var ctx = Context.Create(b => b.Cuda().EnableAlgorithms().Optimize(OptimizationLevel.O2));
        var backend = new PTXBackend(ctx, new CudaCapabilityContext(CudaArchitecture.SM_90), CudaArchitecture.SM_90, CudaInstructionSet.ISA_80, null);
        var failures = new List<string>();
        foreach (var (m, isExplicit) in Kernels)
        {
            try
            {
                var d = isExplicit ? EntryPointDescription.FromExplicitlyGroupedKernel(m) : EntryPointDescription.FromImplicitlyGroupedKernel(m);
                var k = (PTXCompiledKernel)backend.Compile(d, default);
                Assert.That(k.PTXAssembly, Does.Contain(".entry"), m.DeclaringType!.Name);
            }
            catch (Exception e) when (e is not AssertionException) { failures.Add($"{m.DeclaringType!.Name}.{m.Name}: {e.Message.Split('\n')[0]}"); }
        }
        Assert.That(failures, Is.Empty);
    }
}
