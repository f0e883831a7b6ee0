// Owns: `engine inspect --model PATH`: prints what a model/tokenizer file holds — format, architecture,
// hyper-parameters, tokenizer kind and size, the tensor table (name, type, shape, bytes) and totals;
// `engine inspect --devices`: the accelerators the GPU backends can use (ILGPU's CPU accelerator = gpu-sim, CUDA devices).
// Invariants: results go to stdout; a bad or unsupported file prints one line to stderr and exits 1.
using System.CommandLine;
using Spectre.Console;

using Engine.Runtime.Tools;

namespace Engine.Cli.Commands;

public static class InspectCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model", "-m") { Description = "model or tokenizer file (GGUF, llama2.c .bin, safetensors, HF folder, tokenizer.json)" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "tokenizer file whose metadata replaces the model's (llama2.c .bin or GGUF)" };
        var noTensors = new Option<bool>("--no-tensors") { Description = "omit the tensor table" };
        var devices = new Option<bool>("--devices") { Description = "list the accelerators the gpu / gpu-sim backends can use (name, memory, SMs)" };
        var cmd = new Command("inspect", "Show a model file's architecture, hyper-parameters, tokenizer and tensors");
        cmd.Options.Add(model);
        cmd.Options.Add(tokenizer);
        cmd.Options.Add(noTensors);
        cmd.Options.Add(devices);
        cmd.SetAction(r =>
        {
            if (r.GetValue(devices))
            {
                int rc = PrintDevices();
                return rc != 0 || r.GetValue(model) == null ? rc : Run(r.GetValue(model)!, r.GetValue(tokenizer), !r.GetValue(noTensors));
            }
            if (r.GetValue(model) == null) { Console.Error.WriteLine("inspect: --model is required (or --devices)"); return 1; }
            return Run(r.GetValue(model)!, r.GetValue(tokenizer), !r.GetValue(noTensors));
        });
        return cmd;
    }

    /// <summary>Prints one line per accelerator: backend, label, memory (free where known), multiprocessors, warp size.</summary>
    public static int PrintDevices()
    {
        try
        {
            var list = Engine.Runtime.Backends.Accelerators();
            bool cuda = false;
            foreach (var d in list)
            {
                cuda |= d.Backend == "gpu";
                string free = d.FreeBytes is long f ? $", {f / (double)(1L << 30):F1} GiB free" : "";
                Console.Out.WriteLine($"{d.Backend,-8} {d.Label,-28} {d.MemoryBytes / (double)(1L << 30),8:F1} GiB{free}, {d.Multiprocessors} SMs, warp {d.WarpSize}");
            }
            if (!cuda) Console.Out.WriteLine("no CUDA device: --backend auto uses cpu; gpu-sim runs the GPU kernels on the CPU (slow)");
            return 0;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"inspect --devices: {e.Message}");
            return 1;
        }
    }

    public static int Run(string path, string? tokenizerPath, bool showTensors)
    {
        var console = ConsoleOutput.Create();
        try
        {
            var r = ModelInspection.Inspect(path, tokenizerPath);
            if (r.Line != null)
            {
                console.WriteLine(r.Line);
                return 0;
            }
            var info = new Table().Border(TableBorder.Rounded).AddColumn("key").AddColumn("value");
            info.Title = new TableTitle(Markup.Escape(r.Title));
            foreach (var (k, v) in r.Info) info.AddRow(Markup.Escape(k), Markup.Escape(v));
            console.Write(info);
            if (r.Footer == null) return 0;
            if (showTensors && r.Tensors.Count > 0)
            {
                var table = new Table().Border(TableBorder.Simple).AddColumn("#").AddColumn("tensor").AddColumn("type")
                    .AddColumn("shape (ne0, ne1, ...)").AddColumn(new TableColumn("bytes").RightAligned());
                for (int i = 0; i < r.Tensors.Count; i++)
                {
                    var t = r.Tensors[i];
                    table.AddRow(i.ToString(), Markup.Escape(t.Name), t.Type, Markup.Escape(t.Shape), t.Bytes.ToString("N0"));
                }
                console.Write(table);
            }
            console.WriteLine(r.Footer);
            return 0;
        }
        catch (Exception e) when (EngineErrors.IsModelFormatError(e) || e is IOException or UnauthorizedAccessException or System.Text.Json.JsonException)
        {
            Console.Error.WriteLine($"error: {EngineErrors.Clean(e.Message)}");
            return 1;
        }
    }
}
