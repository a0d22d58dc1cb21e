using System.Text.Json.Nodes;

namespace Pipeline.Tokenizer.Chat;

/// <summary>How hard the model should think. None and Low turn Gemma-4's thinking off, Medium and High turn it on
/// (the mapping mlx-node uses for models with an on/off thinking switch).</summary>
public enum ReasoningEffort
{
    None,
    Low,
    Medium,
    High,
}

/// <summary>Everything a chat template is rendered with.</summary>
public sealed record ChatRequest
{
    public required IReadOnlyList<ChatMessage> Messages { get; init; }

    /// <summary>Tool declarations in the OpenAI shape: <c>{"type":"function","function":{"name","description","parameters"}}</c>
    /// with a JSON-schema <c>parameters</c> object.</summary>
    public IReadOnlyList<JsonObject>? Tools { get; init; }

    /// <summary>End the prompt with the opening of the model's turn (what a request for a reply needs).</summary>
    public required bool AddGenerationPrompt { get; init; }

    /// <summary>Explicit thinking switch; when null, <see cref="ReasoningEffort"/> decides, and without either thinking is off.</summary>
    public bool? EnableThinking { get; init; }

    public ReasoningEffort? ReasoningEffort { get; init; }

    /// <summary>Further template variables (OpenAI-compatible servers call these chat_template_kwargs). The standard
    /// variables (messages, tools, add_generation_prompt, enable_thinking, reasoning_effort) take precedence.</summary>
    public IReadOnlyDictionary<string, JsonNode?>? TemplateVariables { get; init; }

    /// <summary>The value passed to the template as <c>enable_thinking</c>.</summary>
    public bool ThinkingEnabled => EnableThinking ?? ReasoningEffort is Chat.ReasoningEffort.Medium or Chat.ReasoningEffort.High;

    /// <summary>Reads <c>{"messages", "tools"?, "add_generation_prompt"? (default false, as in transformers),
    /// "enable_thinking"?, "reasoning_effort"? ("none"|"low"|"medium"|"high"), "chat_template_kwargs"?}</c>.</summary>
    public static ChatRequest FromJson(JsonNode? node)
    {
        if (node is not JsonObject obj)
            throw new InvalidChatRequestException("request", "must be a JSON object");
        if (obj["messages"] is not JsonArray messages)
            throw new InvalidChatRequestException("messages", "is required and must be an array");
        List<JsonObject>? tools = obj["tools"] switch
        {
            null => null,
            JsonArray array => [.. array.Select((t, i) => t as JsonObject ?? throw new InvalidChatRequestException($"tools[{i}]", "must be a JSON object"))
                .Select(t => (JsonObject)t.DeepClone())],
            _ => throw new InvalidChatRequestException("tools", "must be an array"),
        };
        Dictionary<string, JsonNode?>? variables = obj["chat_template_kwargs"] switch
        {
            null => null,
            JsonObject kwargs => kwargs.ToDictionary(kv => kv.Key, kv => kv.Value?.DeepClone()),
            _ => throw new InvalidChatRequestException("chat_template_kwargs", "must be a JSON object"),
        };
        bool? enableThinking = OptionalBool(obj, "enable_thinking");
        // vLLM-style clients send the switch as chat_template_kwargs.enable_thinking; the top-level field wins.
        if (variables is not null && variables.Remove("enable_thinking", out var kwargThinking))
        {
            bool fromKwargs = kwargThinking is JsonValue v && v.TryGetValue(out bool b)
                ? b
                : throw new InvalidChatRequestException("chat_template_kwargs.enable_thinking", "must be true or false");
            enableThinking ??= fromKwargs;
        }
        return new ChatRequest
        {
            Messages = [.. messages.Select((m, i) => ChatMessage.FromJson(m, $"messages[{i}]"))],
            Tools = tools,
            AddGenerationPrompt = OptionalBool(obj, "add_generation_prompt") ?? false,
            EnableThinking = enableThinking,
            ReasoningEffort = ParseEffort(obj),
            TemplateVariables = variables,
        };
    }

    private static bool? OptionalBool(JsonObject obj, string field) => obj[field] switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out bool b) => b,
        _ => throw new InvalidChatRequestException(field, "must be true or false"),
    };

    private static ReasoningEffort? ParseEffort(JsonObject obj) => ChatMessage.OptionalString(obj, "reasoning_effort", "request") switch
    {
        null => null,
        "none" => Chat.ReasoningEffort.None,
        "low" => Chat.ReasoningEffort.Low,
        "medium" => Chat.ReasoningEffort.Medium,
        "high" => Chat.ReasoningEffort.High,
        var other => throw new InvalidChatRequestException("reasoning_effort", $"'{other}' is not one of none, low, medium, high"),
    };
}
