using MessagePack;

namespace Pipeline.Actors;

/// <summary>
/// What a turn streams to its caller, in order: deltas and tool calls, then exactly one
/// <see cref="TurnFinished"/>, after which the channel is completed.
/// </summary>
[Union(0, typeof(TextDelta))]
[Union(1, typeof(ReasoningDelta))]
[Union(2, typeof(ToolCallEvent))]
[Union(3, typeof(TurnFinished))]
public abstract record ChatEvent;

/// <summary>Visible answer text.</summary>
[MessagePackObject]
public sealed record TextDelta([property: Key(0)] string Text) : ChatEvent;

/// <summary>Thinking text (the reasoning channel).</summary>
[MessagePackObject]
public sealed record ReasoningDelta([property: Key(0)] string Text) : ChatEvent;

/// <summary>A complete tool call the model made.</summary>
[MessagePackObject]
public sealed record ToolCallEvent([property: Key(0)] ToolCall Call) : ChatEvent;

public enum FinishReason
{
    /// <summary>End of turn, end of sequence or a stop string.</summary>
    Stop,
    /// <summary>Reached <see cref="GenerationOptions.MaxNewTokens"/> or the context limit.</summary>
    Length,
    /// <summary>The turn ended with tool calls.</summary>
    ToolCalls,
    /// <summary>A sampler repetition cut-off ended it.</summary>
    Repetition,
    /// <summary>The caller cancelled.</summary>
    Cancelled,
    /// <summary>The turn failed; <see cref="TurnFinished.Error"/> says why.</summary>
    Error,
}

/// <summary>Token counts of one turn. CachedTokens of the prompt were reused from the session's cache.</summary>
[MessagePackObject]
public sealed record TurnUsage(
    [property: Key(0)] int PromptTokens,
    [property: Key(1)] int CachedTokens,
    [property: Key(2)] int CompletionTokens,
    [property: Key(3)] int ReasoningTokens)
{
    public static TurnUsage None { get; } = new(0, 0, 0, 0);
}

/// <summary>
/// Timings of one turn: time to first token (from the request to the first sampled token), prefill
/// throughput over the prompt tokens actually computed, decode throughput after the first token.
/// </summary>
[MessagePackObject]
public sealed record TurnTimings(
    [property: Key(0)] double TimeToFirstTokenMs,
    [property: Key(1)] double PrefillTokensPerSecond,
    [property: Key(2)] double DecodeTokensPerSecond,
    [property: Key(3)] double TotalMs)
{
    public static TurnTimings None { get; } = new(0, 0, 0, 0);
}

/// <summary>The last event of a turn.</summary>
[MessagePackObject]
public sealed record TurnFinished(
    [property: Key(0)] FinishReason Reason,
    [property: Key(1)] TurnUsage Usage,
    [property: Key(2)] TurnTimings Timings,
    [property: Key(3)] string? Error = null) : ChatEvent;
