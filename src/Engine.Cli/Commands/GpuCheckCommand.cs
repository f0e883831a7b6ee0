// Owns: `engine gpu-check` — runs every GPU op and a whole model on the chosen GPU backend against the CPU backend
// and prints PASS/FAIL per check (exit 1 on any failure). For machines with a GPU but no .NET SDK (no `dotnet test`).
using System.CommandLine;
using Engine.Runtime;
using Engine.Runtime.Gpu;

namespace Engine.Cli.Commands;

public static class GpuCheckCommand
{
    public static Command Create()
    {
        var backend = new Option<string>("--backend") { Description = "gpu (CUDA) or gpu-sim.", DefaultValueFactory = _ => "gpu" };
        var model = new Option<string?>("--model", "-m") { Description = "GGUF for the whole-model check (default: models/stories260K.gguf beside the CLI or in the working folder)." };
        var small = new Option<bool>("--small") { Description = "Small shapes (gpu-sim speed)." };
        var cmd = new Command("gpu-check", "Check the GPU backend against the CPU backend (every op by NMSE, then a whole model).") { backend, model, small };
        cmd.SetAction((pr, ct) => GenerationCommandSupport.Guard(() =>
        {
            string name = pr.GetValue(backend)!;
            string? m = pr.GetValue(model) ?? new[] { "models/stories260K.gguf", Path.Combine(AppContext.BaseDirectory, "models", "stories260K.gguf") }.FirstOrDefault(File.Exists);
            int fails = GpuSelfCheck.RunOn(name, pr.GetValue(small), m, Console.Out.WriteLine);
            return Task.FromResult(fails == 0 ? 0 : 1);
        }));
        return cmd;
    }
}
