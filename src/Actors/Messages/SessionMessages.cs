using System.Threading.Channels;
using MessagePack;

namespace Pipeline.Actors.Messages;

/// <summary>Starts a turn on a session; events stream into <see cref="Output"/>, which the session completes.</summary>
[LocalOnly("carries the caller's stream writer and cancellation token, which exist only in this process")]
public sealed record StartTurn(
    MessageHeader Header,
    TurnRequest Request,
    ChannelWriter<ChatEvent> Output,
    CancellationToken Cancellation) : ILocalOnlyMessage
{
    public string? SessionId => Request.SessionId;
}

/// <summary>Stops the session's current turn (if it is <see cref="TurnId"/>) within one step.</summary>
[MessagePackObject]
public sealed record CancelTurn(
    [property: Key(0)] MessageHeader Header,
    [property: Key(1)] string SessionId,
    [property: Key(2)] string TurnId) : ISerializableMessage
{
    string? IPipelineMessage.SessionId => SessionId;
}

/// <summary>Asks for a session's committed transcript; answered with <see cref="TranscriptReply"/>.</summary>
[MessagePackObject]
public sealed record GetTranscript(
    [property: Key(0)] MessageHeader Header,
    [property: Key(1)] string SessionId) : ISerializableMessage
{
    string? IPipelineMessage.SessionId => SessionId;
}

[MessagePackObject]
public sealed record TranscriptReply(
    [property: Key(0)] MessageHeader Header,
    [property: Key(1)] string SessionId,
    [property: Key(2)] IReadOnlyList<ChatMessage> Messages,
    [property: Key(3)] bool Busy) : ISerializableMessage
{
    string? IPipelineMessage.SessionId => SessionId;
}

/// <summary>Ends a conversation: its actor stops, its cache is freed and its transcript deleted. Answered with <see cref="SessionEnded"/>.</summary>
[MessagePackObject]
public sealed record EndSession(
    [property: Key(0)] MessageHeader Header,
    [property: Key(1)] string SessionId) : ISerializableMessage
{
    string? IPipelineMessage.SessionId => SessionId;
}

[MessagePackObject]
public sealed record SessionEnded(
    [property: Key(0)] MessageHeader Header,
    [property: Key(1)] string SessionId) : ISerializableMessage
{
    string? IPipelineMessage.SessionId => SessionId;
}

/// <summary>
/// Published on the actor system's event stream when a turn ends: the token ids it ran on and
/// produced (for logs, audits and tests; the caller's stream carries text).
/// </summary>
public sealed record TurnCompleted(
    string SessionId,
    string TurnId,
    int[] PromptIds,
    int[] GeneratedIds,
    FinishReason Reason,
    string? Error) : Akka.Actor.INoSerializationVerificationNeeded;
