// Owns: `engine inspect --model PATH`: prints what a model/tokenizer file holds — format, architecture,
// hyper-parameters, tokenizer kind and size, the tensor table (name, type, shape, bytes) and totals;
// `engine inspect --devices`: the accelerators the GPU backends can use (ILGPU's CPU accelerator = gpu-sim, CUDA devices).
// Invariants: results go to stdout; a bad or unsupported file prints one line to stderr and exits 1.
using System.CommandLine;
using System.Text.Json;
using Engine.Formats;
using Engine.Tokenizers;
using Spectre.Console;

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
            var list = Engine.Runtime.Backends.Devices();
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
            if (File.Exists(path) && ModelFiles.DetectKind(path) == "json")
            {
                console.WriteLine(DescribeJson(path));
                return 0;
            }
            if (File.Exists(path) && tokenizerPath == null && IsTokenizerOnlyFile(path))
            {
                PrintTokenizer(console, path, Tokenizer.Load(path));
                return 0;
            }
            using var m = ModelFiles.Open(path, tokenizerPath);
            Print(console, m, showTensors);
            return 0;
        }
        catch (Exception e) when (e is ModelFormatException or IOException or UnauthorizedAccessException or JsonException)
        {
            Console.Error.WriteLine($"error: {Engine.Tensors.ErrorText.Clean(e.Message)}");
            return 1;
        }
    }

    private static string DescribeJson(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        var root = doc.RootElement;
        if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("model", out var model) && model.ValueKind == JsonValueKind.Object
            && model.TryGetProperty("vocab", out var vocab))
        {
            int n = vocab.ValueKind switch { JsonValueKind.Object => vocab.EnumerateObject().Count(), JsonValueKind.Array => vocab.GetArrayLength(), _ => 0 };
            int added = root.TryGetProperty("added_tokens", out var at) && at.ValueKind == JsonValueKind.Array ? at.GetArrayLength() : 0;
            string type = model.TryGetProperty("type", out var t) ? t.GetString() ?? "?" : "?";
            int merges = model.TryGetProperty("merges", out var mg) && mg.ValueKind == JsonValueKind.Array ? mg.GetArrayLength() : 0;
            return $"tokenizer.json: {n} tokens ({type}, {merges} merges) + {added} added tokens";
        }
        if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("architectures", out _))
            throw new ModelFormatException(path, -1, "this is a Hugging Face config.json; inspect its folder instead");
        if (root.ValueKind == JsonValueKind.Object && (root.TryGetProperty("tokenizer_class", out _) || root.TryGetProperty("added_tokens_decoder", out _)))
        {
            string Str(string key) => root.TryGetProperty(key, out var v) ? v.ValueKind switch
            {
                JsonValueKind.String => v.GetString() ?? "",
                JsonValueKind.Null => "(none)",
                JsonValueKind.Object when v.TryGetProperty("content", out var c) => c.GetString() ?? "",
                _ => v.ToString(),
            } : "(none)";
            int template = root.TryGetProperty("chat_template", out var ct) && ct.ValueKind == JsonValueKind.String ? ct.GetString()!.Length : 0;
            return $"tokenizer_config.json: class {Str("tokenizer_class")}, bos {Str("bos_token")}, eos {Str("eos_token")}, "
                + (template > 0 ? $"chat template {template} chars" : "no chat template");
        }
        if (root.ValueKind == JsonValueKind.Object && root.EnumerateObject().All(p => p.Value.ValueKind == JsonValueKind.Number))
            return $"JSON vocabulary (token → id): {root.EnumerateObject().Count()} tokens";
        throw new ModelFormatException(path, -1, "JSON file not recognised (expected tokenizer.json)");
    }

    /// <summary>Tokenizer files ModelFiles does not open: a SentencePiece .model or a GPT-2 vocab.bpe.</summary>
    private static bool IsTokenizerOnlyFile(string path) =>
        Gpt2EncoderVocabulary.StartsWithVersionLine(path) || ModelFiles.DetectKind(path) == "sentencepiece-model";

    private static void PrintTokenizer(IAnsiConsole console, string path, Tokenizer tok)
    {
        var v = tok.Vocabulary;
        var info = new Table().Border(TableBorder.Rounded).AddColumn("key").AddColumn("value");
        info.Title = new TableTitle(Markup.Escape(Path.GetFileName(path)));
        info.AddRow("path", Markup.Escape(path));
        info.AddRow("format", ModelFiles.DetectKind(path) == "sentencepiece-model" ? "SentencePiece model (protobuf)" : "GPT-2 encoder.json + vocab.bpe");
        info.AddRow("file size", Bytes(new FileInfo(path).Length));
        string kind = tok.Model switch { TokenizerModel.SentencePiece => "SentencePiece BPE", TokenizerModel.ByteLevelBpe => "byte-level BPE", _ => tok.Model.ToString() };
        string pre = v.PreTokenizer is { } p ? $", pre {p}" : "";
        int merges = v.Merges?.Length ?? 0;
        info.AddRow("tokenizer", Markup.Escape($"{kind}{pre}, {tok.VocabSize} tokens{(merges > 0 ? $", {merges} merges" : "")}"));
        string Id(int? id) => id is int i ? $"{i} {tok.TokenText(i)}" : "(none)";
        info.AddRow("bos", Markup.Escape(Id(tok.Bos)));
        info.AddRow("eos", Markup.Escape(Id(tok.Eos)));
        info.AddRow("unk", Markup.Escape(Id(v.Unk)));
        info.AddRow("add bos", tok.AddBos.ToString());
        console.Write(info);
    }

    private static void Print(IAnsiConsole console, ModelFile m, bool showTensors)
    {
        string arch = m.Architecture ?? "(none)";
        var info = new Table().Border(TableBorder.Rounded).AddColumn("key").AddColumn("value");
        info.Title = new TableTitle(Markup.Escape(Path.GetFileName(m.Path.TrimEnd('/'))));
        info.AddRow("path", Markup.Escape(m.Path));
        info.AddRow("format", m.Format.ToString());
        if (File.Exists(m.Path)) info.AddRow("file size", Bytes(new FileInfo(m.Path).Length));
        info.AddRow("architecture", Markup.Escape(arch));
        foreach (var (k, v) in m.Metadata)
        {
            if (k.StartsWith("tokenizer.", StringComparison.Ordinal) || k == "general.architecture") continue;
            info.AddRow(Markup.Escape(k), Markup.Escape(Show(v)));
        }
        var tokens = m.GetArray<string>(TokenizerKeys.Tokens);
        string? json = m.GetString(TokenizerKeys.TokenizerJsonPath);
        if (tokens != null || m.GetString(TokenizerKeys.Model) != null)
        {
            string model = m.GetString(TokenizerKeys.Model) ?? "?";
            string kind = model switch { "llama" => "SentencePiece BPE", "gpt2" => "byte-level BPE", _ => model };
            string pre = m.GetString(TokenizerKeys.Pre) is { } p ? $", pre {p}" : "";
            int merges = m.GetArray<string>(TokenizerKeys.Merges)?.Length ?? 0;
            info.AddRow("tokenizer", Markup.Escape($"{model} ({kind}{pre}), {tokens?.Length ?? 0} tokens{(merges > 0 ? $", {merges} merges" : "")}"));
            foreach (var key in new[] { TokenizerKeys.BosId, TokenizerKeys.EosId, TokenizerKeys.UnkId, TokenizerKeys.PadId, TokenizerKeys.AddBos, TokenizerKeys.AddEos })
                if (m.Metadata.TryGetValue(key, out var v)) info.AddRow(Markup.Escape(key), Markup.Escape(Show(v)));
            if (m.GetString(TokenizerKeys.ChatTemplate) is { } ct) info.AddRow("chat template", $"{ct.Length} chars");
        }
        else if (json != null) info.AddRow("tokenizer", Markup.Escape($"tokenizer.json at {json}"));
        else if (arch.StartsWith("rwkv", StringComparison.Ordinal))
            info.AddRow("tokenizer", "bytes (token id = byte value, 256 tokens; no tokenizer metadata)");
        else info.AddRow("tokenizer", "(none)");
        console.Write(info);

        long totalBytes = 0, totalElements = 0;
        foreach (var t in m.Tensors) { totalBytes += t.ByteLength; totalElements += t.ElementCount; }
        if (showTensors && m.Tensors.Count > 0)
        {
            var table = new Table().Border(TableBorder.Simple).AddColumn("#").AddColumn("tensor").AddColumn("type")
                .AddColumn("shape (ne0, ne1, ...)").AddColumn(new TableColumn("bytes").RightAligned());
            for (int i = 0; i < m.Tensors.Count; i++)
            {
                var t = m.Tensors[i];
                table.AddRow(i.ToString(), Markup.Escape(t.Name), t.Type.ToString(), Markup.Escape($"[{string.Join(", ", t.Shape)}]"), t.ByteLength.ToString("N0"));
            }
            console.Write(table);
        }
        var byType = m.Tensors.GroupBy(t => t.Type).Select(g => $"{g.Key}: {g.Count()}");
        console.WriteLine($"{m.Tensors.Count} tensors, {totalElements:N0} parameters, {Bytes(totalBytes)} of tensor data"
            + (m.Tensors.Count > 0 ? $" ({string.Join(", ", byType)})" : ""));
    }

    private static string Show(object v) => v switch
    {
        string s => s.Length > 80 ? s[..77] + "..." : s,
        Array a => $"{a.GetType().GetElementType()!.Name}[{a.Length}]",
        float f => f.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
        double d => d.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
        _ => Convert.ToString(v, System.Globalization.CultureInfo.InvariantCulture) ?? "",
    };

    private static string Bytes(long n) => n switch
    {
        >= 1L << 30 => $"{n / (double)(1L << 30):F2} GiB",
        >= 1L << 20 => $"{n / (double)(1L << 20):F2} MiB",
        >= 1L << 10 => $"{n / 1024.0:F1} KiB",
        _ => $"{n} B",
    } + $" ({n:N0} bytes)";
}
