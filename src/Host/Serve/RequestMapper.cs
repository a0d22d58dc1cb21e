using System.Text.Json;
using Pipeline.Actors;
using Pipeline.Actors.Text;

namespace Pipeline.Host.Serve;

/// <summary>A chat completion request in the pipeline's terms.</summary>
/// <param name="MaxTokens">The request's max_completion_tokens / max_tokens; null = up to the context limit.</param>
public sealed record MappedRequest(
    IReadOnlyList<ChatMessage> Messages, GenerationOptions Options, int? MaxTokens, bool Stream, bool IncludeUsage);

/// <summary>
/// Checks a <see cref="ChatCompletionRequest"/> and turns it into messages and options. Every refusal
/// is a 400 whose param is the JSON path of the offending value.
/// </summary>
public static class RequestMapper
{
    public static MappedRequest Map(ChatCompletionRequest request)
    {
        var messages = MapMessages(request.Messages);
        if (request.N is { } n && n != 1)
            throw ApiException.BadRequest($"n = {n}: only one choice per request is supported", "$.n");
        if (request.Temperature is { } t && !(t >= 0 && t <= 2))
            throw ApiException.BadRequest($"temperature = {t} must be in [0, 2]", "$.temperature");
        if (request.TopP is { } p && !(p > 0 && p <= 1))
            throw ApiException.BadRequest($"top_p = {p} must be in (0, 1]", "$.top_p");
        if (request.TopK is { } k && k < 0)
            throw ApiException.BadRequest($"top_k = {k} must not be negative", "$.top_k");
        if (request.MinP is { } m && !(m >= 0 && m <= 1))
            throw ApiException.BadRequest($"min_p = {m} must be in [0, 1]", "$.min_p");
        if (request.Seed is { } seed && seed < 0)
            throw ApiException.BadRequest($"seed = {seed} must not be negative", "$.seed");
        int? maxTokens = request.MaxCompletionTokens ?? request.MaxTokens;
        if (maxTokens is { } max && max <= 0)
            throw ApiException.BadRequest($"{(request.MaxCompletionTokens is null ? "max_tokens" : "max_completion_tokens")} = {max} must be positive",
                request.MaxCompletionTokens is null ? "$.max_tokens" : "$.max_completion_tokens");
        if (request.ReasoningEffort is { } effort && effort.ToLowerInvariant() is not ("none" or "low" or "medium" or "high"))
            throw ApiException.BadRequest($"reasoning_effort = '{effort}' is not one of none, low, medium, high", "$.reasoning_effort");

        var options = new GenerationOptions
        {
            Temperature = request.Temperature,
            TopP = request.TopP,
            TopK = request.TopK,
            MinP = request.MinP,
            Seed = request.Seed is { } s ? (ulong)s : null,
            Stop = MapStop(request.Stop),
            ReasoningEffort = request.ReasoningEffort?.ToLowerInvariant(),
            ToolsJson = MapTools(request.Tools, request.ToolChoice),
        };
        return new MappedRequest(messages, options, maxTokens, request.Stream ?? false, request.StreamOptions?.IncludeUsage ?? false);
    }

    public static IReadOnlyList<ChatMessage> MapMessages(List<RequestMessage>? messages)
    {
        if (messages is null || messages.Count == 0)
            throw ApiException.BadRequest("messages must be a non-empty array", "$.messages");
        var mapped = new ChatMessage[messages.Count];
        for (int i = 0; i < messages.Count; i++)
            mapped[i] = MapMessage(messages[i] ?? throw ApiException.BadRequest("a message must be an object", $"$.messages[{i}]"), $"$.messages[{i}]");
        return mapped;
    }

    private static ChatMessage MapMessage(RequestMessage message, string path)
    {
        string role = message.Role switch
        {
            "system" or "developer" => ChatMessage.System,
            "user" => ChatMessage.User,
            "assistant" => ChatMessage.Assistant,
            "tool" => ChatMessage.Tool,
            null => throw ApiException.BadRequest("role is required", $"{path}.role"),
            var other => throw ApiException.BadRequest($"role '{other}' is not one of system, developer, user, assistant, tool", $"{path}.role"),
        };
        var (text, images) = MapContent(message.Content, $"{path}.content");
        if (role == ChatMessage.Tool && string.IsNullOrEmpty(message.ToolCallId))
            throw ApiException.BadRequest("a tool message needs tool_call_id", $"{path}.tool_call_id");
        if (message.ToolCalls is not null && role != ChatMessage.Assistant)
            throw ApiException.BadRequest("only assistant messages carry tool_calls", $"{path}.tool_calls");
        return new ChatMessage
        {
            Role = role,
            Content = text,
            Reasoning = string.IsNullOrEmpty(message.ReasoningContent) ? null : message.ReasoningContent,
            ToolCalls = message.ToolCalls?.Select((c, j) => MapToolCall(c, $"{path}.tool_calls[{j}]")).ToArray(),
            ToolCallId = message.ToolCallId,
            Name = message.Name,
            Images = images,
        };
    }

    private static ToolCall MapToolCall(WireToolCall? call, string path)
    {
        if (call is null)
            throw ApiException.BadRequest("a tool call must be an object", path);
        if (call.Type is not (null or "function"))
            throw ApiException.BadRequest($"tool call type '{call.Type}' is not 'function'", $"{path}.type");
        var function = call.Function ?? throw ApiException.BadRequest("a tool call needs a function", $"{path}.function");
        if (string.IsNullOrEmpty(function.Name))
            throw ApiException.BadRequest("a tool call needs function.name", $"{path}.function.name");
        string arguments = string.IsNullOrWhiteSpace(function.Arguments) ? "{}" : function.Arguments;
        try
        {
            using var parsed = JsonDocument.Parse(arguments);
            if (parsed.RootElement.ValueKind != JsonValueKind.Object)
                throw ApiException.BadRequest("function.arguments must be a JSON object text", $"{path}.function.arguments");
        }
        catch (JsonException e)
        {
            throw ApiException.BadRequest($"function.arguments is not JSON: {e.Message}", $"{path}.function.arguments");
        }
        return new ToolCall(call.Id ?? "call_" + Guid.NewGuid().ToString("N")[..24], function.Name, arguments);
    }

    private static (string? Text, IReadOnlyList<ImagePart>? Images) MapContent(JsonElement? content, string path)
    {
        if (content is not { } element || element.ValueKind == JsonValueKind.Null)
            return (null, null);
        if (element.ValueKind == JsonValueKind.String)
            return (element.GetString(), null);
        if (element.ValueKind != JsonValueKind.Array)
            throw ApiException.BadRequest($"content must be a string, null or an array of parts, not {Kind(element)}", path);
        var texts = new List<string>();
        var images = new List<ImagePart>();
        int i = 0;
        foreach (var part in element.EnumerateArray())
        {
            string partPath = $"{path}[{i++}]";
            if (part.ValueKind != JsonValueKind.Object)
                throw ApiException.BadRequest($"a content part must be an object, not {Kind(part)}", partPath);
            string? type = part.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
            switch (type)
            {
                case "text":
                    OnlyMembers(part, partPath, "type", "text");
                    texts.Add(part.TryGetProperty("text", out var text) && text.ValueKind == JsonValueKind.String
                        ? text.GetString()!
                        : throw ApiException.BadRequest("a text part needs a string 'text'", $"{partPath}.text"));
                    break;
                case "image_url":
                    OnlyMembers(part, partPath, "type", "image_url");
                    images.Add(MapImage(part, partPath));
                    break;
                default:
                    throw ApiException.BadRequest($"content part type '{type}' is not 'text' or 'image_url'", $"{partPath}.type");
            }
        }
        return (texts.Count == 0 ? null : string.Join("\n", texts), images.Count == 0 ? null : images);
    }

    private static ImagePart MapImage(JsonElement part, string path)
    {
        if (!part.TryGetProperty("image_url", out var image) || image.ValueKind != JsonValueKind.Object)
            throw ApiException.BadRequest("an image_url part needs an object 'image_url' with a 'url'", $"{path}.image_url");
        OnlyMembers(image, $"{path}.image_url", "url", "detail");
        string urlPath = $"{path}.image_url.url";
        if (!image.TryGetProperty("url", out var urlElement) || urlElement.ValueKind != JsonValueKind.String)
            throw ApiException.BadRequest("image_url.url must be a string", urlPath);
        string url = urlElement.GetString()!;
        if (!url.StartsWith("data:", StringComparison.OrdinalIgnoreCase))
            throw ApiException.BadRequest("remote image URLs are not fetched; send the image inline as a data: URI (data:image/png;base64,...)", urlPath);
        int comma = url.IndexOf(',');
        string header = comma > 0 ? url[5..comma] : "";
        if (comma < 0 || !header.EndsWith(";base64", StringComparison.OrdinalIgnoreCase))
            throw ApiException.BadRequest("an image data: URI must be base64 (data:<media type>;base64,<data>)", urlPath);
        string mediaType = header[..^";base64".Length];
        try
        {
            byte[] data = System.Convert.FromBase64String(url[(comma + 1)..]);
            if (data.Length == 0)
                throw ApiException.BadRequest("the image data: URI holds no bytes", urlPath);
            return new ImagePart(mediaType.Length == 0 ? null : mediaType, data, null);
        }
        catch (FormatException)
        {
            throw ApiException.BadRequest("the image data: URI is not valid base64", urlPath);
        }
    }

    private static void OnlyMembers(JsonElement element, string path, params string[] allowed)
    {
        foreach (var property in element.EnumerateObject())
        {
            if (Array.IndexOf(allowed, property.Name) < 0)
                throw ApiException.BadRequest($"unknown member '{property.Name}'", $"{path}.{property.Name}", "invalid_json");
        }
    }

    private static IReadOnlyList<string>? MapStop(JsonElement? stop)
    {
        if (stop is not { } element || element.ValueKind == JsonValueKind.Null)
            return null;
        if (element.ValueKind == JsonValueKind.String)
            return [NonEmpty(element.GetString()!, "$.stop")];
        if (element.ValueKind != JsonValueKind.Array)
            throw ApiException.BadRequest($"stop must be a string or an array of strings, not {Kind(element)}", "$.stop");
        var list = new List<string>();
        int i = 0;
        foreach (var item in element.EnumerateArray())
        {
            string path = $"$.stop[{i++}]";
            if (item.ValueKind != JsonValueKind.String)
                throw ApiException.BadRequest($"stop entries must be strings, not {Kind(item)}", path);
            list.Add(NonEmpty(item.GetString()!, path));
        }
        return list.Count == 0 ? null : list;
    }

    private static string NonEmpty(string value, string path) =>
        value.Length > 0 ? value : throw ApiException.BadRequest("a stop string must not be empty", path);

    private static string? MapTools(JsonElement? tools, JsonElement? toolChoice)
    {
        if (toolChoice is { } choice && choice.ValueKind != JsonValueKind.Null)
        {
            if (choice.ValueKind == JsonValueKind.String)
            {
                string value = choice.GetString()!;
                if (value is not ("none" or "auto" or "required"))
                    throw ApiException.BadRequest($"tool_choice '{value}' is not none, auto, required or a function object", "$.tool_choice");
                if (value == "none")
                    return null;
            }
            else if (choice.ValueKind != JsonValueKind.Object)
            {
                throw ApiException.BadRequest($"tool_choice must be a string or an object, not {Kind(choice)}", "$.tool_choice");
            }
        }
        if (tools is not { } element || element.ValueKind == JsonValueKind.Null)
            return null;
        if (element.ValueKind != JsonValueKind.Array)
            throw ApiException.BadRequest($"tools must be an array, not {Kind(element)}", "$.tools");
        int i = 0;
        foreach (var tool in element.EnumerateArray())
        {
            string path = $"$.tools[{i++}]";
            if (tool.ValueKind != JsonValueKind.Object)
                throw ApiException.BadRequest($"a tool must be an object, not {Kind(tool)}", path);
            if (!tool.TryGetProperty("function", out var function) || function.ValueKind != JsonValueKind.Object)
                throw ApiException.BadRequest("a tool needs a 'function' object", $"{path}.function");
            if (!function.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String || name.GetString()!.Length == 0)
                throw ApiException.BadRequest("a tool function needs a non-empty string 'name'", $"{path}.function.name");
        }
        return i == 0 ? null : element.GetRawText();
    }

    private static string Kind(JsonElement element) => element.ValueKind.ToString().ToLowerInvariant();

    /// <summary>The prompt settings the chat template needs for <paramref name="options"/>.</summary>
    public static Pipeline.Actors.Messages.PromptSettings PromptSettingsOf(GenerationOptions options) =>
        new(options.EnableThinking, options.ReasoningEffort, options.ToolsJson);

    /// <summary>Renders like the session will (the chat format's template); template failures are the client's messages at fault.</summary>
    public static string Render(IChatFormat format, IReadOnlyList<ChatMessage> messages, GenerationOptions options)
    {
        try
        {
            return format.Render(messages, PromptSettingsOf(options));
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw ApiException.BadRequest($"the chat template cannot render these messages: {e.Message}", "$.messages");
        }
    }
}
