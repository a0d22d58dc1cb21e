using System.CommandLine;

namespace Pipeline.Host.Commands;

/// <summary>The list of `pipeline` subcommands; add a line here when a command joins.</summary>
public static class CommandCatalog
{
    public static IEnumerable<Command> All()
    {
        yield return MakeTestModelCommand.Create();
        yield return GenerateCommand.Create();
        yield return ChatCommand.Create();
        yield return EvalCommand.Create();
        yield return TokenizeCommand.Create();
        yield return DetokenizeCommand.Create();
        yield return ConvertCommand.Create();
        yield return RenderChatCommand.Create();
        yield return ImatrixCommand.Create();
        yield return BenchCommand.Create();
        yield return ServeCommand.Create();
        yield return BenchVisionCommand.Create();
    }
}
