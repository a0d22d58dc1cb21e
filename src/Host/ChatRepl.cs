using System.Globalization;
using Pipeline.Actors;
using Pipeline.Actors.Client;

namespace Pipeline.Host;

/// <summary>
/// The terminal chat behind `pipeline chat`: reads lines from <c>input</c> (commands start with '/'),
/// streams each answer as it comes. With <c>color</c> (stdout is a terminal) reasoning is shown dimmed
/// inline; without it reasoning goes to <c>error</c> so the output holds only answers.
/// </summary>
public sealed class ChatRepl(ChatSession session, SendOptions options, TextReader input, TextWriter output, TextWriter error, bool color, bool showPrompt)
{
    private const string Dim = "\u001b[2m";
    private const string Plain = "\u001b[0m";
    public const string Help = """
        /reset          forget the conversation
        /system TEXT    set the system prompt (starts a new conversation); /system alone clears it
        /think on|off   let the model think before answering
        /image PATH     attach an image to the next message
        /stats          time to first token, prefill and decode speed of the last answer
        /help           this list
        /exit           quit (also Ctrl-D); Ctrl-C stops the current answer
        """;

    private readonly object _gate = new();
    private CancellationTokenSource? _turn;
    private readonly List<ImagePart> _images = [];
    private SendOptions _options = options;

    /// <summary>The last answer's final event, for /stats.</summary>
    public ChatStreamEvent? LastTurn { get; private set; }

    /// <summary>Stops the answer being streamed, if any (Ctrl-C); false when none is.</summary>
    public bool CancelCurrentTurn()
    {
        lock (_gate)
        {
            if (_turn is null)
                return false;
            _turn.Cancel();
            return true;
        }
    }

    /// <summary>Runs until /exit or the end of input; returns the exit code.</summary>
    public async Task<int> RunAsync()
    {
        while (true)
        {
            if (showPrompt)
            {
                output.Write("> ");
                output.Flush();
            }
            string? line = await input.ReadLineAsync().ConfigureAwait(false);
            if (line is null)
                return 0;
            line = line.Trim();
            if (line.Length == 0)
                continue;
            if (line.StartsWith('/'))
            {
                if (!Command(line))
                    return 0;
                continue;
            }
            await AnswerAsync(line).ConfigureAwait(false);
        }
    }

    /// <summary>Handles a /command; false means exit.</summary>
    private bool Command(string line)
    {
        int space = line.IndexOf(' ');
        string name = space < 0 ? line : line[..space];
        string argument = space < 0 ? "" : line[(space + 1)..].Trim();
        switch (name)
        {
            case "/exit" or "/quit":
                return false;
            case "/help":
                output.WriteLine(Help);
                break;
            case "/reset":
                session.Reset();
                _images.Clear();
                output.WriteLine("[conversation reset]");
                break;
            case "/system":
                session.System = argument.Length == 0 ? null : argument;
                output.WriteLine(argument.Length == 0 ? "[system prompt cleared; new conversation]" : "[system prompt set; new conversation]");
                break;
            case "/think" when argument is "on" or "off":
                _options = _options with { EnableThinking = argument == "on" };
                output.WriteLine($"[thinking {argument}]");
                break;
            case "/think":
                error.WriteLine("usage: /think on|off");
                break;
            case "/image" when argument.Length > 0:
                try
                {
                    var image = ImageFiles.Load(argument);
                    _images.Add(image);
                    output.WriteLine($"[image {argument} ({image.Data!.Length} bytes) attached to the next message]");
                }
                catch (Exception e) when (e is ArgumentException or IOException or UnauthorizedAccessException)
                {
                    error.WriteLine($"/image: {e.Message}");
                }
                break;
            case "/image":
                error.WriteLine("usage: /image PATH");
                break;
            case "/stats":
                output.WriteLine(LastTurn is { } t ? Stats(t) : "[no answer yet]");
                break;
            default:
                error.WriteLine($"unknown command {name}; /help lists them");
                break;
        }
        return true;
    }

    public static string Stats(ChatStreamEvent t) => string.Create(CultureInfo.InvariantCulture,
        $"ttft {t.TtftMs:F1} ms, prefill {t.PrefillTokensPerSecond:F1} tok/s, decode {t.DecodeTokensPerSecond:F1} tok/s " +
        $"(prompt {t.PromptTokens} tok, cached {t.CachedTokens}, completion {t.CompletionTokens}, reasoning {t.ReasoningTokens}; {t.FinishReason?.ToString().ToLowerInvariant()})");

    private async Task AnswerAsync(string prompt)
    {
        var turnOptions = _images.Count > 0 ? _options with { Images = [.. _images] } : _options;
        _images.Clear();
        using var turn = new CancellationTokenSource();
        lock (_gate)
            _turn = turn;
        bool reasoning = false;
        try
        {
            await foreach (var e in session.SendStreamAsync(prompt, turnOptions, turn.Token).ConfigureAwait(false))
            {
                if (e.Done)
                {
                    LastTurn = e;
                    EndReasoning(ref reasoning);
                    foreach (var call in e.ToolCalls)
                        output.Write($"\n[tool call {call.Name} {call.ArgumentsJson}]");
                    continue;
                }
                if (e.IsReasoning && !color)
                {
                    error.Write(e.Text);
                    continue;
                }
                if (e.IsReasoning != reasoning)
                {
                    output.Write(e.IsReasoning ? Dim : Plain);
                    reasoning = e.IsReasoning;
                }
                output.Write(e.Text);
                output.Flush();
            }
            output.WriteLine();
        }
        catch (OperationCanceledException) when (turn.IsCancellationRequested)
        {
            EndReasoning(ref reasoning);
            output.WriteLine("\n[cancelled]");
        }
        catch (TurnFailedException e)
        {
            EndReasoning(ref reasoning);
            output.WriteLine();
            error.WriteLine($"error: {e.Message}");
        }
        finally
        {
            lock (_gate)
                _turn = null;
        }
    }

    private void EndReasoning(ref bool reasoning)
    {
        if (reasoning)
            output.Write(Plain);
        reasoning = false;
    }
}
