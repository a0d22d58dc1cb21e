namespace Pipeline.Tokenizer.Parsing;

/// <summary>A piece of parsed model output, in the order it was generated.</summary>
public abstract record OutputEvent;

/// <summary>Answer text for the user.</summary>
public sealed record ContentDelta(string Text) : OutputEvent;

/// <summary>Text of the model's thinking channel.</summary>
public sealed record ReasoningDelta(string Text) : OutputEvent;

public enum ToolCallStatus
{
    /// <summary>Name and arguments parsed; <see cref="ToolCall.ArgumentsJson"/> is a JSON object.</summary>
    Ok,

    /// <summary>Not a call at all: no <c>call:</c> prefix, a name with spaces, or the call was never closed.</summary>
    Invalid,

    /// <summary><c>call:</c> followed directly by the arguments.</summary>
    MissingName,

    /// <summary>The name is there but the arguments are not a well-formed <c>{key:value,...}</c> object.</summary>
    ParseError,
}

/// <summary>A tool call the model made. <see cref="Raw"/> is the text between <c>&lt;|tool_call&gt;</c> and
/// <c>&lt;tool_call|&gt;</c>; <see cref="Name"/> and <see cref="ArgumentsJson"/> are set as far as they could be parsed.</summary>
public sealed record ToolCall(string? Name, string? ArgumentsJson, ToolCallStatus Status, string Raw) : OutputEvent;

/// <summary>A whole output, parsed.</summary>
public sealed record ParsedOutput(string Content, string Reasoning, IReadOnlyList<ToolCall> ToolCalls);
