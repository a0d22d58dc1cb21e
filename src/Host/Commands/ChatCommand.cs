using System.CommandLine;
using Pipeline.Actors.Client;
using Pipeline.Model.Checkpoint;
using Pipeline.Model.TestModels;
using Pipeline.Tokenizer.Chat;

namespace Pipeline.Host.Commands;

/// <summary>
/// `pipeline chat [--model DIR] [sampling flags]`: a terminal chat on the actor pipeline (see <see cref="ChatRepl"/>).
/// Without --model the built-in tiny test model is used (generated on first use).
/// </summary>
public static class ChatCommand
{
    /// <summary>The command; <paramref name="input"/> replaces stdin (tests).</summary>
    public static Command Create(TextReader? input = null)
    {
        var model = new Option<DirectoryInfo?>("--model") { Description = "checkpoint folder; default: the built-in tiny test model" };
        var system = new Option<string?>("--system") { Description = "system prompt" };
        var maxTokens = new Option<int>("--max-tokens") { Description = "most tokens per answer", DefaultValueFactory = _ => 2048 };
        var temperature = new Option<float?>("--temperature") { Description = "0 = greedy; default from generation_config.json" };
        var topK = new Option<int?>("--top-k") { Description = "0 = off; default from generation_config.json" };
        var topP = new Option<float?>("--top-p") { Description = "1 = off; default from generation_config.json" };
        var minP = new Option<float?>("--min-p") { Description = "0 = off" };
        var seed = new Option<ulong?>("--seed") { Description = "sampling seed (same seed, same tokens)" };
        var effort = new Option<ReasoningEffort?>("--reasoning-effort") { Description = "none, low, medium or high (medium and high think)" };
        var think = new Option<bool>("--think") { Description = "let the model think before answering (/think on|off toggles)" };
        var threads = new Option<int>("--threads") { Description = "CPU threads (0 = all cores)", DefaultValueFactory = _ => 0 };

        var command = new Command("chat", "Chat with the model in the terminal (/help lists the commands).")
        {
            model, system, maxTokens, temperature, topK, topP, minP, seed, effort, think, threads,
        };
        // A synchronous action: System.CommandLine then leaves Ctrl-C to us (it stops the answer, not the program).
        command.SetAction(parse =>
        {
            var output = parse.InvocationConfiguration.Output;
            var error = parse.InvocationConfiguration.Error;
            try
            {
                var options = new SendOptions
                {
                    MaxNewTokens = parse.GetValue(maxTokens),
                    Temperature = parse.GetValue(temperature),
                    TopK = parse.GetValue(topK),
                    TopP = parse.GetValue(topP),
                    MinP = parse.GetValue(minP),
                    Seed = parse.GetValue(seed),
                    ReasoningEffort = parse.GetValue(effort),
                    EnableThinking = parse.GetValue(think) ? true : null,
                };
                if (options.MaxNewTokens <= 0)
                    throw new ArgumentException($"--max-tokens {options.MaxNewTokens} must be positive");
                string directory = BuiltInModel.Resolve(parse.GetValue(model), error);
                error.WriteLine($"pipeline chat: loading {directory}");
                var sessionOptions = new ChatSessionOptions { Threads = parse.GetValue(threads), System = parse.GetValue(system) };
                return Run(directory, sessionOptions, options, input, output, error).GetAwaiter().GetResult();
            }
            catch (Exception e) when (e is ArgumentException or CheckpointFormatException or IOException or NotSupportedException)
            {
                error.WriteLine($"pipeline chat: {e.Message}");
                return 1;
            }
        });
        return command;
    }

    private static async Task<int> Run(string directory, ChatSessionOptions sessionOptions, SendOptions options, TextReader? input, TextWriter output, TextWriter error)
    {
        await using var session = await ChatSession.LoadAsync(directory, sessionOptions);
        bool terminal = input is null && !Console.IsInputRedirected;
        bool color = ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected && Environment.GetEnvironmentVariable("NO_COLOR") is null;
        var repl = new ChatRepl(session, options, input ?? Console.In, output, error, color, showPrompt: terminal);
        if (terminal)
            error.WriteLine("pipeline chat: ready; /help lists the commands, Ctrl-C stops an answer, Ctrl-D quits");

        void OnCancel(object? sender, ConsoleCancelEventArgs e) => e.Cancel = repl.CancelCurrentTurn();
        Console.CancelKeyPress += OnCancel;
        try
        {
            return await repl.RunAsync();
        }
        finally
        {
            Console.CancelKeyPress -= OnCancel;
        }
    }
}
