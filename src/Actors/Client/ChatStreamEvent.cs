namespace Pipeline.Actors.Client;

/// <summary>
/// One streamed piece of a <see cref="ChatSession"/> answer. Every event but the last carries text
/// (visible or reasoning); the last has <see cref="Done"/> set, no text, and the turn's outcome:
/// finish reason, tool calls, token counts and performance.
/// </summary>
public sealed record ChatStreamEvent
{
    public bool Done { get; init; }

    public string Text { get; init; } = "";

    /// <summary>The text is thinking (the reasoning channel), not the answer.</summary>
    public bool IsReasoning { get; init; }

    // The final event's outcome (null/zero on the others).

    public FinishReason? FinishReason { get; init; }

    public IReadOnlyList<ToolCall> ToolCalls { get; init; } = [];

    /// <summary>Tokens of the whole rendered prompt, including <see cref="CachedTokens"/>.</summary>
    public int PromptTokens { get; init; }

    /// <summary>Prompt tokens reused from the conversation's cache (not computed again).</summary>
    public int CachedTokens { get; init; }

    public int CompletionTokens { get; init; }

    /// <summary>Of <see cref="CompletionTokens"/>, those spent thinking.</summary>
    public int ReasoningTokens { get; init; }

    /// <summary>Time to first token: from sending to the first sampled token.</summary>
    public double TtftMs { get; init; }

    /// <summary>Over the prompt tokens actually computed (not the cached ones).</summary>
    public double PrefillTokensPerSecond { get; init; }

    /// <summary>Generated tokens per second after the first.</summary>
    public double DecodeTokensPerSecond { get; init; }

    public double TotalMs { get; init; }

    internal static ChatStreamEvent Final(TurnFinished finished, IReadOnlyList<ToolCall> toolCalls) => new()
    {
        Done = true,
        FinishReason = finished.Reason,
        ToolCalls = toolCalls,
        PromptTokens = finished.Usage.PromptTokens,
        CachedTokens = finished.Usage.CachedTokens,
        CompletionTokens = finished.Usage.CompletionTokens,
        ReasoningTokens = finished.Usage.ReasoningTokens,
        TtftMs = finished.Timings.TimeToFirstTokenMs,
        PrefillTokensPerSecond = finished.Timings.PrefillTokensPerSecond,
        DecodeTokensPerSecond = finished.Timings.DecodeTokensPerSecond,
        TotalMs = finished.Timings.TotalMs,
    };
}

/// <summary>A whole answer of <see cref="ChatSession.SendAsync"/>.</summary>
public sealed record ChatReply(string Text, string Reasoning, IReadOnlyList<ToolCall> ToolCalls, ChatStreamEvent Final);

/// <summary>A turn the pipeline ended with an error (bad options, context limit, a failed stage).</summary>
public sealed class TurnFailedException(string sessionId, string message) : Exception($"turn of session '{sessionId}' failed: {message}")
{
    public string SessionId { get; } = sessionId;
}
