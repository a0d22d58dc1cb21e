using System.Text.Json;
using System.Text.Json.Serialization;

namespace Pipeline.Host.Serve;

// Wire shapes of the OpenAI-compatible API (snake_case). Requests reject unknown members so a typo
// in a field name is a 400 naming it rather than a silently ignored setting.

public sealed class ChatCompletionRequest
{
    public string? Model { get; set; }
    public List<RequestMessage>? Messages { get; set; }
    public float? Temperature { get; set; }
    public float? TopP { get; set; }
    public int? TopK { get; set; }
    public float? MinP { get; set; }
    public long? Seed { get; set; }
    public int? MaxTokens { get; set; }
    public int? MaxCompletionTokens { get; set; }
    /// <summary>A string or an array of strings.</summary>
    public JsonElement? Stop { get; set; }
    public bool? Stream { get; set; }
    public StreamOptions? StreamOptions { get; set; }
    /// <summary>An array of {type: function, function: {...}}.</summary>
    public JsonElement? Tools { get; set; }
    /// <summary>"none", "auto", "required" or {type: function, function: {name}}.</summary>
    public JsonElement? ToolChoice { get; set; }
    public string? ReasoningEffort { get; set; }
    /// <summary>Pins the conversation to a server session (same as the X-Session-Id header).</summary>
    public string? SessionId { get; set; }
    /// <summary>Only 1 is supported.</summary>
    public int? N { get; set; }
    public string? User { get; set; }
    public bool? ParallelToolCalls { get; set; }
}

public sealed class StreamOptions
{
    public bool? IncludeUsage { get; set; }
}

public sealed class RequestMessage
{
    public string? Role { get; set; }
    /// <summary>A string, null, or an array of {type: text, text} / {type: image_url, image_url: {url}} parts.</summary>
    public JsonElement? Content { get; set; }
    public string? ReasoningContent { get; set; }
    public List<WireToolCall>? ToolCalls { get; set; }
    public string? ToolCallId { get; set; }
    public string? Name { get; set; }
}

public sealed class WireToolCall
{
    public int? Index { get; set; }
    public string? Id { get; set; }
    public string? Type { get; set; }
    public WireFunction? Function { get; set; }
}

public sealed class WireFunction
{
    public string? Name { get; set; }
    /// <summary>The arguments as a JSON object text.</summary>
    public string? Arguments { get; set; }
}

public sealed class ChatCompletionResponse
{
    public required string Id { get; init; }
    public required string Object { get; init; }
    public long Created { get; init; }
    public required string Model { get; init; }
    public required List<Choice> Choices { get; init; }
    public Usage? Usage { get; init; }
    public Timings? Timings { get; init; }
}

public sealed class Choice
{
    public int Index { get; init; }
    public ResponseMessage? Message { get; init; }
    public ResponseMessage? Delta { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public string? FinishReason { get; init; }
}

public sealed class ResponseMessage
{
    public string? Role { get; init; }
    public string? Content { get; init; }
    public string? ReasoningContent { get; init; }
    public List<WireToolCall>? ToolCalls { get; init; }
}

public sealed class Usage
{
    public int PromptTokens { get; init; }
    public int CompletionTokens { get; init; }
    public int TotalTokens { get; init; }
    public required PromptTokensDetails PromptTokensDetails { get; init; }
    public required CompletionTokensDetails CompletionTokensDetails { get; init; }
}

public sealed class PromptTokensDetails
{
    public int CachedTokens { get; init; }
}

public sealed class CompletionTokensDetails
{
    public int ReasoningTokens { get; init; }
}

/// <summary>llama-server's timings object (cache_n = prompt tokens reused, prompt_n = prompt tokens computed), plus ttft_ms.</summary>
public sealed class Timings
{
    public int CacheN { get; init; }
    public int PromptN { get; init; }
    public double PromptMs { get; init; }
    public double PromptPerTokenMs { get; init; }
    public double PromptPerSecond { get; init; }
    public int PredictedN { get; init; }
    public double PredictedMs { get; init; }
    public double PredictedPerTokenMs { get; init; }
    public double PredictedPerSecond { get; init; }
    public double TtftMs { get; init; }
}

public sealed class ErrorResponse
{
    public required ErrorBody Error { get; init; }
}

/// <summary>OpenAI's error object: message, type, param (the JSON path or field at fault), code.</summary>
public sealed class ErrorBody
{
    public required string Message { get; init; }
    public required string Type { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public string? Param { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public string? Code { get; init; }
}

public sealed class TokenizeRequest
{
    public string? Content { get; set; }
    public bool? AddSpecial { get; set; }
    public bool? WithPieces { get; set; }
}

public sealed class TokenizeResponse
{
    public required List<int> Tokens { get; init; }
}

public sealed class TokenizePiecesResponse
{
    public required List<TokenPiece> Tokens { get; init; }
}

public sealed class TokenPiece
{
    public int Id { get; init; }
    public required string Piece { get; init; }
}

public sealed class DetokenizeRequest
{
    public List<int>? Tokens { get; set; }
}

public sealed class DetokenizeResponse
{
    public required string Content { get; init; }
}

public sealed class ApplyTemplateResponse
{
    public required string Prompt { get; init; }
}

public sealed class ModelList
{
    public string Object { get; init; } = "list";
    public required List<ModelCard> Data { get; init; }
}

public sealed class ModelCard
{
    public required string Id { get; init; }
    public string Object { get; init; } = "model";
    public long Created { get; init; }
    public string OwnedBy { get; init; } = "pipeline";
    /// <summary>Context limit in tokens.</summary>
    public int MaxContext { get; init; }
}

public sealed class HealthResponse
{
    public required string Status { get; init; }
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow)]
[JsonSerializable(typeof(ChatCompletionRequest))]
[JsonSerializable(typeof(ChatCompletionResponse))]
[JsonSerializable(typeof(ErrorResponse))]
[JsonSerializable(typeof(TokenizeRequest))]
[JsonSerializable(typeof(TokenizeResponse))]
[JsonSerializable(typeof(TokenizePiecesResponse))]
[JsonSerializable(typeof(DetokenizeRequest))]
[JsonSerializable(typeof(DetokenizeResponse))]
[JsonSerializable(typeof(ApplyTemplateResponse))]
[JsonSerializable(typeof(ModelList))]
[JsonSerializable(typeof(HealthResponse))]
public sealed partial class OpenAiJson : JsonSerializerContext;
