using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;
using AiChatMessage = Microsoft.Extensions.AI.ChatMessage;

namespace Pipeline.Actors.Client;

/// <summary>Microsoft.Extensions.AI messages and options to the actor pipeline's, and its events back.</summary>
internal static class MessageMapping
{
    /// <summary>
    /// The pipeline's messages for <paramref name="messages"/>: text parts joined, reasoning kept apart,
    /// images as <see cref="ImagePart"/>, function calls as <see cref="ToolCall"/>, each function result a tool message.
    /// <paramref name="instructions"/> (ChatOptions.Instructions) joins the leading system message or becomes one.
    /// </summary>
    public static List<ChatMessage> ToPipeline(IEnumerable<AiChatMessage> messages, string? instructions)
    {
        var result = new List<ChatMessage>();
        var toolNames = new Dictionary<string, string>();
        int index = 0;
        foreach (var message in messages)
        {
            var text = new StringBuilder();
            var reasoning = new StringBuilder();
            var images = new List<ImagePart>();
            var calls = new List<ToolCall>();
            var results = new List<ChatMessage>();
            foreach (var content in message.Contents)
            {
                switch (content)
                {
                    case TextContent t:
                        text.Append(t.Text);
                        break;
                    case TextReasoningContent r:
                        reasoning.Append(r.Text);
                        break;
                    case DataContent d when d.HasTopLevelMediaType("image"):
                        images.Add(new ImagePart(d.MediaType, d.Data.ToArray(), null));
                        break;
                    case UriContent u when u.HasTopLevelMediaType("image"):
                        images.Add(new ImagePart(u.MediaType, null, u.Uri.ToString()));
                        break;
                    case FunctionCallContent c:
                        calls.Add(new ToolCall(c.CallId, c.Name, ArgumentsJson(c.Arguments)));
                        toolNames[c.CallId] = c.Name;
                        break;
                    case FunctionResultContent r:
                        results.Add(new ChatMessage
                        {
                            Role = ChatMessage.Tool,
                            ToolCallId = r.CallId,
                            Name = toolNames.GetValueOrDefault(r.CallId),
                            Content = ResultText(r.Result),
                        });
                        break;
                    case UsageContent:
                        break;
                    default:
                        throw new ArgumentException(
                            $"messages[{index}] ({message.Role}) has content of type {content.GetType().Name}"
                            + (content is DataContent or UriContent ? $" with media type '{(content as DataContent)?.MediaType ?? (content as UriContent)?.MediaType}'" : "")
                            + "; supported: text, reasoning, images, function calls and function results", nameof(messages));
                }
            }

            string role = RoleOf(message.Role, index);
            bool onlyResults = results.Count > 0 && text.Length == 0 && calls.Count == 0 && images.Count == 0;
            if (!onlyResults)
            {
                result.Add(new ChatMessage
                {
                    Role = role,
                    Content = text.ToString(),
                    Reasoning = reasoning.Length > 0 ? reasoning.ToString() : null,
                    ToolCalls = calls.Count > 0 ? calls : null,
                    Images = images.Count > 0 ? images : null,
                });
            }
            result.AddRange(results);
            index++;
        }

        if (!string.IsNullOrEmpty(instructions))
        {
            if (result.Count > 0 && result[0].Role == ChatMessage.System)
                result[0] = result[0] with { Content = string.IsNullOrEmpty(result[0].Content) ? instructions : result[0].Content + "\n\n" + instructions };
            else
                result.Insert(0, ChatMessage.FromSystem(instructions));
        }
        return result;
    }

    private static string RoleOf(ChatRole role, int index)
    {
        if (role == ChatRole.System)
            return ChatMessage.System;
        if (role == ChatRole.User)
            return ChatMessage.User;
        if (role == ChatRole.Assistant)
            return ChatMessage.Assistant;
        if (role == ChatRole.Tool)
            return ChatMessage.Tool;
        throw new ArgumentException($"messages[{index}] has role '{role}'; expected system, user, assistant or tool", "messages");
    }

    private static string ArgumentsJson(IDictionary<string, object?>? arguments) =>
        arguments is null ? "{}" : JsonSerializer.Serialize(arguments, AIJsonUtilities.DefaultOptions.GetTypeInfo(typeof(IDictionary<string, object?>)));

    private static string ResultText(object? result) => result switch
    {
        null => "",
        string s => s,
        _ => JsonSerializer.Serialize(result, AIJsonUtilities.DefaultOptions.GetTypeInfo(typeof(object))),
    };

    /// <summary>Whether two transcript messages are the same turn of a conversation (reasoning aside: templates drop it).</summary>
    public static bool SameMessage(ChatMessage a, ChatMessage b) =>
        a.Role == b.Role
        && (a.Content ?? "") == (b.Content ?? "")
        && a.ToolCallId == b.ToolCallId
        && (a.ToolCalls?.Count ?? 0) == (b.ToolCalls?.Count ?? 0)
        && (a.ToolCalls is null || a.ToolCalls.Zip(b.ToolCalls!).All(p => p.First.Id == p.Second.Id && p.First.Name == p.Second.Name))
        && (a.Images?.Count ?? 0) == (b.Images?.Count ?? 0);

    /// <summary>Whether <paramref name="transcript"/> is a strict prefix of <paramref name="messages"/>.</summary>
    public static bool IsStrictPrefix(IReadOnlyList<ChatMessage> transcript, IReadOnlyList<ChatMessage> messages)
    {
        if (transcript.Count >= messages.Count)
            return false;
        for (int i = 0; i < transcript.Count; i++)
        {
            if (!SameMessage(transcript[i], messages[i]))
                return false;
        }
        return true;
    }

    /// <summary>ChatOptions to the pipeline's generation options.</summary>
    public static GenerationOptions ToGenerationOptions(ChatOptions? options, int defaultMaxNewTokens)
    {
        if (options is null)
            return new GenerationOptions { MaxNewTokens = defaultMaxNewTokens };
        float? minP = null;
        string? effort = options.Reasoning?.Effort switch
        {
            null => null,
            ReasoningEffort.ExtraHigh => "high",
            var e => e.Value.ToString().ToLowerInvariant(),
        };
        if (options.AdditionalProperties is { } extra)
        {
            if (extra.ContainsKey("min_p"))
                minP = extra.TryGetValue("min_p", out float value) ? value
                    : throw new ArgumentException($"ChatOptions.AdditionalProperties[\"min_p\"] = '{extra["min_p"]}' is not a number", nameof(options));
            if (extra.ContainsKey("reasoning_effort"))
            {
                effort = extra.TryGetValue("reasoning_effort", out string? value) ? value?.ToLowerInvariant() : null;
                if (effort is not ("none" or "low" or "medium" or "high"))
                    throw new ArgumentException(
                        $"ChatOptions.AdditionalProperties[\"reasoning_effort\"] = '{extra["reasoning_effort"]}'; expected none, low, medium or high", nameof(options));
            }
        }
        if (options.MaxOutputTokens is <= 0)
            throw new ArgumentException($"ChatOptions.MaxOutputTokens = {options.MaxOutputTokens} must be positive", nameof(options));
        return new GenerationOptions
        {
            Temperature = options.Temperature,
            TopP = options.TopP,
            TopK = options.TopK,
            MinP = minP,
            Seed = options.Seed is { } seed ? unchecked((ulong)seed) : null,
            MaxNewTokens = options.MaxOutputTokens ?? defaultMaxNewTokens,
            Stop = options.StopSequences is { Count: > 0 } stop ? [.. stop] : null,
            ReasoningEffort = effort,
            ToolsJson = options.ToolMode is NoneChatToolMode ? null : ToolsJson(options.Tools),
        };
    }

    /// <summary>Function declarations as the OpenAI-style tools array the chat template takes, or null for none.</summary>
    public static string? ToolsJson(IList<AITool>? tools)
    {
        if (tools is not { Count: > 0 })
            return null;
        var array = new JsonArray();
        foreach (var tool in tools)
        {
            if (tool is not AIFunctionDeclaration function)
                throw new ArgumentException($"tool '{tool.Name}' is a {tool.GetType().Name}; only function declarations are supported", nameof(tools));
            var declaration = new JsonObject
            {
                ["name"] = function.Name,
                ["parameters"] = JsonNode.Parse(function.JsonSchema.GetRawText()),
            };
            if (!string.IsNullOrEmpty(function.Description))
                declaration["description"] = function.Description;
            array.Add(new JsonObject { ["type"] = "function", ["function"] = declaration });
        }
        return array.ToJsonString();
    }

    public static ChatFinishReason ToFinishReason(FinishReason reason) => reason switch
    {
        FinishReason.Stop => ChatFinishReason.Stop,
        FinishReason.Length => ChatFinishReason.Length,
        FinishReason.ToolCalls => ChatFinishReason.ToolCalls,
        _ => new ChatFinishReason(reason.ToString().ToLowerInvariant()),
    };

    public static FunctionCallContent ToFunctionCall(ToolCall call) =>
        FunctionCallContent.CreateFromParsedArguments(call.ArgumentsJson, call.Id, call.Name,
            json => JsonSerializer.Deserialize(json, AIJsonUtilities.DefaultOptions.GetTypeInfo(typeof(Dictionary<string, object?>))) as Dictionary<string, object?>);
}
