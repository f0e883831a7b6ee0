// Owns: `engine convert --model IN [--tokenizer TOK] --out OUT.gguf`: writes any readable model (llama2.c checkpoint,
// safetensors/HF folder, GGUF) as GGUF v3 with its metadata (tokenizer metadata merged in) and tensors unchanged.
// Invariants: the output is written to a temporary file and moved into place only when complete; the input is never
// overwritten; errors print one line to stderr and exit 1.
using System.CommandLine;
using Engine.Formats;
using Engine.Formats.Gguf;

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
        string tmp = outPath + ".tmp";
        try
        {
            if (Path.GetFullPath(outPath) == Path.GetFullPath(modelPath))
                throw new IOException("--out must differ from --model");
            using var m = ModelFiles.Open(modelPath, tokenizerPath);
            if (m.Tensors.Count == 0) throw new ModelFormatException(modelPath, -1, "has no tensors: nothing to convert");
            var metadata = m.Metadata.Where(kv => kv.Key != TokenizerKeys.TokenizerJsonPath).ToList();
            var w = new GgufWriter();
            foreach (var (k, v) in metadata) if (k != GgufReader.AlignmentKey) w.AddMetadata(k, v);
            foreach (var t in m.Tensors) w.AddTensor(t);
            w.Write(tmp);
            File.Move(tmp, outPath, overwrite: true);
            if (m.GetArray<string>(TokenizerKeys.Tokens) == null)
                Console.Error.WriteLine("warning: no tokenizer metadata embedded (pass --tokenizer)");
            Console.WriteLine($"wrote {outPath}: {m.Tensors.Count} tensors, {metadata.Count} metadata keys, {new FileInfo(outPath).Length:N0} bytes");
            return 0;
        }
        catch (Exception e) when (e is ModelFormatException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            try { File.Delete(tmp); } catch (IOException) { }
            Console.Error.WriteLine($"error: {Engine.Tensors.ErrorText.Clean(e.Message)}");
            return 1;
        }
    }
}
