// Entry point of the `engine` command: registers the sub-commands (one file each under Commands/).
using System.CommandLine;

var root = new RootCommand("Engine — in-process LLM inference with a paged, tiered KV memory");
// Register commands here, one line each:
// root.Subcommands.Add(Engine.Cli.Commands.InspectCommand.Create());
root.Subcommands.Add(Engine.Cli.Commands.InspectCommand.Create());
root.Subcommands.Add(Engine.Cli.Commands.ConvertCommand.Create());
root.Subcommands.Add(Engine.Cli.Commands.TokenizeCommand.Create());
root.Subcommands.Add(Engine.Cli.Commands.RunCommand.Create());
root.Subcommands.Add(Engine.Cli.Commands.ChatCommand.Create());
root.Subcommands.Add(Engine.Cli.Commands.LogitsCommand.Create());
root.Subcommands.Add(Engine.Cli.Commands.BenchParallelCommand.Create());
root.Subcommands.Add(Engine.Cli.Commands.BenchCommand.Create());
root.Subcommands.Add(Engine.Cli.Commands.EvalCommand.Create());
root.Subcommands.Add(Engine.Cli.Commands.MemoryCommand.Create());
root.Subcommands.Add(Engine.Cli.Commands.ServeCommand.Create());
root.Subcommands.Add(Engine.Cli.Commands.GpuCheckCommand.Create());

return root.Parse(args).Invoke();
