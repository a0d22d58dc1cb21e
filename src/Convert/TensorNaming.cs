using System.Globalization;

namespace Pipeline.Convert;

/// <summary>What a tensor is, as far as the recipe and AWQ care.</summary>
public enum ModuleRole
{
    Embedding,
    LmHead,
    QProj,
    KProj,
    VProj,
    OProj,
    GateProj,
    UpProj,
    DownProj,
    InputNorm,
    PreFeedforwardNorm,
    /// <summary>Other language-model tensors: norms, layer scalars, q/k norms. Kept as they are.</summary>
    Other,
    /// <summary>vision_tower.*, embed_vision.*, audio_tower.*, embed_audio.*: kept as they are.</summary>
    Tower,
}

/// <summary>A tensor name in MLX layout split into module path, parameter and role.</summary>
public readonly record struct TensorName(string Full, string Module, string Parameter, ModuleRole Role, int? Layer);

/// <summary>
/// Maps Hugging Face Gemma-4 names (<c>model.language_model.*</c>, <c>model.vision_tower.*</c>,
/// <c>lm_head.*</c>) to the MLX names the runtime loads (<c>language_model.model.*</c>,
/// <c>vision_tower.*</c>, <c>language_model.lm_head.*</c>); names already in MLX layout pass through.
/// </summary>
public static class TensorNaming
{
    public const string LanguageModelPrefix = "language_model.model.";
    private const string HfLanguageModelPrefix = "model.language_model.";
    private static readonly string[] TowerPrefixes =
        ["vision_tower.", "embed_vision.", "audio_tower.", "embed_audio.", "multi_modal_projector."];

    public static string ToMlxName(string sourceName)
    {
        if (sourceName.StartsWith(HfLanguageModelPrefix, StringComparison.Ordinal))
            return LanguageModelPrefix + sourceName[HfLanguageModelPrefix.Length..];
        if (sourceName.StartsWith("lm_head.", StringComparison.Ordinal))
            return "language_model." + sourceName;
        if (sourceName.StartsWith("model.", StringComparison.Ordinal)
            && TowerPrefixes.Any(p => sourceName.AsSpan(6).StartsWith(p, StringComparison.Ordinal)))
            return sourceName[6..];
        if (sourceName.StartsWith(LanguageModelPrefix, StringComparison.Ordinal)
            || sourceName.StartsWith("language_model.lm_head.", StringComparison.Ordinal)
            || TowerPrefixes.Any(p => sourceName.StartsWith(p, StringComparison.Ordinal)))
            return sourceName;
        throw new ConvertException(
            $"tensor '{sourceName}' is not part of a Gemma-4 checkpoint (expected model.language_model.*, "
            + "model.vision_tower.*, model.embed_vision.* or lm_head.*)");
    }

    /// <summary>Splits an MLX name into module path and parameter and classifies it.</summary>
    public static TensorName Parse(string mlxName)
    {
        int dot = mlxName.LastIndexOf('.');
        string module = dot < 0 ? mlxName : mlxName[..dot];
        string parameter = dot < 0 ? "" : mlxName[(dot + 1)..];
        if (!mlxName.StartsWith("language_model.", StringComparison.Ordinal))
            return new TensorName(mlxName, module, parameter, ModuleRole.Tower, null);
        if (module == LanguageModelPrefix + "embed_tokens")
            return new TensorName(mlxName, module, parameter, ModuleRole.Embedding, null);
        if (module == "language_model.lm_head")
            return new TensorName(mlxName, module, parameter, ModuleRole.LmHead, null);

        const string layersPrefix = LanguageModelPrefix + "layers.";
        if (!mlxName.StartsWith(layersPrefix, StringComparison.Ordinal))
            return new TensorName(mlxName, module, parameter, ModuleRole.Other, null);
        string rest = mlxName[layersPrefix.Length..];
        int layerEnd = rest.IndexOf('.');
        if (layerEnd <= 0 || !int.TryParse(rest.AsSpan(0, layerEnd), NumberStyles.None, CultureInfo.InvariantCulture, out int layer))
            return new TensorName(mlxName, module, parameter, ModuleRole.Other, null);
        string submodule = module.Length > layersPrefix.Length + layerEnd
            ? module[(layersPrefix.Length + layerEnd + 1)..]
            : "";
        ModuleRole role = submodule switch
        {
            "self_attn.q_proj" => ModuleRole.QProj,
            "self_attn.k_proj" => ModuleRole.KProj,
            "self_attn.v_proj" => ModuleRole.VProj,
            "self_attn.o_proj" => ModuleRole.OProj,
            "mlp.gate_proj" => ModuleRole.GateProj,
            "mlp.up_proj" => ModuleRole.UpProj,
            "mlp.down_proj" => ModuleRole.DownProj,
            "input_layernorm" => ModuleRole.InputNorm,
            "pre_feedforward_layernorm" => ModuleRole.PreFeedforwardNorm,
            _ => ModuleRole.Other,
        };
        return new TensorName(mlxName, module, parameter, role, layer);
    }

    /// <summary>MLX module path of a decoder-layer submodule, e.g. (3, "mlp.down_proj").</summary>
    public static string LayerModule(int layer, string submodule) =>
        string.Create(CultureInfo.InvariantCulture, $"{LanguageModelPrefix}layers.{layer}.{submodule}");

    public static string Submodule(ModuleRole role) => role switch
    {
        ModuleRole.QProj => "self_attn.q_proj",
        ModuleRole.KProj => "self_attn.k_proj",
        ModuleRole.VProj => "self_attn.v_proj",
        ModuleRole.OProj => "self_attn.o_proj",
        ModuleRole.GateProj => "mlp.gate_proj",
        ModuleRole.UpProj => "mlp.up_proj",
        ModuleRole.DownProj => "mlp.down_proj",
        ModuleRole.InputNorm => "input_layernorm",
        ModuleRole.PreFeedforwardNorm => "pre_feedforward_layernorm",
        _ => throw new ArgumentOutOfRangeException(nameof(role), role, "not a per-layer module role"),
    };
}
