using System.Text.Json;
using System.Text.Json.Nodes;
using Pipeline.Actors.Messages;
using Pipeline.Tokenizer;
using Pipeline.Tokenizer.Chat;
using Pipeline.Tokenizer.Parsing;
using TemplateMessage = Pipeline.Tokenizer.Chat.ChatMessage;
using TokenizerModel = Pipeline.Tokenizer.Tokenizer;

namespace Pipeline.Actors.Text;

/// <summary>
/// Gemma-4's chat format: the model's chat template (<see cref="ChatTemplate"/>) on the way in; on the
/// way out the streaming detokenizer with special tokens kept (stop strings applied) feeding
/// <see cref="Gemma4OutputParser"/>, which splits answer text, thinking and tool calls.
/// </summary>
public sealed class Gemma4ChatFormat(TokenizerModel tokenizer, ChatTemplate template) : IChatFormat
{
    /// <summary>The embedded Gemma-4 tokenizer with the template of <paramref name="modelDirectory"/> (or the embedded one).</summary>
    public static Gemma4ChatFormat ForModel(string? modelDirectory) => new(TokenizerModel.LoadGemma4(), ChatTemplate.ForModel(modelDirectory));

    public string Render(IReadOnlyList<ChatMessage> messages, PromptSettings settings)
    {
        var request = new ChatRequest
        {
            Messages = messages.Select(ToTemplate).ToArray(),
            Tools = ParseTools(settings.ToolsJson),
            AddGenerationPrompt = true,
            EnableThinking = settings.EnableThinking,
            ReasoningEffort = ParseEffort(settings.ReasoningEffort),
        };
        return template.Render(request);
    }

    public ITurnDecoder CreateDecoder(OutputSettings settings) =>
        new Decoder(new StreamingDetokenizer(tokenizer, skipSpecialTokens: false, settings.StopStrings), new Gemma4OutputParser());

    /// <summary>low, medium, high or none (case-insensitive); null = unset.</summary>
    public static ReasoningEffort? ParseEffort(string? effort) => effort?.ToLowerInvariant() switch
    {
        null => null,
        "none" => ReasoningEffort.None,
        "low" => ReasoningEffort.Low,
        "medium" => ReasoningEffort.Medium,
        "high" => ReasoningEffort.High,
        _ => throw new ArgumentException($"reasoning effort '{effort}' is not one of none, low, medium, high", nameof(effort)),
    };

    private static IReadOnlyList<JsonObject>? ParseTools(string? toolsJson)
    {
        if (toolsJson is null)
            return null;
        var node = JsonNode.Parse(toolsJson) as JsonArray
            ?? throw new ArgumentException("tools must be a JSON array of {type: function, function: {...}} objects", nameof(toolsJson));
        return node.Select((t, i) => t as JsonObject ?? throw new ArgumentException($"tools[{i}] must be a JSON object", nameof(toolsJson))).ToArray();
    }

    private static TemplateMessage ToTemplate(ChatMessage message)
    {
        IReadOnlyList<ChatContentPart>? parts = null;
        if (message.Images is { Count: > 0 } images)
        {
            var list = new List<ChatContentPart>();
            if (!string.IsNullOrEmpty(message.Content))
                list.Add(new TextPart(message.Content));
            list.AddRange(images.Select(i => MediaPart.Image(i.Url)));
            parts = list;
        }
        return new TemplateMessage
        {
            Role = message.Role,
            Content = parts is null ? message.Content : null,
            Parts = parts,
            ReasoningContent = message.Reasoning,
            ToolCalls = message.ToolCalls?.Select(c => new ChatToolCall(c.Name, ParseArguments(c.ArgumentsJson), c.Id)).ToArray(),
            ToolCallId = message.ToolCallId,
            Name = message.Name,
        };
    }

    private static JsonNode? ParseArguments(string json)
    {
        try
        {
            return JsonNode.Parse(json);
        }
        catch (JsonException)
        {
            return JsonValue.Create(json);   // not JSON: passed to the template as the text it is
        }
    }

    private sealed class Decoder(StreamingDetokenizer detokenizer, Gemma4OutputParser parser) : ITurnDecoder
    {
        private bool _inReasoning;

        public bool StopHit => detokenizer.Stopped;

        public int ReasoningTokens { get; private set; }

        public void Push(int token, List<ChatEvent> events)
        {
            var result = detokenizer.Push(token);
            if (result.Delta.Length > 0)
                Map(parser.Push(result.Delta), events);
            if (result.Stopped)
                Map(parser.Finish(), events);
            // A token counts as reasoning when the output is inside the thinking channel after it
            // (exact up to text the parser still holds back at a channel boundary).
            if (_inReasoning)
                ReasoningTokens++;
        }

        public void Flush(List<ChatEvent> events)
        {
            if (!detokenizer.Stopped)
            {
                string rest = detokenizer.Flush();
                if (rest.Length > 0)
                    Map(parser.Push(rest), events);
            }
            Map(parser.Finish(), events);
        }

        private void Map(IReadOnlyList<OutputEvent> output, List<ChatEvent> events)
        {
            foreach (var e in output)
            {
                switch (e)
                {
                    case ContentDelta content:
                        _inReasoning = false;
                        events.Add(new TextDelta(content.Text));
                        break;
                    case Pipeline.Tokenizer.Parsing.ReasoningDelta reasoning:
                        _inReasoning = true;
                        events.Add(new ReasoningDelta(reasoning.Text));
                        break;
                    case Pipeline.Tokenizer.Parsing.ToolCall { Status: ToolCallStatus.Ok } call:
                        _inReasoning = false;
                        events.Add(new ToolCallEvent(new ToolCall("call_" + Guid.NewGuid().ToString("N")[..24], call.Name!, call.ArgumentsJson!)));
                        break;
                    case Pipeline.Tokenizer.Parsing.ToolCall call:
                        // Not a well-formed call: the model's text stays visible as it was written.
                        _inReasoning = false;
                        events.Add(new TextDelta(Gemma4OutputParser.ToolCallOpen + call.Raw + Gemma4OutputParser.ToolCallClose));
                        break;
                }
            }
        }
    }
}
