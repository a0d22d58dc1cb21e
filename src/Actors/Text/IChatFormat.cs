using Pipeline.Actors.Messages;

namespace Pipeline.Actors.Text;

/// <summary>
/// How a model's conversations become prompt text and its output becomes events: the chat template
/// on the way in, the incremental detokenizer and output parser (text, reasoning, tool calls, stop
/// strings) on the way out. Thread-safe; decoders are per turn.
/// </summary>
public interface IChatFormat
{
    /// <summary>The prompt for the next assistant turn: the whole conversation, generation prompt appended, BOS included.</summary>
    string Render(IReadOnlyList<ChatMessage> messages, PromptSettings settings);

    /// <summary>A fresh decoder for one turn's generated tokens.</summary>
    ITurnDecoder CreateDecoder(OutputSettings settings);
}

/// <summary>One turn's incremental output state. Not thread-safe.</summary>
public interface ITurnDecoder
{
    /// <summary>Feeds one generated token; appends the events it completes (text is held while it may still change).</summary>
    void Push(int token, List<ChatEvent> events);

    /// <summary>Ends the output: appends whatever was held back.</summary>
    void Flush(List<ChatEvent> events);

    /// <summary>A stop string appeared; the text before it was emitted, nothing after it will be.</summary>
    bool StopHit { get; }

    /// <summary>Tokens pushed so far that belonged to the reasoning channel.</summary>
    int ReasoningTokens { get; }
}
