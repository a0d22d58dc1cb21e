using System.Text.Json;
using System.Text.Json.Nodes;

namespace Pipeline.Tokenizer.Parsing;

/// <summary>The token ids that end generation: generation_config.json's <c>eos_token_id</c> (an id or a list).
/// For Gemma-4 these are <c>&lt;eos&gt;</c> 1, <c>&lt;turn|&gt;</c> 106 and <c>&lt;|tool_response&gt;</c> 50.</summary>
public sealed class StopTokens
{
    private readonly HashSet<int> ids;

    public StopTokens(IEnumerable<int> ids) => this.ids = [.. ids];

    public IReadOnlyCollection<int> Ids => ids;

    /// <summary>Read from the embedded Gemma-4 generation_config.json.</summary>
    public static StopTokens Gemma4 { get; } = FromGenerationConfig(GemmaTokenizerData.ReadGenerationConfigJson(), "embedded generation_config.json");

    public bool IsStop(int id) => ids.Contains(id);

    public static StopTokens FromGenerationConfigFile(string path) => FromGenerationConfig(File.ReadAllText(path), path);

    public static StopTokens FromGenerationConfig(string json, string source = "generation_config.json")
    {
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(json);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source}: invalid JSON ({e.Message}).", e);
        }
        var node = (root as JsonObject ?? throw new InvalidDataException($"{source}: expected a JSON object."))["eos_token_id"];
        return node switch
        {
            null => throw new InvalidDataException($"{source}: eos_token_id is missing."),
            JsonArray array => new StopTokens(array.Select((n, i) => Id(n, $"{source}: eos_token_id[{i}]"))),
            _ => new StopTokens([Id(node, $"{source}: eos_token_id")]),
        };
    }

    private static int Id(JsonNode? node, string where) =>
        node is JsonValue v && v.TryGetValue(out int id) && id >= 0 ? id
        : throw new InvalidDataException($"{where} must be a non-negative integer, got {node?.ToJsonString() ?? "null"}.");
}
