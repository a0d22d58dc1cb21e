using Pipeline.Kernels.Quantization;
using Pipeline.Model.Checkpoint;

namespace Pipeline.Model.TestModels;

/// <summary>
/// One generated weight. <see cref="Path"/> is its name without the layout prefix
/// ("layers.3.mlp.down_proj.weight", "layers.3.layer_scalar", "vision_tower.std_bias"); it also seeds
/// the values, so both layouts hold the same numbers. Bits 0 = stored bf16, otherwise MLX affine with
/// <see cref="TestModelPlan.GroupSize"/>. Rows are all dimensions but the last.
/// </summary>
public sealed record PlannedWeight(string Path, WeightInit Init, long[] Shape, int Bits)
{
    public int Rows => (int)Shape[..^1].Aggregate(1L, (a, b) => a * b);
    public int Cols => (int)Shape[^1];
    public bool IsQuantized => Bits != 0;

    /// <summary>Vision tower and projector weights live beside the text model, not under its prefix.</summary>
    public bool IsVision => TestModelPlan.IsVisionPath(Path);

    /// <summary>Module path of a quantized linear weight ("layers.3.mlp.down_proj").</summary>
    public string Module => Path.EndsWith(".weight", StringComparison.Ordinal) ? Path[..^".weight".Length] : Path;
}

/// <summary>One safetensors file of the plan and the weights whose tensors it holds, in header order.</summary>
public sealed record PlannedShard(string FileName, IReadOnlyList<TensorSpec> Tensors, IReadOnlyList<PlannedWeight> Weights)
{
    public long ByteLength => Tensors.Sum(t => t.ByteLength);
}

/// <summary>
/// Every tensor of a generated Gemma-4 checkpoint: names, dtypes, shapes and files, without any data.
/// Quantized modules store weight (U32), then scales and biases (BF16), which lets the generator
/// stream the packed words and keep only the small scales and biases in memory.
/// </summary>
public sealed class TestModelPlan
{
    public const int GroupSize = 64;

    /// <summary>Weights go to shards of at most this size (MLX's default of 5 GiB); one shard is named model.safetensors.</summary>
    public const long MaxShardBytes = 5L << 30;

    private TestModelPlan(TestModelPreset preset, TestModelQuant quant, IReadOnlyList<PlannedWeight> weights, IReadOnlyList<PlannedShard> shards)
    {
        Preset = preset;
        Quant = quant;
        Weights = weights;
        Shards = shards;
    }

    public TestModelPreset Preset { get; }
    public TestModelQuant Quant { get; }
    public IReadOnlyList<PlannedWeight> Weights { get; }
    public IReadOnlyList<PlannedShard> Shards { get; }

    /// <summary>"language_model.model." (MLX) or "model.language_model." (Hugging Face).</summary>
    public string TensorPrefix => Quant == TestModelQuant.Bf16 ? "model.language_model." : "language_model.model.";

    /// <summary>"" (MLX) or "model." (Hugging Face) before vision_tower.* and embed_vision.*.</summary>
    public string VisionPrefix => Quant == TestModelQuant.Bf16 ? "model." : "";

    public IEnumerable<TensorSpec> Tensors => Shards.SelectMany(s => s.Tensors);

    /// <summary>Bytes of all tensor data (what the safetensors files hold besides their headers).</summary>
    public long TotalBytes => Shards.Sum(s => s.ByteLength);

    /// <summary>
    /// The dry-run listing: per file, one line per tensor (name, dtype, shape, bytes), then the total
    /// in bytes and in GB (10^9 bytes) and GiB.
    /// </summary>
    public IEnumerable<string> Describe()
    {
        yield return $"{Preset.Name} {TestModelQuants.Name(Quant)}: {Preset.NumLayers} layers, hidden {Preset.HiddenSize}, vocab {Preset.VocabSize}";
        foreach (var shard in Shards)
        {
            yield return $"{shard.FileName} ({shard.Tensors.Count} tensors, {shard.ByteLength} bytes)";
            foreach (var t in shard.Tensors)
                yield return $"  {t.Name} {TensorDTypes.HeaderName(t.DType)} {TensorInfo.FormatShape(t.Shape)} {t.ByteLength}";
        }
        yield return string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"total: {Tensors.Count()} tensors, {TotalBytes} bytes ({TotalBytes / 1e9:F2} GB, {TotalBytes / (double)(1L << 30):F2} GiB) in {Shards.Count} file(s)");
    }

    /// <summary>Plans <paramref name="preset"/>; <paramref name="maxShardBytes"/> only changes how tensors split into files.</summary>
    public static TestModelPlan Create(TestModelPreset preset, TestModelQuant quant, long maxShardBytes = MaxShardBytes)
    {
        var weights = PlanWeights(preset, quant);
        string prefix = quant == TestModelQuant.Bf16 ? "model.language_model." : "language_model.model.";
        string visionPrefix = quant == TestModelQuant.Bf16 ? "model." : "";
        var groups = weights.Select(w => (Weight: w, Tensors: TensorsOf(w, w.IsVision ? visionPrefix : prefix))).ToList();

        var shardGroups = new List<List<(PlannedWeight Weight, List<TensorSpec> Tensors)>> { new() };
        long shardBytes = 0;
        foreach (var group in groups)
        {
            long bytes = group.Tensors.Sum(t => t.ByteLength);
            if (shardBytes > 0 && shardBytes + bytes > maxShardBytes)
            {
                shardGroups.Add([]);
                shardBytes = 0;
            }
            shardGroups[^1].Add(group);
            shardBytes += bytes;
        }

        var shards = shardGroups.Select((g, i) => new PlannedShard(
            shardGroups.Count == 1 ? SafetensorsSet.SingleFileName : $"model-{i + 1:D5}-of-{shardGroups.Count:D5}.safetensors",
            g.SelectMany(x => x.Tensors).ToList(),
            g.Select(x => x.Weight).ToList())).ToList();
        return new TestModelPlan(preset, quant, weights, shards);
    }

    /// <summary>The UD-Q2_K_XL recipe: embed and q/k/v 4-bit, gate/up 2-bit (the default), down 3-bit; the rest (and the whole vision tower) bf16.</summary>
    public static int RecipeBits(string path)
    {
        if (IsVisionPath(path))
            return 0;
        if (path == "embed_tokens.weight" || path.EndsWith(".q_proj.weight", StringComparison.Ordinal)
            || path.EndsWith(".k_proj.weight", StringComparison.Ordinal) || path.EndsWith(".v_proj.weight", StringComparison.Ordinal))
            return 4;
        if (path.EndsWith(".gate_proj.weight", StringComparison.Ordinal) || path.EndsWith(".up_proj.weight", StringComparison.Ordinal))
            return 2;
        if (path.EndsWith(".down_proj.weight", StringComparison.Ordinal))
            return 3;
        return 0;
    }

    public static bool IsVisionPath(string path) =>
        path.StartsWith("vision_tower.", StringComparison.Ordinal) || path.StartsWith("embed_vision.", StringComparison.Ordinal);

    /// <summary>The recipe's default bits; modules at other widths get a per-module override in config.json.</summary>
    public const int DefaultBits = 2;

    private static List<PlannedWeight> PlanWeights(TestModelPreset p, TestModelQuant quant)
    {
        var weights = new List<PlannedWeight>();
        void Add(string path, WeightInit init, params long[] shape) =>
            weights.Add(new PlannedWeight(path, init, shape, quant == TestModelQuant.Bf16 ? 0 : RecipeBits(path)));

        Add("embed_tokens.weight", WeightInit.Embedding, p.VocabSize, p.HiddenSize);
        for (int i = 0; i < p.NumLayers; i++)
        {
            bool full = p.IsFullAttention(i);
            int headDim = full ? p.GlobalHeadDim : p.HeadDim;
            int kvHeads = full ? p.NumGlobalKvHeads : p.NumKvHeads;
            string layer = $"layers.{i}.";
            Add(layer + "input_layernorm.weight", WeightInit.Norm, p.HiddenSize);
            Add(layer + "layer_scalar", WeightInit.LayerScalar, 1);
            Add(layer + "mlp.down_proj.weight", WeightInit.Projection, p.HiddenSize, p.IntermediateSize);
            Add(layer + "mlp.gate_proj.weight", WeightInit.Projection, p.IntermediateSize, p.HiddenSize);
            Add(layer + "mlp.up_proj.weight", WeightInit.Projection, p.IntermediateSize, p.HiddenSize);
            Add(layer + "post_attention_layernorm.weight", WeightInit.Norm, p.HiddenSize);
            Add(layer + "post_feedforward_layernorm.weight", WeightInit.Norm, p.HiddenSize);
            Add(layer + "pre_feedforward_layernorm.weight", WeightInit.Norm, p.HiddenSize);
            Add(layer + "self_attn.k_norm.weight", WeightInit.QkNorm, headDim);
            Add(layer + "self_attn.k_proj.weight", WeightInit.Projection, (long)kvHeads * headDim, p.HiddenSize);
            Add(layer + "self_attn.o_proj.weight", WeightInit.Projection, p.HiddenSize, (long)p.NumHeads * headDim);
            Add(layer + "self_attn.q_norm.weight", WeightInit.QkNorm, headDim);
            Add(layer + "self_attn.q_proj.weight", WeightInit.Projection, (long)p.NumHeads * headDim, p.HiddenSize);
            if (!full) // full-attention layers share K and V (attention_k_eq_v)
                Add(layer + "self_attn.v_proj.weight", WeightInit.Projection, (long)kvHeads * headDim, p.HiddenSize);
        }
        Add("norm.weight", WeightInit.Norm, p.HiddenSize);
        if (p.Vision is { } v)
            PlanVision(v, p.HiddenSize, Add);
        return weights;
    }

    /// <summary>The vision tower in Hugging Face's names (linears wrapped as "*.linear.weight") and the projector.</summary>
    private static void PlanVision(TestVisionPreset v, int textHidden, Action<string, WeightInit, long[]> add)
    {
        const int patchValues = TestVisionPreset.PatchSize * TestVisionPreset.PatchSize * 3;
        long width = (long)v.NumHeads * v.HeadDim;
        add("vision_tower.patch_embedder.input_proj.weight", WeightInit.Projection, [v.HiddenSize, patchValues]);
        add("vision_tower.patch_embedder.position_embedding_table", WeightInit.Projection, [2, v.PositionEmbeddingSize, v.HiddenSize]);
        for (int i = 0; i < v.NumLayers; i++)
        {
            string layer = $"vision_tower.encoder.layers.{i}.";
            add(layer + "input_layernorm.weight", WeightInit.Norm, [v.HiddenSize]);
            add(layer + "mlp.down_proj.linear.weight", WeightInit.Projection, [v.HiddenSize, v.IntermediateSize]);
            add(layer + "mlp.gate_proj.linear.weight", WeightInit.Projection, [v.IntermediateSize, v.HiddenSize]);
            add(layer + "mlp.up_proj.linear.weight", WeightInit.Projection, [v.IntermediateSize, v.HiddenSize]);
            add(layer + "post_attention_layernorm.weight", WeightInit.Norm, [v.HiddenSize]);
            add(layer + "post_feedforward_layernorm.weight", WeightInit.Norm, [v.HiddenSize]);
            add(layer + "pre_feedforward_layernorm.weight", WeightInit.Norm, [v.HiddenSize]);
            add(layer + "self_attn.k_norm.weight", WeightInit.QkNorm, [v.HeadDim]);
            add(layer + "self_attn.k_proj.linear.weight", WeightInit.Projection, [width, v.HiddenSize]);
            add(layer + "self_attn.o_proj.linear.weight", WeightInit.Projection, [v.HiddenSize, width]);
            add(layer + "self_attn.q_norm.weight", WeightInit.QkNorm, [v.HeadDim]);
            add(layer + "self_attn.q_proj.linear.weight", WeightInit.Projection, [width, v.HiddenSize]);
            add(layer + "self_attn.v_proj.linear.weight", WeightInit.Projection, [width, v.HiddenSize]);
        }
        add("vision_tower.std_bias", WeightInit.Projection, [v.HiddenSize]);
        add("vision_tower.std_scale", WeightInit.Norm, [v.HiddenSize]);
        add("embed_vision.embedding_projection.weight", WeightInit.Projection, [textHidden, v.HiddenSize]);
    }

    private static List<TensorSpec> TensorsOf(PlannedWeight w, string prefix)
    {
        if (!w.IsQuantized)
            return [new TensorSpec(prefix + w.Path, TensorDType.BF16, w.Shape)];
        string module = prefix + w.Module;
        long groups = w.Cols / GroupSize;
        return
        [
            new TensorSpec(module + ".weight", TensorDType.U32, [w.Rows, MlxQuantFormat.WordsPerRow(w.Cols, w.Bits)]),
            new TensorSpec(module + ".scales", TensorDType.BF16, [w.Rows, groups]),
            new TensorSpec(module + ".biases", TensorDType.BF16, [w.Rows, groups]),
        ];
    }
}
