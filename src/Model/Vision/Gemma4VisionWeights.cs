using Pipeline.Kernels;
using Pipeline.Model.Checkpoint;

namespace Pipeline.Model.Vision;

/// <summary>One vision encoder layer's weights (all dense); norms are [1, n] vectors.</summary>
public sealed record Gemma4VisionLayerWeights(
    DenseWeight InputNorm,
    DenseWeight QProj,               // [heads * head_dim, hidden]
    DenseWeight KProj,               // [kv_heads * head_dim, hidden]
    DenseWeight VProj,               // [kv_heads * head_dim, hidden]
    DenseWeight OProj,               // [hidden, heads * head_dim]
    DenseWeight QNorm,               // [1, head_dim]
    DenseWeight KNorm,               // [1, head_dim]
    DenseWeight PostAttentionNorm,
    DenseWeight PreFeedforwardNorm,
    DenseWeight PostFeedforwardNorm,
    DenseWeight Gate,                // [intermediate, hidden]
    DenseWeight Up,                  // [intermediate, hidden]
    DenseWeight Down);               // [hidden, intermediate]

/// <summary>
/// The vision tower and its projector into the text model, memory-mapped from a checkpoint and
/// shape-checked against vision_config. Names are Hugging Face's, with or without the "model." prefix:
/// <c>vision_tower.patch_embedder.{input_proj.weight, position_embedding_table}</c>,
/// <c>vision_tower.encoder.layers.N.self_attn.{q,k,v,o}_proj.linear.weight</c>,
/// <c>...self_attn.{q,k}_norm.weight</c>, <c>...mlp.{gate,up,down}_proj.linear.weight</c>, the four layer
/// norms, <c>vision_tower.{std_bias, std_scale}</c> (when standardize) and
/// <c>embed_vision.embedding_projection.weight</c>. Every tensor must be dense F32, F16 or BF16 (the
/// UD-Q2_K_XL recipe keeps the tower bf16).
/// </summary>
public sealed class Gemma4VisionWeights
{
    private static readonly string[] Prefixes = ["model.", ""];

    private readonly Gemma4Checkpoint _checkpoint;

    private Gemma4VisionWeights(Gemma4Checkpoint checkpoint, Gemma4VisionConfig config)
    {
        _checkpoint = checkpoint;
        Config = config;
        int hidden = config.HiddenSize, headDim = config.HeadDim;
        int queryDim = config.NumAttentionHeads * headDim, kvDim = config.NumKeyValueHeads * headDim;
        int patchValues = config.PatchSize * config.PatchSize * 3;

        InputProjection = Matrix("vision_tower.patch_embedder.input_proj.weight", hidden, patchValues);
        var table = Require("vision_tower.patch_embedder.position_embedding_table");
        long[] tableShape = [2, config.PositionEmbeddingSize, hidden];
        if (!table.Shape.SequenceEqual(tableShape))
            throw Mismatch(table, $"shape {table.ShapeText} but vision_config implies {TensorInfo.FormatShape(tableShape)} (x and y tables)");
        PositionTable = new DenseWeight(table.Data, 2 * config.PositionEmbeddingSize, hidden, FloatType(table));

        var layers = new Gemma4VisionLayerWeights[config.NumHiddenLayers];
        for (int i = 0; i < layers.Length; i++)
        {
            string layer = $"vision_tower.encoder.layers.{i}.";
            layers[i] = new Gemma4VisionLayerWeights(
                InputNorm: Vector(layer + "input_layernorm.weight", hidden),
                QProj: Matrix(layer + "self_attn.q_proj.linear.weight", queryDim, hidden),
                KProj: Matrix(layer + "self_attn.k_proj.linear.weight", kvDim, hidden),
                VProj: Matrix(layer + "self_attn.v_proj.linear.weight", kvDim, hidden),
                OProj: Matrix(layer + "self_attn.o_proj.linear.weight", hidden, queryDim),
                QNorm: Vector(layer + "self_attn.q_norm.weight", headDim),
                KNorm: Vector(layer + "self_attn.k_norm.weight", headDim),
                PostAttentionNorm: Vector(layer + "post_attention_layernorm.weight", hidden),
                PreFeedforwardNorm: Vector(layer + "pre_feedforward_layernorm.weight", hidden),
                PostFeedforwardNorm: Vector(layer + "post_feedforward_layernorm.weight", hidden),
                Gate: Matrix(layer + "mlp.gate_proj.linear.weight", config.IntermediateSize, hidden),
                Up: Matrix(layer + "mlp.up_proj.linear.weight", config.IntermediateSize, hidden),
                Down: Matrix(layer + "mlp.down_proj.linear.weight", hidden, config.IntermediateSize));
        }
        Layers = layers;
        if (config.Standardize)
        {
            StdBias = Vector("vision_tower.std_bias", hidden);
            StdScale = Vector("vision_tower.std_scale", hidden);
        }
        Projection = Matrix("embed_vision.embedding_projection.weight", checkpoint.Text.HiddenSize, hidden);
    }

    public Gemma4VisionConfig Config { get; }

    /// <summary>input_proj [hidden, patch^2 * 3].</summary>
    public DenseWeight InputProjection { get; }

    /// <summary>position_embedding_table [2, P, hidden] viewed as [2P, hidden]: row x is the x table, row P + y the y table.</summary>
    public DenseWeight PositionTable { get; }

    public IReadOnlyList<Gemma4VisionLayerWeights> Layers { get; }

    /// <summary>std_bias and std_scale [1, hidden], null when vision_config.standardize is false.</summary>
    public DenseWeight? StdBias { get; }

    public DenseWeight? StdScale { get; }

    /// <summary>embed_vision.embedding_projection [text hidden, hidden].</summary>
    public DenseWeight Projection { get; }

    /// <summary>The tower of <paramref name="checkpoint"/>; throws when it has no vision_config or a tensor is missing or mis-shaped.</summary>
    public static Gemma4VisionWeights Load(Gemma4Checkpoint checkpoint)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        string configPath = Path.Combine(checkpoint.Directory, Gemma4ModelConfig.FileName);
        var config = checkpoint.Vision
            ?? throw new CheckpointFormatException(configPath, null, "has no vision_config: this checkpoint has no vision tower");
        if (config.UseClippedLinears)
            throw new CheckpointFormatException(configPath, null, "vision_config.use_clipped_linears = true is not supported (Gemma-4-31B uses false)");
        if (config.HiddenActivation is not ("gelu_pytorch_tanh" or "gelu_tanh"))
            throw new CheckpointFormatException(configPath, null,
                $"vision_config.hidden_activation = '{config.HiddenActivation}' is not supported (gelu_pytorch_tanh)");
        if (config.HeadDim % 4 != 0)
            throw new CheckpointFormatException(configPath, null,
                $"vision_config.head_dim = {config.HeadDim} must be a multiple of 4 (two rotary halves of even size)");
        return new Gemma4VisionWeights(checkpoint, config);
    }

    private TensorInfo Require(string name)
    {
        foreach (string prefix in Prefixes)
        {
            if (_checkpoint.TryGetTensor(prefix + name, out var info))
                return info;
        }
        throw new CheckpointFormatException(_checkpoint.Tensors.SourcePath, name,
            "tensor is missing from the checkpoint (looked for " + string.Join(", ", Prefixes.Select(p => p + name)) + ")");
    }

    private DenseWeight Matrix(string name, int rows, int cols)
    {
        var tensor = Require(name);
        var type = FloatType(tensor);
        if (tensor.Shape.Length != 2 || tensor.Shape[0] != rows || tensor.Shape[1] != cols)
            throw Mismatch(tensor, $"shape {tensor.ShapeText} but vision_config implies [{rows}, {cols}]");
        return new DenseWeight(tensor.Data, rows, cols, type);
    }

    private DenseWeight Vector(string name, int length)
    {
        var tensor = Require(name);
        var type = FloatType(tensor);
        if (tensor.Shape.Length != 1 || tensor.Shape[0] != length)
            throw Mismatch(tensor, $"shape {tensor.ShapeText} but vision_config implies [{length}]");
        return new DenseWeight(tensor.Data, 1, length, type);
    }

    private static ScalarType FloatType(TensorInfo tensor) =>
        TensorDTypes.ToScalarType(tensor.DType)
        ?? throw Mismatch(tensor, $"dtype {tensor.DType} but the vision tower needs dense F32, F16 or BF16 (quantized vision weights are not supported)");

    private static CheckpointFormatException Mismatch(TensorInfo tensor, string detail) => new(tensor.FilePath, tensor.Name, detail);
}
