// Owns: the typed errors of the Jinja interpreter. Every error names what went wrong and where (1-based line and
// column in the template text), so a bad chat template is one clear line for the user, never a stack trace.
namespace Engine.Tokenizers.Jinja;

/// <summary>A template that cannot be lexed, parsed or evaluated (unknown tag/filter/test/method, type error, ...).</summary>
public class JinjaException : Exception
{
    public JinjaException(string message, int line, int column)
        : base(line > 0 ? $"chat template line {line}, column {column}: {message}" : $"chat template: {message}")
    { Line = line; Column = column; Detail = message; }

    public int Line { get; }
    public int Column { get; }
    /// <summary>The message without the position prefix.</summary>
    public string Detail { get; }
}

/// <summary>The template itself refused the input through <c>raise_exception(message)</c>; Message is the template's text.</summary>
public sealed class JinjaRaisedException(string templateMessage, int line, int column)
    : JinjaException(templateMessage, line, column)
{
    public string TemplateMessage { get; } = templateMessage;
}
