using System.Text.Json;

namespace Pipeline.Model.Checkpoint;

/// <summary>
/// The vision tower's hyper-parameters (config.json "vision_config") and the image token ids from the
/// top level. Absent fields take Hugging Face's Gemma4VisionConfig / Gemma4Config defaults.
/// </summary>
public sealed record Gemma4VisionConfig(
    int HiddenSize,
    int IntermediateSize,
    int NumHiddenLayers,
    int NumAttentionHeads,
    int NumKeyValueHeads,
    int HeadDim,
    string HiddenActivation,
    float RmsNormEps,
    int PatchSize,
    int PoolingKernelSize,
    int PositionEmbeddingSize,
    bool Standardize,
    bool UseClippedLinears,
    double RopeTheta,
    int ImageTokenId,
    int BeginOfImageTokenId,
    int EndOfImageTokenId)
{
    /// <summary>Null when vision_config is absent or null.</summary>
    internal static Gemma4VisionConfig? Parse(JsonFields json, JsonElement root)
    {
        if (JsonFields.Member(root, "vision_config") is not { } obj)
            return null;
        const string prefix = "vision_config";
        if (obj.ValueKind != JsonValueKind.Object)
            throw json.Fail(prefix, $"must be an object or null, found {obj.GetRawText()}");
        double ropeTheta = 100.0;
        if (JsonFields.Member(obj, "rope_parameters") is { } rope)
            ropeTheta = json.OptionalDouble(rope, prefix + ".rope_parameters", "rope_theta") ?? ropeTheta;
        var config = new Gemma4VisionConfig(
            HiddenSize: json.OptionalInt(obj, prefix, "hidden_size") ?? 768,
            IntermediateSize: json.OptionalInt(obj, prefix, "intermediate_size") ?? 3072,
            NumHiddenLayers: json.OptionalInt(obj, prefix, "num_hidden_layers") ?? 16,
            NumAttentionHeads: json.OptionalInt(obj, prefix, "num_attention_heads") ?? 12,
            NumKeyValueHeads: json.OptionalInt(obj, prefix, "num_key_value_heads") ?? 12,
            HeadDim: json.OptionalInt(obj, prefix, "head_dim") ?? 64,
            HiddenActivation: json.OptionalString(obj, prefix, "hidden_activation") ?? "gelu_pytorch_tanh",
            RmsNormEps: (float)(json.OptionalDouble(obj, prefix, "rms_norm_eps") ?? 1e-6),
            PatchSize: json.OptionalInt(obj, prefix, "patch_size") ?? 16,
            PoolingKernelSize: json.OptionalInt(obj, prefix, "pooling_kernel_size") ?? 3,
            PositionEmbeddingSize: json.OptionalInt(obj, prefix, "position_embedding_size") ?? 10 * 1024,
            Standardize: json.OptionalBool(obj, prefix, "standardize") ?? false,
            UseClippedLinears: json.OptionalBool(obj, prefix, "use_clipped_linears") ?? false,
            RopeTheta: ropeTheta,
            ImageTokenId: json.OptionalInt(root, "", "image_token_id", min: 0) ?? 258_880,
            BeginOfImageTokenId: json.OptionalInt(root, "", "boi_token_id", min: 0) ?? 255_999,
            EndOfImageTokenId: json.OptionalInt(root, "", "eoi_token_id", min: 0) ?? 258_882);
        if (config.NumAttentionHeads % config.NumKeyValueHeads != 0)
            throw json.Fail(prefix + ".num_key_value_heads",
                $"= {config.NumKeyValueHeads} does not divide num_attention_heads = {config.NumAttentionHeads}");
        return config;
    }
}
