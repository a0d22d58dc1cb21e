namespace Pipeline.Tokenizer.Chat;

/// <summary>A chat request whose JSON does not have the expected shape; <see cref="Field"/> is the JSON path of the
/// offending value (for example <c>messages[2].tool_calls[0].function.name</c>).</summary>
public sealed class InvalidChatRequestException(string field, string message)
    : ArgumentException($"{field}: {message}")
{
    public string Field { get; } = field;
}
