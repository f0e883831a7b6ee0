// Owns: `engine tokenize` — text → token ids with the tokenizer of a GGUF, a tokenizer.json, a llama2.c
// tokenizer (or checkpoint), a GPT-2 encoder.json / vocab.bpe, a SentencePiece tokenizer.model, or an rwkv.cpp model
// (byte vocabulary). Text comes from the TEXT argument or, exactly as stored, from --file (bytes decoded
// as UTF-8; nothing trimmed, no newline translation). --ids prints only the ids on one line (an empty line for
// empty text); otherwise a table of id and piece. Errors: one line on stderr, exit code 1.
using System.CommandLine;
using System.Text;
using Spectre.Console;

using Engine.Runtime.Tools;

namespace Engine.Cli.Commands;

public static class TokenizeCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model", "-m") { Description = "GGUF, tokenizer.json, llama2.c tokenizer/checkpoint, GPT-2 encoder.json/vocab.bpe, SentencePiece .model, or rwkv.cpp model", Required = true };
        var file = new Option<string?>("--file", "-f") { Description = "read the text from this file (exact bytes, UTF-8)" };
        var addSpecial = new Option<bool>("--add-special") { Description = "add BOS/EOS as the vocabulary asks" };
        var parseSpecial = new Option<bool>("--parse-special") { Description = "treat special-token text (e.g. <|im_start|>) as that token" };
        var idsOnly = new Option<bool>("--ids") { Description = "print only the ids, space-separated, on one line" };
        var text = new Argument<string?>("TEXT") { Description = "the text to tokenize (or use --file)", Arity = ArgumentArity.ZeroOrOne };

        var command = new Command("tokenize", "Tokenize text with a model's tokenizer") { model, file, addSpecial, parseSpecial, idsOnly, text };
        command.SetAction(parse =>
        {
            try
            {
                string? path = parse.GetValue(file), inline = parse.GetValue(text);
                if ((path == null) == (inline == null)) return Fail("give exactly one of TEXT or --file");
                string input = path != null ? ReadExact(path) : inline!;
                var tokenizer = FileTokenizer.Load(parse.GetValue(model)!);
                var ids = tokenizer.Encode(input, parse.GetValue(addSpecial), parse.GetValue(parseSpecial));
                if (parse.GetValue(idsOnly))
                {
                    var stdout = Console.Out;
                    stdout.Write(string.Join(' ', ids));
                    stdout.Write('\n');
                    stdout.Flush();
                    return 0;
                }
                var table = new Table().AddColumn(new TableColumn("id").RightAligned()).AddColumn("piece")
                    .Caption($"{ids.Length} tokens");
                foreach (var id in ids) table.AddRow(id.ToString(), Markup.Escape(Visible(tokenizer.TokenPiece(id))));
                ConsoleOutput.Create().Write(table);
                return 0;
            }
            catch (Exception e) when (EngineErrors.IsModelFormatError(e) || e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
            {
                return Fail(EngineErrors.Clean(e.Message));
            }
        });
        return command;
    }

    private static string ReadExact(string path)
    {
        if (!File.Exists(path)) throw new IOException($"{path}: file not found");
        return new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false).GetString(File.ReadAllBytes(path));
    }

    /// <summary>Makes whitespace and control characters visible in the table.</summary>
    private static string Visible(string piece)
    {
        var sb = new StringBuilder();
        foreach (var c in piece)
            sb.Append(c switch { '\n' => "\\n", '\r' => "\\r", '\t' => "\\t", ' ' => "·", _ when char.IsControl(c) => $"\\x{(int)c:X2}", _ => c.ToString() });
        return sb.ToString();
    }

    private static int Fail(string message)
    {
        Console.Error.WriteLine("engine tokenize: " + message.ReplaceLineEndings(" "));
        return 1;
    }
}
