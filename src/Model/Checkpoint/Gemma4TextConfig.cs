using System.Text.Json;

namespace Pipeline.Model.Checkpoint;

public enum AttentionKind
{
    Sliding,
    Full,
}

/// <summary>RoPE for one attention kind: "default" or Gemma-4's "proportional" (partial rotation).</summary>
public sealed record RopeParameters(string RopeType, double Theta, double PartialRotaryFactor);

/// <summary>
/// The text decoder's hyper-parameters (config.json "text_config", or the root for text-only
/// "gemma4_text"). Absent optional fields take Hugging Face's Gemma4TextConfig defaults.
/// </summary>
public sealed record Gemma4TextConfig(
    int HiddenSize,
    int NumHiddenLayers,
    int IntermediateSize,
    int NumAttentionHeads,
    int NumKeyValueHeads,
    int SlidingHeadDim,
    int? NumGlobalKeyValueHeads,
    int GlobalHeadDim,
    bool AttentionKEqV,
    IReadOnlyList<AttentionKind> LayerTypes,
    int SlidingWindow,
    RopeParameters SlidingRope,
    RopeParameters FullRope,
    float? FinalLogitSoftcapping,
    float RmsNormEps,
    int VocabSize,
    int MaxPositionEmbeddings,
    bool TieWordEmbeddings,
    string HiddenActivation)
{
    public static readonly IReadOnlyList<string> SupportedActivations = ["gelu_pytorch_tanh"];
    public static readonly IReadOnlyList<string> SupportedRopeTypes = ["default", "proportional"];

    public bool IsFullAttention(int layer) => LayerTypes[CheckLayer(layer)] == AttentionKind.Full;

    /// <summary>Per-head dimension of queries, keys and values: global_head_dim on full layers.</summary>
    public int HeadDim(int layer) => IsFullAttention(layer) ? GlobalHeadDim : SlidingHeadDim;

    /// <summary>KV heads: num_global_key_value_heads on full layers when attention_k_eq_v (as HF does).</summary>
    public int KvHeads(int layer) =>
        IsFullAttention(layer) && AttentionKEqV && NumGlobalKeyValueHeads is { } global ? global : NumKeyValueHeads;

    /// <summary>Full layers with attention_k_eq_v have no v_proj: values are the keys' projection.</summary>
    public bool HasValueProjection(int layer) => !(IsFullAttention(layer) && AttentionKEqV);

    public RopeParameters Rope(int layer) => IsFullAttention(layer) ? FullRope : SlidingRope;

    /// <summary>Dimensions of each head that RoPE rotates: 2*floor(factor*head_dim/2) (all of them on sliding layers).</summary>
    public int RopeDims(int layer) => RotatedDims(HeadDim(layer), Rope(layer).PartialRotaryFactor);

    public int QueryDim(int layer) => NumAttentionHeads * HeadDim(layer);

    public int KvDim(int layer) => KvHeads(layer) * HeadDim(layer);

    private int CheckLayer(int layer) =>
        (uint)layer < (uint)NumHiddenLayers ? layer : throw new ArgumentOutOfRangeException(nameof(layer), layer, $"model has {NumHiddenLayers} layers");

    private static int RotatedDims(int headDim, double factor) => 2 * (int)Math.Floor(factor * headDim / 2);

    internal static Gemma4TextConfig Parse(JsonFields json, JsonElement obj, string prefix, bool? tieOverride)
    {
        int layers = json.RequiredInt(obj, prefix, "num_hidden_layers");
        var layerTypes = ParseLayerTypes(json, obj, prefix, layers);

        RejectUnsupported(json, obj, prefix);
        string activation = json.OptionalString(obj, prefix, "hidden_activation") ?? "gelu_pytorch_tanh";
        if (!SupportedActivations.Contains(activation))
            throw json.Fail(JsonFields.Join(prefix, "hidden_activation"), $"'{activation}' is not supported (supported: {string.Join(", ", SupportedActivations)})");

        var (slidingRope, fullRope) = ParseRope(json, obj, prefix);
        var config = new Gemma4TextConfig(
            HiddenSize: json.RequiredInt(obj, prefix, "hidden_size"),
            NumHiddenLayers: layers,
            IntermediateSize: json.RequiredInt(obj, prefix, "intermediate_size"),
            NumAttentionHeads: json.RequiredInt(obj, prefix, "num_attention_heads"),
            NumKeyValueHeads: json.RequiredInt(obj, prefix, "num_key_value_heads"),
            SlidingHeadDim: json.RequiredInt(obj, prefix, "head_dim"),
            NumGlobalKeyValueHeads: json.OptionalInt(obj, prefix, "num_global_key_value_heads"),
            GlobalHeadDim: json.OptionalInt(obj, prefix, "global_head_dim") ?? 512,
            AttentionKEqV: json.OptionalBool(obj, prefix, "attention_k_eq_v") ?? false,
            LayerTypes: layerTypes,
            SlidingWindow: json.RequiredInt(obj, prefix, "sliding_window"),
            SlidingRope: slidingRope,
            FullRope: fullRope,
            FinalLogitSoftcapping: (float?)json.OptionalDouble(obj, prefix, "final_logit_softcapping"),
            RmsNormEps: (float)(json.OptionalDouble(obj, prefix, "rms_norm_eps") ?? 1e-6),
            VocabSize: json.RequiredInt(obj, prefix, "vocab_size"),
            MaxPositionEmbeddings: json.OptionalInt(obj, prefix, "max_position_embeddings") ?? 131_072,
            TieWordEmbeddings: tieOverride ?? json.OptionalBool(obj, prefix, "tie_word_embeddings") ?? true,
            HiddenActivation: activation);
        config.Validate(json, prefix);
        return config;
    }

    private void Validate(JsonFields json, string prefix)
    {
        if (RmsNormEps <= 0)
            throw json.Fail(JsonFields.Join(prefix, "rms_norm_eps"), $"must be positive, found {RmsNormEps}");
        if (FinalLogitSoftcapping is <= 0)
            throw json.Fail(JsonFields.Join(prefix, "final_logit_softcapping"), $"must be positive or null, found {FinalLogitSoftcapping}");
        for (int layer = 0; layer < NumHiddenLayers; layer++)
        {
            int kvHeads = KvHeads(layer);
            if (NumAttentionHeads % kvHeads != 0)
                throw json.Fail(JsonFields.Join(prefix, IsFullAttention(layer) ? "num_global_key_value_heads" : "num_key_value_heads"),
                    $"= {kvHeads} does not divide num_attention_heads = {NumAttentionHeads} (layer {layer})");
            int ropeDims = RopeDims(layer);
            if (ropeDims <= 0 || ropeDims > HeadDim(layer))
                throw json.Fail(JsonFields.Join(prefix, "rope_parameters"),
                    $"rotate {ropeDims} of {HeadDim(layer)} head dimensions on layer {layer} (partial_rotary_factor {Rope(layer).PartialRotaryFactor})");
        }
    }

    private static List<AttentionKind> ParseLayerTypes(JsonFields json, JsonElement obj, string prefix, int layers)
    {
        string field = JsonFields.Join(prefix, "layer_types");
        if (JsonFields.Member(obj, "layer_types") is not { } array)
        {
            // Hugging Face's default: every sixth layer is full attention.
            return Enumerable.Range(0, layers).Select(i => (i + 1) % 6 == 0 ? AttentionKind.Full : AttentionKind.Sliding).ToList();
        }
        if (array.ValueKind != JsonValueKind.Array)
            throw json.Fail(field, $"must be a list, found {array.GetRawText()}");
        if (array.GetArrayLength() != layers)
            throw json.Fail(field, $"has {array.GetArrayLength()} entries but num_hidden_layers = {layers}");
        var types = new List<AttentionKind>(layers);
        foreach (var item in array.EnumerateArray())
        {
            types.Add(item.ValueKind == JsonValueKind.String ? item.GetString() switch
            {
                "sliding_attention" => AttentionKind.Sliding,
                "full_attention" => AttentionKind.Full,
                _ => throw json.Fail(field, $"entry {types.Count} is {item.GetRawText()}; expected \"sliding_attention\" or \"full_attention\""),
            } : throw json.Fail(field, $"entry {types.Count} is {item.GetRawText()}; expected \"sliding_attention\" or \"full_attention\""));
        }
        return types;
    }

    private static (RopeParameters Sliding, RopeParameters Full) ParseRope(JsonFields json, JsonElement obj, string prefix)
    {
        var defaultSliding = new RopeParameters("default", 10_000.0, 1.0);
        var defaultFull = new RopeParameters("proportional", 1_000_000.0, 0.25);
        string field = JsonFields.Join(prefix, "rope_parameters");
        if (JsonFields.Member(obj, "rope_parameters") is not { } rope)
            return (defaultSliding, defaultFull);
        if (rope.ValueKind != JsonValueKind.Object)
            throw json.Fail(field, $"must be an object, found {rope.GetRawText()}");
        return (ParseOneRope(json, rope, field, "sliding_attention", defaultSliding),
                ParseOneRope(json, rope, field, "full_attention", defaultFull));
    }

    private static RopeParameters ParseOneRope(JsonFields json, JsonElement rope, string field, string kind, RopeParameters fallback)
    {
        if (JsonFields.Member(rope, kind) is not { } entry)
            return fallback;
        string prefix = JsonFields.Join(field, kind);
        if (entry.ValueKind != JsonValueKind.Object)
            throw json.Fail(prefix, $"must be an object, found {entry.GetRawText()}");
        string type = json.OptionalString(entry, prefix, "rope_type") ?? "default";
        if (!SupportedRopeTypes.Contains(type))
            throw json.Fail(JsonFields.Join(prefix, "rope_type"), $"'{type}' is not supported (supported: {string.Join(", ", SupportedRopeTypes)})");
        double theta = json.RequiredDouble(entry, prefix, "rope_theta");
        if (theta <= 0)
            throw json.Fail(JsonFields.Join(prefix, "rope_theta"), $"must be positive, found {theta}");
        double factor = json.OptionalDouble(entry, prefix, "partial_rotary_factor") ?? 1.0;
        if (factor is <= 0 or > 1)
            throw json.Fail(JsonFields.Join(prefix, "partial_rotary_factor"), $"must be in (0, 1], found {factor}");
        return new RopeParameters(type, theta, factor);
    }

    /// <summary>Variants of Gemma 4 whose weights this loader does not model: refuse rather than mis-load.</summary>
    private static void RejectUnsupported(JsonFields json, JsonElement obj, string prefix)
    {
        if (json.OptionalBool(obj, prefix, "enable_moe_block") == true)
            throw json.Fail(JsonFields.Join(prefix, "enable_moe_block"), "= true (mixture-of-experts) is not supported");
        if (json.OptionalBool(obj, prefix, "use_double_wide_mlp") == true)
            throw json.Fail(JsonFields.Join(prefix, "use_double_wide_mlp"), "= true is not supported");
        if (json.OptionalBool(obj, prefix, "attention_bias") == true)
            throw json.Fail(JsonFields.Join(prefix, "attention_bias"), "= true is not supported");
        if (json.OptionalInt(obj, prefix, "num_kv_shared_layers", min: 0) is > 0 and var shared)
            throw json.Fail(JsonFields.Join(prefix, "num_kv_shared_layers"), $"= {shared} (KV sharing) is not supported");
        if (json.OptionalInt(obj, prefix, "hidden_size_per_layer_input", min: 0) is > 0 and var perLayer)
            throw json.Fail(JsonFields.Join(prefix, "hidden_size_per_layer_input"), $"= {perLayer} (per-layer embeddings) is not supported");
        if (json.OptionalDouble(obj, prefix, "attn_logit_softcapping") is { } softcap)
            throw json.Fail(JsonFields.Join(prefix, "attn_logit_softcapping"), $"= {softcap} is not supported (Gemma 4 uses none)");
    }
}
