using System.CommandLine;
using Pipeline.Host.Commands;

// Each command lives in its own file under Commands/ and is registered here.
var root = new RootCommand("Pipeline: a C# inference runtime for Gemma-4 MLX checkpoints.");
foreach (var command in CommandCatalog.All())
    root.Subcommands.Add(command);
return await root.Parse(args).InvokeAsync();
