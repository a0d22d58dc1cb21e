using MessagePack;

namespace Pipeline.Actors;

/// <summary>
/// One turn of a conversation: the messages to append to the session's transcript (usually one user
/// message; also tool results or a first system message) and how to answer.
/// </summary>
[MessagePackObject]
public sealed record TurnRequest
{
    /// <summary>The conversation: turns with the same id share a transcript and a KV cache.</summary>
    [Key(0)] public required string SessionId { get; init; }

    /// <summary>Unique per turn; the caller may set it (e.g. a request id), else one is made.</summary>
    [Key(1)] public string TurnId { get; init; } = Guid.NewGuid().ToString("N");

    [Key(2)] public required IReadOnlyList<ChatMessage> Messages { get; init; }

    [Key(3)] public GenerationOptions Options { get; init; } = GenerationOptions.Default;
}
