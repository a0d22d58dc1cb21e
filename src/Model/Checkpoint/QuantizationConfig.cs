using System.Text.Json;
using Pipeline.Kernels.Quantization;

namespace Pipeline.Model.Checkpoint;

/// <summary>Bits and group size of one MLX affine-quantized module.</summary>
public readonly record struct QuantParams(int Bits, int GroupSize);

/// <summary>
/// config.json "quantization" (fallback "quantization_config") as MLX writes it: top-level
/// bits/group_size/mode, plus sparse per-module overrides keyed by module path whose value is an
/// object (its own bits/group_size/mode; like MLX's to_quantized, missing keys mean 4 bits, group 64),
/// <c>true</c> (the top-level parameters) or <c>false</c> (not quantized). Only mode "affine" is supported.
/// </summary>
public sealed class QuantizationConfig
{
    public const string SupportedMode = "affine";

    /// <summary>MLX's to_quantized defaults for the affine mode, used for keys an override leaves out.</summary>
    public static readonly QuantParams AffineDefaults = new(4, 64);

    private readonly Dictionary<string, QuantParams?> _overrides;

    private QuantizationConfig(string field, QuantParams defaults, Dictionary<string, QuantParams?> overrides)
    {
        Field = field;
        Defaults = defaults;
        _overrides = overrides;
    }

    /// <summary>"quantization" or "quantization_config": where in config.json this came from.</summary>
    public string Field { get; }

    public QuantParams Defaults { get; }

    /// <summary>Per-module overrides; a null value means the module is explicitly not quantized.</summary>
    public IReadOnlyDictionary<string, QuantParams?> Overrides => _overrides;

    /// <summary>
    /// How module <paramref name="modulePath"/> (e.g. "language_model.model.layers.3.mlp.down_proj") is
    /// stored, following MLX: an override decides if there is one; otherwise the module is quantized with
    /// the top-level parameters iff its ".scales" tensor exists. Null means dense.
    /// </summary>
    public QuantParams? Resolve(string modulePath, bool scalesPresent) =>
        _overrides.TryGetValue(modulePath, out var explicitParams) ? explicitParams
        : scalesPresent ? Defaults
        : null;

    /// <summary>Null when config.json has neither section (an unquantized checkpoint).</summary>
    internal static QuantizationConfig? Parse(JsonFields json, JsonElement root)
    {
        string field = "quantization";
        if (JsonFields.Member(root, field) is not { } section)
        {
            field = "quantization_config";
            if (JsonFields.Member(root, field) is not { } fallback)
                return null;
            section = fallback;
        }
        if (section.ValueKind != JsonValueKind.Object)
            throw json.Fail(field, $"must be an object, found {section.GetRawText()}");

        int bits = json.OptionalInt(section, field, "bits", min: 0) ?? throw json.Fail(field + ".bits", "is missing");
        int groupSize = json.OptionalInt(section, field, "group_size", min: 0) ?? throw json.Fail(field + ".group_size", "is missing");
        var defaults = Check(json, field, bits, groupSize, json.OptionalString(section, field, "mode"));

        var overrides = new Dictionary<string, QuantParams?>(StringComparer.Ordinal);
        foreach (var member in section.EnumerateObject())
        {
            string prefix = field + "." + member.Name;
            switch (member.Value.ValueKind)
            {
                case JsonValueKind.False:
                    overrides[member.Name] = null;
                    break;
                case JsonValueKind.True:
                    overrides[member.Name] = defaults;
                    break;
                case JsonValueKind.Object:
                    overrides[member.Name] = Check(json, prefix,
                        json.OptionalInt(member.Value, prefix, "bits", min: 0) ?? AffineDefaults.Bits,
                        json.OptionalInt(member.Value, prefix, "group_size", min: 0) ?? AffineDefaults.GroupSize,
                        json.OptionalString(member.Value, prefix, "mode"));
                    break;
                default:
                    // Scalars such as bits, group_size, mode or a quant_method tag are not module overrides.
                    break;
            }
        }
        return new QuantizationConfig(field, defaults, overrides);
    }

    private static QuantParams Check(JsonFields json, string prefix, int bits, int groupSize, string? mode)
    {
        if (mode is not null && mode != SupportedMode)
            throw json.Fail(prefix + ".mode", $"is '{mode}'; quantization mode '{mode}' is not supported (only '{SupportedMode}')");
        if (!MlxQuantFormat.IsSupportedBits(bits))
            throw json.Fail(prefix + ".bits", $"is {bits}; supported bits: {string.Join(", ", MlxQuantFormat.SupportedBits)}");
        if (!MlxQuantFormat.IsSupportedGroupSize(groupSize))
            throw json.Fail(prefix + ".group_size", $"is {groupSize}; supported group sizes: {string.Join(", ", MlxQuantFormat.SupportedGroupSizes)}");
        return new QuantParams(bits, groupSize);
    }
}
