using System.CommandLine;

namespace Pipeline.Host.Commands;

/// <summary>The list of `pipeline` subcommands; add a line here when a command joins.</summary>
public static class CommandCatalog
{
    public static IEnumerable<Command> All()
    {
        yield return TokenizeCommand.Create();
        yield return DetokenizeCommand.Create();
        yield return RenderChatCommand.Create();
    }
}
