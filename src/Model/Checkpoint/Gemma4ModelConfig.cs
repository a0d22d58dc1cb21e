using System.Text.Json;

namespace Pipeline.Model.Checkpoint;

/// <summary>
/// Everything config.json says: the text decoder, the optional vision tower, the MLX quantization
/// section and the stop tokens. model_type must be "gemma4" (multimodal, fields under text_config) or
/// "gemma4_text" (text-only, fields at the root); anything else is refused.
/// </summary>
public sealed record Gemma4ModelConfig(
    string ModelType,
    Gemma4TextConfig Text,
    Gemma4VisionConfig? Vision,
    QuantizationConfig? Quantization,
    IReadOnlyList<int> EosTokenIds,
    int? BosTokenId)
{
    public const string FileName = "config.json";
    public static readonly IReadOnlyList<string> SupportedModelTypes = ["gemma4", "gemma4_text"];

    public static Gemma4ModelConfig Load(string configPath)
    {
        configPath = Path.GetFullPath(configPath);
        using var document = JsonFields.ParseFile(configPath);
        return Parse(new JsonFields(configPath), document.RootElement);
    }

    internal static Gemma4ModelConfig Parse(JsonFields json, JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw new CheckpointFormatException(json.FilePath, null, $"must be a JSON object, found {root.ValueKind}");
        string modelType = json.OptionalString(root, "", "model_type") ?? throw json.Fail("model_type", "is missing");
        if (!SupportedModelTypes.Contains(modelType))
            throw json.Fail("model_type", $"is '{modelType}'; model_type '{modelType}' is not supported (supported: {string.Join(", ", SupportedModelTypes)})");

        JsonElement textObject = root;
        string textPrefix = "";
        bool? tie = null;
        if (modelType == "gemma4")
        {
            textPrefix = "text_config";
            textObject = JsonFields.Member(root, "text_config") is { ValueKind: JsonValueKind.Object } nested
                ? nested
                : throw json.Fail("text_config", "is missing or not an object (model_type 'gemma4' keeps the decoder's fields there)");
            string? textType = json.OptionalString(textObject, textPrefix, "model_type");
            if (textType is not null && textType != "gemma4_text")
                throw json.Fail("text_config.model_type", $"is '{textType}'; model_type '{textType}' is not supported (expected gemma4_text)");
            // The multimodal model ties its output head by the top-level flag.
            tie = json.OptionalBool(root, "", "tie_word_embeddings");
        }

        var text = Gemma4TextConfig.Parse(json, textObject, textPrefix, tie);
        var vision = modelType == "gemma4" ? Gemma4VisionConfig.Parse(json, root) : null;
        var quantization = QuantizationConfig.Parse(json, root);
        var eos = json.OptionalIntOrList(root, "", "eos_token_id")
            ?? json.OptionalIntOrList(textObject, textPrefix, "eos_token_id")
            ?? [1];
        int? bos = json.OptionalInt(root, "", "bos_token_id", min: 0) ?? json.OptionalInt(textObject, textPrefix, "bos_token_id", min: 0);
        return new Gemma4ModelConfig(modelType, text, vision, quantization, eos, bos);
    }
}
