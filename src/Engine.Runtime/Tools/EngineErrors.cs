// Owns: how a front end (CLI, server) recognises and prints the engine's input errors without referencing the layers
// that throw them (Formats' ModelFormatException, Memory's MemoryFormatException, …): one predicate, one cleaner.
// Invariants: IsInputError is true exactly for failures caused by bad input, files or resources (never for bugs such as
// NullReferenceException); Clean/Quote are Engine.Tensors.ErrorText's (one line, long names cut).
namespace Engine.Runtime.Tools;

using Engine.Formats;
using Engine.Memory.Documents;
using Engine.Tensors;

public static class EngineErrors
{
    /// <summary>The message on one line, control characters removed (Engine.Tensors.ErrorText.Clean).</summary>
    public static string Clean(string? message) => ErrorText.Clean(message);

    /// <summary>A name or value quoted for an error message, cut when long (Engine.Tensors.ErrorText.Quote).</summary>
    public static string Quote(string? value) => ErrorText.Quote(value);

    /// <summary>True for a failure the user can fix (bad file, bad argument, missing file, corrupt memory, not enough
    /// memory): print one line and exit non-zero rather than a stack trace.</summary>
    public static bool IsInputError(Exception e) => e is FileNotFoundException or DirectoryNotFoundException or ModelFormatException
        or ArgumentException or InvalidOperationException or NotSupportedException or IOException or FormatException
        or MemoryFormatException or UnauthorizedAccessException or InsufficientMemoryException or System.Text.Json.JsonException;

    /// <summary>True for a bad or unreadable model / tokenizer file (Formats' ModelFormatException).</summary>
    public static bool IsModelFormatError(Exception e) => e is ModelFormatException;
}
