using System.Text.Json;

namespace Pipeline.Model.Checkpoint;

/// <summary>
/// Typed reads of JSON config fields; every failure is a <see cref="CheckpointFormatException"/>
/// naming the file, the field's dotted path and the value found.
/// </summary>
internal sealed class JsonFields(string filePath)
{
    public string FilePath { get; } = filePath;

    public static JsonDocument ParseFile(string filePath)
    {
        if (!File.Exists(filePath))
            throw new CheckpointFormatException(filePath, null, "file does not exist");
        try
        {
            return JsonDocument.Parse(File.ReadAllBytes(filePath));
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException(filePath, null, $"not valid JSON ({e.Message})", e);
        }
    }

    public CheckpointFormatException Fail(string field, string detail) =>
        new(FilePath, null, $"field '{field}' {detail}");

    public static string Join(string prefix, string name) => prefix.Length == 0 ? name : prefix + "." + name;

    /// <summary>The member, or null when absent or JSON null.</summary>
    public static JsonElement? Member(JsonElement obj, string name) =>
        obj.ValueKind == JsonValueKind.Object && obj.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null
            ? value
            : null;

    public int RequiredInt(JsonElement obj, string prefix, string name, int min = 1) =>
        OptionalInt(obj, prefix, name, min) ?? throw Fail(Join(prefix, name), "is missing");

    public int? OptionalInt(JsonElement obj, string prefix, string name, int min = 1)
    {
        if (Member(obj, name) is not { } value)
            return null;
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt32(out int result))
            throw Fail(Join(prefix, name), $"must be an integer, found {value.GetRawText()}");
        if (result < min)
            throw Fail(Join(prefix, name), $"must be at least {min}, found {result}");
        return result;
    }

    public double RequiredDouble(JsonElement obj, string prefix, string name) =>
        OptionalDouble(obj, prefix, name) ?? throw Fail(Join(prefix, name), "is missing");

    public double? OptionalDouble(JsonElement obj, string prefix, string name)
    {
        if (Member(obj, name) is not { } value)
            return null;
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out double result) || !double.IsFinite(result))
            throw Fail(Join(prefix, name), $"must be a number, found {value.GetRawText()}");
        return result;
    }

    public bool? OptionalBool(JsonElement obj, string prefix, string name)
    {
        if (Member(obj, name) is not { } value)
            return null;
        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Fail(Join(prefix, name), $"must be true or false, found {value.GetRawText()}"),
        };
    }

    public string? OptionalString(JsonElement obj, string prefix, string name)
    {
        if (Member(obj, name) is not { } value)
            return null;
        if (value.ValueKind != JsonValueKind.String)
            throw Fail(Join(prefix, name), $"must be a string, found {value.GetRawText()}");
        return value.GetString();
    }

    /// <summary>An integer or a list of integers (how eos_token_id is written); null when absent.</summary>
    public IReadOnlyList<int>? OptionalIntOrList(JsonElement obj, string prefix, string name)
    {
        if (Member(obj, name) is not { } value)
            return null;
        var items = value.ValueKind == JsonValueKind.Array ? value.EnumerateArray().ToList() : [value];
        var result = new List<int>(items.Count);
        foreach (var item in items)
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt32(out int id) || id < 0)
                throw Fail(Join(prefix, name), $"must be a non-negative integer or a list of them, found {value.GetRawText()}");
            result.Add(id);
        }
        return result;
    }
}
