// Owns: running one `engine` command in-process for CLI tests: parses the arguments under a root command, invokes it with
// stdout/stderr captured (and stdin replaced), and restores the console. Tests using it are [NonParallelizable] because
// the console is process-wide.
using System.CommandLine;

namespace Engine.Runtime.Tests;

internal static class CliInvoker
{
    /// <summary>Exit code and captured stdout / stderr of <c>command args…</c> (stdin reads <paramref name="stdin"/>).</summary>
    public static (int Code, string Out, string Err) Invoke(Command command, string[] args, string stdin = "")
    {
        var root = new RootCommand { command };
        var (oldOut, oldErr, oldIn) = (Console.Out, Console.Error, Console.In);
        var (o, e) = (new StringWriter(), new StringWriter());
        Console.SetOut(o); Console.SetError(e); Console.SetIn(new StringReader(stdin));
        try { return (root.Parse(args).Invoke(), o.ToString(), e.ToString()); }
        finally { Console.SetOut(oldOut); Console.SetError(oldErr); Console.SetIn(oldIn); }
    }
}
