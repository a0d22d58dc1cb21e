using System.Text.Json.Nodes;

namespace Pipeline.Tokenizer.Chat;

/// <summary>Role names chat templates understand.</summary>
public static class ChatRoles
{
    public const string System = "system";
    public const string Developer = "developer";
    public const string User = "user";
    public const string Assistant = "assistant";
    public const string Tool = "tool";
}

/// <summary>One item of a message whose content is a list of parts.</summary>
public abstract record ChatContentPart
{
    /// <summary>The part's <c>type</c> as the template sees it: text, image, audio or video.</summary>
    public abstract string Type { get; }

    internal abstract JsonObject ToJson();
}

public sealed record TextPart(string Text) : ChatContentPart
{
    public override string Type => "text";

    internal override JsonObject ToJson() => new() { ["type"] = Type, ["text"] = Text };
}

/// <summary>An image, audio clip or video; the template only places a marker token for it. <c>Url</c> is kept for
/// the caller (data: URL or link) and passed to the template as <c>url</c>.</summary>
public sealed record MediaPart(string Kind, string? Url = null) : ChatContentPart
{
    public override string Type => Kind;

    public static MediaPart Image(string? url = null) => new("image", url);

    public static MediaPart Audio(string? url = null) => new("audio", url);

    public static MediaPart Video(string? url = null) => new("video", url);

    internal override JsonObject ToJson()
    {
        var obj = new JsonObject { ["type"] = Type };
        if (Url is not null)
            obj["url"] = Url;
        return obj;
    }
}

/// <summary>A tool call made by the assistant. <see cref="Arguments"/> is a JSON object, or a JSON string holding the
/// arguments' JSON text (OpenAI's wire format), which templates insert as written.</summary>
public sealed record ChatToolCall(string Name, JsonNode? Arguments, string? Id = null)
{
    internal JsonObject ToJson()
    {
        var obj = new JsonObject();
        if (Id is not null)
            obj["id"] = Id;
        obj["type"] = "function";
        obj["function"] = new JsonObject { ["name"] = Name, ["arguments"] = Arguments?.DeepClone() };
        return obj;
    }
}

/// <summary>A tool result attached to an assistant message (the older <c>tool_responses</c> form).</summary>
public sealed record ChatToolResponse(string Name, JsonNode? Response)
{
    internal JsonObject ToJson() => new() { ["name"] = Name, ["response"] = Response?.DeepClone() };
}

/// <summary>
/// A chat message in the OpenAI shape chat templates read. Content is either <see cref="Content"/> (text) or
/// <see cref="Parts"/>; fields the template may read but this type does not model travel in <see cref="Extra"/>.
/// </summary>
public sealed record ChatMessage
{
    public required string Role { get; init; }

    public string? Content { get; init; }

    public IReadOnlyList<ChatContentPart>? Parts { get; init; }

    /// <summary>The assistant's earlier reasoning (templates may render it, e.g. between tool calls).</summary>
    public string? ReasoningContent { get; init; }

    public IReadOnlyList<ChatToolCall>? ToolCalls { get; init; }

    /// <summary>For role tool: the id of the call this message answers.</summary>
    public string? ToolCallId { get; init; }

    /// <summary>For role tool: the function's name, when known.</summary>
    public string? Name { get; init; }

    public IReadOnlyList<ChatToolResponse>? ToolResponses { get; init; }

    /// <summary>Other message fields, passed to the template unchanged.</summary>
    public JsonObject? Extra { get; init; }

    public static ChatMessage System(string content) => new() { Role = ChatRoles.System, Content = content };

    public static ChatMessage Developer(string content) => new() { Role = ChatRoles.Developer, Content = content };

    public static ChatMessage User(string content) => new() { Role = ChatRoles.User, Content = content };

    public static ChatMessage User(params ChatContentPart[] parts) => new() { Role = ChatRoles.User, Parts = parts };

    public static ChatMessage Assistant(string? content, IReadOnlyList<ChatToolCall>? toolCalls = null, string? reasoning = null) =>
        new() { Role = ChatRoles.Assistant, Content = content, ToolCalls = toolCalls, ReasoningContent = reasoning };

    public static ChatMessage Tool(string toolCallId, string content, string? name = null) =>
        new() { Role = ChatRoles.Tool, ToolCallId = toolCallId, Content = content, Name = name };

    /// <summary>The message as the template sees it.</summary>
    public JsonObject ToJson()
    {
        var obj = new JsonObject { ["role"] = Role };
        // Content is always present (null when there is none), as in OpenAI's message shape.
        obj["content"] = Parts is not null ? new JsonArray([.. Parts.Select(p => (JsonNode)p.ToJson())]) : Content;
        if (ReasoningContent is not null)
            obj["reasoning_content"] = ReasoningContent;
        if (ToolCalls is not null)
            obj["tool_calls"] = new JsonArray([.. ToolCalls.Select(c => (JsonNode)c.ToJson())]);
        if (ToolCallId is not null)
            obj["tool_call_id"] = ToolCallId;
        if (Name is not null)
            obj["name"] = Name;
        if (ToolResponses is not null)
            obj["tool_responses"] = new JsonArray([.. ToolResponses.Select(r => (JsonNode)r.ToJson())]);
        if (Extra is not null)
        {
            foreach (var (key, value) in Extra)
            {
                if (!obj.ContainsKey(key))
                    obj[key] = value?.DeepClone();
            }
        }
        return obj;
    }

    private static readonly HashSet<string> KnownFields =
        ["role", "content", "reasoning_content", "tool_calls", "tool_call_id", "name", "tool_responses"];

    /// <summary>Reads an OpenAI-style message; <paramref name="path"/> names it in errors (e.g. <c>messages[3]</c>).
    /// Content parts of type image_url/input_audio/video_url are read as image/audio/video.</summary>
    public static ChatMessage FromJson(JsonNode? node, string path = "message")
    {
        if (node is not JsonObject obj)
            throw new InvalidChatRequestException(path, "must be a JSON object");
        string role = RequireString(obj, "role", path);
        if (role.Length == 0)
            throw new InvalidChatRequestException($"{path}.role", "must not be empty");
        string? content = null;
        List<ChatContentPart>? parts = null;
        switch (obj["content"])
        {
            case null:
                break;
            case JsonArray array:
                parts = [.. array.Select((p, i) => ReadPart(p, $"{path}.content[{i}]"))];
                break;
            case JsonValue v when v.TryGetValue(out string? text):
                content = text;
                break;
            default:
                throw new InvalidChatRequestException($"{path}.content", "must be a string, an array of content parts or null");
        }
        var toolCalls = ReadArray(obj, "tool_calls", path, ReadToolCall);
        var toolResponses = ReadArray(obj, "tool_responses", path, (n, p) =>
        {
            var r = n as JsonObject ?? throw new InvalidChatRequestException(p, "must be a JSON object");
            return new ChatToolResponse(OptionalString(r, "name", p) ?? "unknown", r["response"]?.DeepClone());
        });
        JsonObject? extra = null;
        foreach (var (key, value) in obj)
        {
            if (KnownFields.Contains(key))
                continue;
            extra ??= [];
            extra[key] = value?.DeepClone();
        }
        return new ChatMessage
        {
            Role = role,
            Content = content,
            Parts = parts,
            ReasoningContent = OptionalString(obj, "reasoning_content", path),
            ToolCalls = toolCalls,
            ToolCallId = OptionalString(obj, "tool_call_id", path),
            Name = OptionalString(obj, "name", path),
            ToolResponses = toolResponses,
            Extra = extra,
        };
    }

    private static ChatContentPart ReadPart(JsonNode? node, string path)
    {
        if (node is not JsonObject part)
            throw new InvalidChatRequestException(path, "must be a JSON object");
        string type = RequireString(part, "type", path);
        return type switch
        {
            "text" => new TextPart(RequireString(part, "text", path)),
            "image" or "audio" or "video" => new MediaPart(type, OptionalString(part, "url", path) ?? OptionalString(part, type, path)),
            "image_url" => MediaPart.Image(NestedUrl(part, "image_url", path)),
            "input_audio" => MediaPart.Audio(),
            "video_url" => MediaPart.Video(NestedUrl(part, "video_url", path)),
            _ => throw new InvalidChatRequestException($"{path}.type", $"unknown content part type '{type}' (expected text, image, audio or video)"),
        };
    }

    private static string? NestedUrl(JsonObject part, string field, string path) => part[field] switch
    {
        JsonObject inner => OptionalString(inner, "url", $"{path}.{field}"),
        JsonValue v when v.TryGetValue(out string? url) => url,
        _ => null,
    };

    private static ChatToolCall ReadToolCall(JsonNode? node, string path)
    {
        if (node is not JsonObject call)
            throw new InvalidChatRequestException(path, "must be a JSON object");
        // OpenAI nests name/arguments under "function"; accept them at the top level too.
        var function = call["function"] as JsonObject ?? call;
        string functionPath = ReferenceEquals(function, call) ? path : $"{path}.function";
        var arguments = function["arguments"];
        if (arguments is not (null or JsonObject) && !(arguments is JsonValue v && v.TryGetValue(out string? _)))
            throw new InvalidChatRequestException($"{functionPath}.arguments", "must be a JSON object or a string holding JSON");
        return new ChatToolCall(RequireString(function, "name", functionPath), arguments?.DeepClone(), OptionalString(call, "id", path));
    }

    private static List<T>? ReadArray<T>(JsonObject obj, string field, string path, Func<JsonNode?, string, T> read) => obj[field] switch
    {
        null => null,
        JsonArray array => [.. array.Select((item, i) => read(item, $"{path}.{field}[{i}]"))],
        _ => throw new InvalidChatRequestException($"{path}.{field}", "must be an array"),
    };

    internal static string RequireString(JsonObject obj, string field, string path) =>
        OptionalString(obj, field, path) ?? throw new InvalidChatRequestException($"{path}.{field}", "is required and must be a string");

    internal static string? OptionalString(JsonObject obj, string field, string path) => obj[field] switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out string? s) => s,
        _ => throw new InvalidChatRequestException($"{path}.{field}", "must be a string"),
    };
}
