using MessagePack;

namespace Pipeline.Actors;

/// <summary>One message of a conversation, as the chat template sees it.</summary>
[MessagePackObject]
public sealed record ChatMessage
{
    public const string System = "system";
    public const string User = "user";
    public const string Assistant = "assistant";
    public const string Tool = "tool";

    /// <summary>system, user, assistant or tool.</summary>
    [Key(0)] public required string Role { get; init; }

    [Key(1)] public string? Content { get; init; }

    /// <summary>An assistant message's thinking (reasoning channel), kept in the transcript; templates may drop it.</summary>
    [Key(2)] public string? Reasoning { get; init; }

    /// <summary>Tool calls an assistant message made.</summary>
    [Key(3)] public IReadOnlyList<ToolCall>? ToolCalls { get; init; }

    /// <summary>For a tool message: the call it answers.</summary>
    [Key(4)] public string? ToolCallId { get; init; }

    /// <summary>For a tool message: the tool's name.</summary>
    [Key(5)] public string? Name { get; init; }

    /// <summary>Images attached to a user message (needs the vision encoder).</summary>
    [Key(6)] public IReadOnlyList<ImagePart>? Images { get; init; }

    public static ChatMessage FromUser(string content) => new() { Role = User, Content = content };

    public static ChatMessage FromSystem(string content) => new() { Role = System, Content = content };
}

/// <summary>A function call the model asked for: its arguments as a JSON object text.</summary>
[MessagePackObject]
public sealed record ToolCall(
    [property: Key(0)] string Id,
    [property: Key(1)] string Name,
    [property: Key(2)] string ArgumentsJson);

/// <summary>An image attached to a message: inline bytes or a URL.</summary>
[MessagePackObject]
public sealed record ImagePart(
    [property: Key(0)] string? MediaType,
    [property: Key(1)] byte[]? Data,
    [property: Key(2)] string? Url);
