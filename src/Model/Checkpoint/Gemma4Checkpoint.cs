using Pipeline.Kernels;
using Pipeline.Kernels.Quantization;

namespace Pipeline.Model.Checkpoint;

/// <summary>
/// A Gemma-4 checkpoint folder opened for inference: config, generation config and every text-decoder
/// weight, memory-mapped and shape-checked on open. Accepts the MLX naming
/// (<c>language_model.model.*</c>), Hugging Face's (<c>model.language_model.*</c>) and bare
/// <c>model.*</c> (text-only). All weight pointers stay valid until <see cref="Dispose"/>.
/// </summary>
public sealed class Gemma4Checkpoint : IDisposable
{
    private static readonly (string Prefix, string LmHead)[] Namings =
    [
        ("language_model.model.", "language_model.lm_head"),
        ("model.language_model.", "lm_head"),
        ("model.", "lm_head"),
    ];

    private readonly SafetensorsSet _tensors;
    private readonly Gemma4LayerWeights[] _layers;

    private Gemma4Checkpoint(string directory, Gemma4ModelConfig config, GenerationConfig generation, SafetensorsSet tensors, string prefix)
    {
        Directory = directory;
        Config = config;
        Generation = generation;
        _tensors = tensors;
        TextPrefix = prefix;

        string lmHeadModule = Namings.First(n => n.Prefix == prefix).LmHead;
        var text = config.Text;
        Embedding = LoadLinear(prefix + "embed_tokens", text.VocabSize, text.HiddenSize);
        FinalNorm = LoadVector(prefix + "norm.weight", text.HiddenSize);
        LmHead = text.TieWordEmbeddings ? Embedding : LoadLinear(lmHeadModule, text.VocabSize, text.HiddenSize);
        _layers = new Gemma4LayerWeights[text.NumHiddenLayers];
        for (int i = 0; i < _layers.Length; i++)
            _layers[i] = LoadLayer(i);
    }

    public string Directory { get; }
    public Gemma4ModelConfig Config { get; }
    public Gemma4TextConfig Text => Config.Text;
    public Gemma4VisionConfig? Vision => Config.Vision;
    public QuantizationConfig? Quantization => Config.Quantization;
    public GenerationConfig Generation { get; }

    /// <summary>"language_model.model.", "model.language_model." or "model.": how this folder names the decoder.</summary>
    public string TextPrefix { get; }

    /// <summary>embed_tokens [vocab, hidden]: quantized or dense.</summary>
    public LinearWeight Embedding { get; }

    /// <summary>The output projection [vocab, hidden]: the embedding itself when tied.</summary>
    public LinearWeight LmHead { get; }

    /// <summary>norm.weight [1, hidden].</summary>
    public DenseWeight FinalNorm { get; }

    public SafetensorsSet Tensors => _tensors;

    /// <summary>Bytes of all tensors in the folder (what a full pass over the weights touches at most).</summary>
    public long TotalWeightBytes => _tensors.TotalBytes;

    public static Gemma4Checkpoint Open(string directory)
    {
        directory = Path.GetFullPath(directory);
        if (!System.IO.Directory.Exists(directory))
            throw new CheckpointFormatException(directory, null, "checkpoint folder does not exist");
        var config = Gemma4ModelConfig.Load(Path.Combine(directory, Gemma4ModelConfig.FileName));
        var generation = GenerationConfig.Load(directory, config.EosTokenIds, config.BosTokenId);
        var tensors = SafetensorsSet.Open(directory);
        try
        {
            return new Gemma4Checkpoint(directory, config, generation, tensors, DetectPrefix(tensors));
        }
        catch
        {
            tensors.Dispose();
            throw;
        }
    }

    public Gemma4LayerWeights Layer(int index) =>
        (uint)index < (uint)_layers.Length
            ? _layers[index]
            : throw new ArgumentOutOfRangeException(nameof(index), index, $"model has {_layers.Length} layers");

    /// <summary>Raw access by full tensor name (e.g. the vision tower's).</summary>
    public bool TryGetTensor(string fullName, out TensorInfo info) => _tensors.TryGet(fullName, out info);

    public void Dispose() => _tensors.Dispose();

    private static string DetectPrefix(SafetensorsSet tensors)
    {
        foreach (var (prefix, _) in Namings)
        {
            if (tensors.TryGet(prefix + "embed_tokens.weight", out _))
                return prefix;
        }
        throw new CheckpointFormatException(tensors.SourcePath, "embed_tokens.weight",
            "tensor is missing from the checkpoint (looked for " + string.Join(", ", Namings.Select(n => n.Prefix + "embed_tokens.weight")) + ")");
    }

    private Gemma4LayerWeights LoadLayer(int i)
    {
        var text = Text;
        string layer = $"{TextPrefix}layers.{i}.";
        int hidden = text.HiddenSize;
        int headDim = text.HeadDim(i);
        int queryDim = text.QueryDim(i);
        int kvDim = text.KvDim(i);
        var scalar = Require(layer + "layer_scalar");
        if (scalar.ByteLength / TensorDTypes.SizeOf(scalar.DType) != 1)
            throw Mismatch(scalar, $"shape {scalar.ShapeText} but a layer scalar has exactly one element");
        var scalarType = FloatType(scalar);

        return new Gemma4LayerWeights(
            InputNorm: LoadVector(layer + "input_layernorm.weight", hidden),
            QProj: LoadLinear(layer + "self_attn.q_proj", queryDim, hidden),
            KProj: LoadLinear(layer + "self_attn.k_proj", kvDim, hidden),
            VProj: text.HasValueProjection(i) ? LoadLinear(layer + "self_attn.v_proj", kvDim, hidden) : null,
            OProj: LoadLinear(layer + "self_attn.o_proj", hidden, queryDim),
            QNorm: LoadVector(layer + "self_attn.q_norm.weight", headDim),
            KNorm: LoadVector(layer + "self_attn.k_norm.weight", headDim),
            PostAttentionNorm: LoadVector(layer + "post_attention_layernorm.weight", hidden),
            PreFeedforwardNorm: LoadVector(layer + "pre_feedforward_layernorm.weight", hidden),
            PostFeedforwardNorm: LoadVector(layer + "post_feedforward_layernorm.weight", hidden),
            Gate: LoadLinear(layer + "mlp.gate_proj", text.IntermediateSize, hidden),
            Up: LoadLinear(layer + "mlp.up_proj", text.IntermediateSize, hidden),
            Down: LoadLinear(layer + "mlp.down_proj", hidden, text.IntermediateSize),
            LayerScalar: Scalars.Load(scalar.Data, 0, scalarType));
    }

    private TensorInfo Require(string name) => _tensors.Get(name);

    /// <summary>A [length] float vector, as a [1, length] dense weight.</summary>
    private DenseWeight LoadVector(string name, int length)
    {
        var tensor = Require(name);
        var type = FloatType(tensor);
        if (tensor.Shape.Length != 1 || tensor.Shape[0] != length)
            throw Mismatch(tensor, $"shape {tensor.ShapeText} but the config implies [{length}]");
        return new DenseWeight(tensor.Data, 1, length, type);
    }

    /// <summary>
    /// Linear module <paramref name="module"/> computing [rows] from [cols]: MLX affine-quantized
    /// (weight U32 [rows, cols*bits/32], scales and biases [rows, cols/group]) or dense [rows, cols].
    /// </summary>
    private LinearWeight LoadLinear(string module, int rows, int cols)
    {
        var weight = Require(module + ".weight");
        bool hasScales = _tensors.TryGet(module + ".scales", out var scales);
        var quantization = Quantization;
        if (quantization is null)
        {
            if (hasScales)
                throw Mismatch(scales, "a quantized module's scales, but config.json has no \"quantization\" or \"quantization_config\" section");
            return Dense(weight, rows, cols);
        }
        if (quantization.Resolve(module, hasScales) is not { } quant)
        {
            if (hasScales)
                throw Mismatch(scales, $"present, but {quantization.Field} marks module '{module}' as not quantized");
            return Dense(weight, rows, cols);
        }

        int bits = quant.Bits, group = quant.GroupSize;
        string scheme = $"{bits}-bit group-{group} quantization of a [{rows}, {cols}] matrix";
        if (!MlxQuantFormat.RowFits(cols, bits, group))
            throw Mismatch(weight, $"{scheme} is impossible: {cols} input features are not a whole number of groups of {group}");
        if (weight.DType != TensorDType.U32)
            throw Mismatch(weight, $"dtype {weight.DType} but {scheme} stores packed U32 words");
        long[] packedShape = [rows, MlxQuantFormat.WordsPerRow(cols, bits)];
        if (!weight.Shape.SequenceEqual(packedShape))
            throw Mismatch(weight, $"shape {weight.ShapeText} but {scheme} needs {TensorInfo.FormatShape(packedShape)}");

        scales = Require(module + ".scales");
        var biases = Require(module + ".biases");
        long[] groupShape = [rows, cols / group];
        var scaleType = FloatType(scales);
        foreach (var side in new[] { scales, biases })
        {
            if (!side.Shape.SequenceEqual(groupShape))
                throw Mismatch(side, $"shape {side.ShapeText} but {scheme} needs {TensorInfo.FormatShape(groupShape)}");
        }
        if (biases.DType != scales.DType)
            throw Mismatch(biases, $"dtype {biases.DType} differs from the scales' {scales.DType}");
        return new QuantizedWeight(weight.Data, scales.Data, biases.Data, rows, cols, bits, group, scaleType);
    }

    private static DenseWeight Dense(TensorInfo weight, int rows, int cols)
    {
        if (weight.DType == TensorDType.U32)
            throw Mismatch(weight, $"dtype U32 (packed) but no quantization applies: '{weight.Name[..^".weight".Length]}.scales' is missing");
        var type = FloatType(weight);
        if (weight.Shape.Length != 2 || weight.Shape[0] != rows || weight.Shape[1] != cols)
            throw Mismatch(weight, $"shape {weight.ShapeText} but the config implies [{rows}, {cols}]");
        return new DenseWeight(weight.Data, rows, cols, type);
    }

    private static ScalarType FloatType(TensorInfo tensor) =>
        TensorDTypes.ToScalarType(tensor.DType)
        ?? throw Mismatch(tensor, $"dtype {tensor.DType} but a float type (BF16, F16, F32) is required");

    private static CheckpointFormatException Mismatch(TensorInfo tensor, string detail) =>
        new(tensor.FilePath, tensor.Name, detail);
}
