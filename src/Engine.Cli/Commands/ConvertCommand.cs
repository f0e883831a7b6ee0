// Owns: `engine convert --model IN [--tokenizer TOK] --out OUT.gguf`: writes any readable model (llama2.c checkpoint,
// safetensors/HF folder, GGUF) as GGUF v3 with its metadata (tokenizer metadata merged in) and tensors unchanged.
// Invariants: the output is written to a temporary file and moved into place only when complete; the input is never
// overwritten; errors print one line to stderr and exit 1.
using System.CommandLine;

using Engine.Runtime.Tools;

namespace Engine.Cli.Commands;

public static class ConvertCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model", "-m") { Description = "input model (llama2.c .bin, safetensors file/folder, GGUF)", Required = true };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "tokenizer to embed (llama2.c tokenizer .bin or GGUF); default: one found beside a llama2.c checkpoint" };
        var output = new Option<string>("--out", "-o") { Description = "output .gguf path", Required = true };
        var cmd = new Command("convert", "Convert a model to GGUF (tensors copied bit for bit, tokenizer metadata embedded)");
        cmd.Options.Add(model);
        cmd.Options.Add(tokenizer);
        cmd.Options.Add(output);
        cmd.SetAction(r => Run(r.GetValue(model)!, r.GetValue(tokenizer), r.GetValue(output)!));
        return cmd;
    }

    public static int Run(string modelPath, string? tokenizerPath, string outPath)
    {
        try
        {
            var r = ModelConversion.ToGguf(modelPath, tokenizerPath, outPath);
            if (!r.HasTokenizer) Console.Error.WriteLine("warning: no tokenizer metadata embedded (pass --tokenizer)");
            Console.WriteLine($"wrote {outPath}: {r.TensorCount} tensors, {r.MetadataCount} metadata keys, {r.Bytes:N0} bytes");
            return 0;
        }
        catch (Exception e) when (EngineErrors.IsModelFormatError(e) || e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            Console.Error.WriteLine($"error: {EngineErrors.Clean(e.Message)}");
            return 1;
        }
    }
}
