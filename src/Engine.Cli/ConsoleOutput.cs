// Owns: the Spectre.Console instance commands write results to (stdout). Plain text — no ANSI colour or cursor
// codes — when stdout is redirected to a file or pipe, or when NO_COLOR is set (https://no-color.org); a terminal
// gets Spectre's detected colour support. Redirected output is 160 columns wide so tables do not wrap at 80.
using Spectre.Console;

namespace Engine.Cli;

public static class ConsoleOutput
{
    /// <summary>Whether results must be plain text (stdout redirected, or NO_COLOR set to a non-empty value).</summary>
    public static bool Plain => Console.IsOutputRedirected || !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("NO_COLOR"));

    /// <summary>A console writing to the current Console.Out (created per call, so redirection in tests is honoured).</summary>
    public static IAnsiConsole Create()
    {
        bool plain = Plain;
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = plain ? AnsiSupport.No : AnsiSupport.Detect,
            ColorSystem = plain ? ColorSystemSupport.NoColors : ColorSystemSupport.Detect,
            Interactive = plain ? InteractionSupport.No : InteractionSupport.Detect,
            Out = new AnsiConsoleOutput(Console.Out),
        });
        if (Console.IsOutputRedirected) console.Profile.Width = 160;
        return console;
    }
}
