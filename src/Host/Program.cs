using System.CommandLine;
using Pipeline.Host.Commands;

// Each command lives in its own file under Commands/ and is registered here.
var root = new RootCommand("Pipeline: a C# inference runtime for Gemma-4 MLX checkpoints.");
foreach (var command in CommandCatalog.All())
    root.Subcommands.Add(command);
// Ctrl+C / SIGTERM cancel the command's token and give it a few seconds to clean up (without an
// explicit configuration System.CommandLine 2.0.0 lets the signal end the process at once).
var invocation = new InvocationConfiguration { ProcessTerminationTimeout = TimeSpan.FromSeconds(5) };
return await root.Parse(args).InvokeAsync(invocation);
