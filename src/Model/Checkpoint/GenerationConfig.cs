using System.Text.Json;

namespace Pipeline.Model.Checkpoint;

/// <summary>
/// Sampling defaults and stop tokens from generation_config.json. Null fields were not specified
/// (the sampler then uses its own defaults). When the file is absent, the stop tokens come from
/// config.json's eos_token_id.
/// </summary>
public sealed record GenerationConfig(
    IReadOnlyList<int> EosTokenIds,
    int? BosTokenId,
    float? Temperature,
    int? TopK,
    float? TopP,
    float? MinP,
    bool? DoSample = null)
{
    public const string FileName = "generation_config.json";

    /// <summary>Reads <c>directory/generation_config.json</c>, or builds the defaults when it is absent.</summary>
    public static GenerationConfig Load(string directory, IReadOnlyList<int> configEosTokenIds, int? configBosTokenId)
    {
        string path = Path.Combine(Path.GetFullPath(directory), FileName);
        if (!File.Exists(path))
            return new GenerationConfig(configEosTokenIds, configBosTokenId, null, null, null, null);
        using var document = JsonFields.ParseFile(path);
        return Parse(new JsonFields(path), document.RootElement, configEosTokenIds, configBosTokenId);
    }

    internal static GenerationConfig Parse(JsonFields json, JsonElement root, IReadOnlyList<int> configEos, int? configBos)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw new CheckpointFormatException(json.FilePath, null, $"must be a JSON object, found {root.ValueKind}");
        var eos = json.OptionalIntOrList(root, "", "eos_token_id") ?? configEos;
        if (eos.Count == 0)
            throw json.Fail("eos_token_id", "is an empty list");
        float? temperature = (float?)json.OptionalDouble(root, "", "temperature");
        if (temperature is < 0)
            throw json.Fail("temperature", $"must be >= 0, found {temperature}");
        float? topP = (float?)json.OptionalDouble(root, "", "top_p");
        if (topP is <= 0 or > 1)
            throw json.Fail("top_p", $"must be in (0, 1], found {topP}");
        float? minP = (float?)json.OptionalDouble(root, "", "min_p");
        if (minP is < 0 or > 1)
            throw json.Fail("min_p", $"must be in [0, 1], found {minP}");
        return new GenerationConfig(
            EosTokenIds: eos,
            BosTokenId: json.OptionalInt(root, "", "bos_token_id", min: 0) ?? configBos,
            Temperature: temperature,
            TopK: json.OptionalInt(root, "", "top_k", min: 0),
            TopP: topP,
            MinP: minP,
            DoSample: json.OptionalBool(root, "", "do_sample"));
    }
}
