// Owns: `engine logits` — feed token ids exactly as given (no BOS added) and write raw little-endian float32 logits
// [n_tokens][n_vocab] for every position, as one batch or one token per forward (--decode); F32 KV store.
// The file layout equals the shared reference fixtures' `*.logits.f32`, so outputs compare directly.
using System.CommandLine;
using System.Runtime.InteropServices;
using Engine.Runtime.Tools;

namespace Engine.Cli.Commands;

public static class LogitsCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model", "-m") { Description = "Model file.", Required = true };
        var tokens = new Option<string>("--tokens") { Description = "Comma-separated token ids, fed as given (no BOS added).", Required = true };
        var output = new Option<string>("--out", "-o") { Description = "Output file: float32 LE [n_tokens][n_vocab].", Required = true };
        var decode = new Option<bool>("--decode") { Description = "One token per forward call instead of one batch." };
        var backend = GenerationCommandSupport.BackendOption();
        var threads = GenerationCommandSupport.ThreadsOption();

        var cmd = new Command("logits", "Write the logits of every position of a token sequence to a raw float32 file.")
        {
            model, tokens, output, decode, backend, threads,
        };
        cmd.SetAction((pr, ct) => GenerationCommandSupport.Guard(() =>
        {
            int[] ids = ParseIds(pr.GetValue(tokens)!);
            string outPath = pr.GetValue(output)!;
            if (Directory.Exists(outPath)) throw new ArgumentException($"--out {EngineErrors.Quote(outPath)} is a directory; give a file path");
            string path = pr.GetValue(model)!;
            var result = ModelLogits.Compute(path, pr.GetValue(backend)!, pr.GetValue(threads), ids, pr.GetValue(decode), ct);
            var logits = result.Values;   // [n_tokens, n_vocab]
            int vocab = result.VocabSize;
            if (!BitConverter.IsLittleEndian) throw new NotSupportedException("big-endian hosts are not supported");
            // a temp file beside the target, then a rename: a failed or cancelled write leaves no partial file
            string tmp = outPath + $".tmp{Environment.ProcessId}";
            try
            {
                File.WriteAllBytes(tmp, MemoryMarshal.AsBytes(logits.AsSpan()).ToArray());
                File.Move(tmp, outPath, overwrite: true);
            }
            finally { if (File.Exists(tmp)) File.Delete(tmp); }
            Console.Error.WriteLine($"wrote {ids.Length} × {vocab} logits to {pr.GetValue(output)} ({(pr.GetValue(decode) ? "decode" : "batch")}, {result.BackendName}, {result.ForwardTime.TotalMilliseconds:F0} ms)");
            return Task.FromResult(0);
        }));
        return cmd;
    }

    private static int[] ParseIds(string text)
    {
        var parts = text.Split([',', ' '], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (parts.Length == 0) throw new ArgumentException("--tokens is empty");
        return parts.Select(p => int.TryParse(p, out int v) && v >= 0 ? v : throw new ArgumentException($"--tokens: '{p}' is not a token id")).ToArray();
    }
}
