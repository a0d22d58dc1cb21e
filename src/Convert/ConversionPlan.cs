using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Pipeline.Kernels;
using Pipeline.Kernels.Quantization;

namespace Pipeline.Convert;

/// <summary>One tensor of the input checkpoint as its header describes it.</summary>
public sealed record SourceTensor(string Name, string DType, long[] Shape);

/// <summary>One tensor of the output checkpoint: safetensors dtype, shape and byte size.</summary>
public sealed record OutputTensor(string Name, string DType, long[] Shape)
{
    public long Bytes => Shape.Aggregate(1L, (n, d) => n * d) * (DType is "F32" or "U32" ? 4 : 2);
}

/// <summary>What happens to one input tensor: its MLX name, and its quantization (null = kept dense).</summary>
public sealed class PlannedTensor
{
    public required string SourceName { get; init; }
    public required TensorName Target { get; init; }
    public required ScalarType SourceType { get; init; }
    /// <summary>[rows, cols] for matrices; any rank for kept tensors.</summary>
    public required long[] Shape { get; init; }
    public QuantSpec? Quant { get; init; }
    /// <summary>Dtype of a dense output, and of the scales and biases of a quantized one.</summary>
    public required ScalarType OutputType { get; init; }
    public required IReadOnlyList<OutputTensor> Outputs { get; init; }

    public long SourceBytes => Shape.Aggregate(1L, (n, d) => n * d) * Scalars.SizeOf(SourceType);
    public long OutputBytes => Outputs.Sum(o => o.Bytes);
    public int Rows => checked((int)Shape[0]);
    public int Cols => checked((int)Shape[1]);
}

/// <summary>
/// The per-tensor plan of a conversion: names mapped to MLX layout, bits per module from the recipe,
/// output tensors sorted by name, and the config.json quantization block. Built from tensor headers
/// only, so it is also the <c>--dry-run</c> report.
/// </summary>
public sealed class ConversionPlan
{
    public IReadOnlyList<PlannedTensor> Tensors { get; }
    /// <summary>Every output tensor, sorted by name (ordinal), the order they are written in.</summary>
    public IReadOnlyList<OutputTensor> Outputs { get; }
    public QuantRecipe? Recipe { get; }

    public long TotalSourceBytes => Tensors.Sum(t => t.SourceBytes);
    public long TotalOutputBytes => Outputs.Sum(o => o.Bytes);

    private ConversionPlan(IReadOnlyList<PlannedTensor> tensors, QuantRecipe? recipe)
    {
        Tensors = tensors;
        Recipe = recipe;
        Outputs = [.. tensors.SelectMany(t => t.Outputs).OrderBy(o => o.Name, StringComparer.Ordinal)];
    }

    /// <summary>
    /// Plans the conversion of <paramref name="sources"/>: with <paramref name="recipe"/> null nothing is
    /// quantized. Float outputs (dense tensors, scales, biases) keep the source dtype unless
    /// <paramref name="outputType"/> says otherwise (F32 output makes AWQ folding checkable exactly).
    /// </summary>
    public static ConversionPlan Build(IEnumerable<SourceTensor> sources, QuantRecipe? recipe, ScalarType? outputType = null)
    {
        var planned = new List<PlannedTensor>();
        var seen = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var source in sources)
        {
            var type = ParseSourceType(source);
            string mlxName = TensorNaming.ToMlxName(source.Name);
            if (!seen.TryAdd(mlxName, source.Name))
                throw new ConvertException(
                    $"tensors '{seen[mlxName]}' and '{source.Name}' both map to '{mlxName}'");
            var target = TensorNaming.Parse(mlxName);
            var quant = recipe is null ? null : QuantFor(target, source.Shape, recipe);
            var denseType = outputType ?? type;
            planned.Add(new PlannedTensor
            {
                SourceName = source.Name,
                Target = target,
                SourceType = type,
                Shape = source.Shape,
                Quant = quant,
                OutputType = denseType,
                Outputs = OutputsFor(target, source.Shape, denseType, quant),
            });
        }
        if (planned.Count == 0)
            throw new ConvertException("the input checkpoint has no tensors");
        planned.Sort((a, b) => string.CompareOrdinal(a.Target.Full, b.Target.Full));
        return new ConversionPlan(planned, recipe);
    }

    private static ScalarType ParseSourceType(SourceTensor source) => source.DType switch
    {
        "BF16" => ScalarType.BF16,
        "F16" => ScalarType.F16,
        "F32" => ScalarType.F32,
        _ => throw new ConvertException(
            $"tensor '{source.Name}' has dtype {source.DType}; the converter reads BF16, F16 or F32 only"),
    };

    private static QuantSpec? QuantFor(TensorName target, long[] shape, QuantRecipe recipe)
    {
        if (target.Parameter != "weight" || shape.Length != 2)
            return null;
        if (recipe.BitsFor(target.Role) is not int bits)
            return null;
        // Like mlx_lm, a matrix whose rows do not split into whole groups stays dense.
        if (shape[1] > int.MaxValue || !MlxQuantFormat.RowFits((int)shape[1], bits, recipe.GroupSize))
            return null;
        return new QuantSpec(bits, recipe.GroupSize);
    }

    private static IReadOnlyList<OutputTensor> OutputsFor(
        TensorName target, long[] shape, ScalarType outputType, QuantSpec? quant)
    {
        if (quant is not QuantSpec q)
            return [new OutputTensor(target.Full, DTypeName(outputType), shape)];
        long rows = shape[0], cols = shape[1];
        string scaleType = DTypeName(outputType);
        return
        [
            new OutputTensor(target.Module + ".biases", scaleType, [rows, cols / q.GroupSize]),
            new OutputTensor(target.Module + ".scales", scaleType, [rows, cols / q.GroupSize]),
            new OutputTensor(target.Full, "U32", [rows, cols * q.Bits / 32]),
        ];
    }

    public static string DTypeName(ScalarType type) => type switch
    {
        ScalarType.BF16 => "BF16",
        ScalarType.F16 => "F16",
        _ => "F32",
    };

    /// <summary>
    /// The config.json <c>quantization</c> block: top-level group_size/bits/mode, then one override per
    /// quantized module whose bits or group size differ from the top level, in model order.
    /// </summary>
    public JsonObject? QuantizationConfig()
    {
        if (Recipe is null)
            return null;
        var block = new JsonObject
        {
            ["group_size"] = Recipe.GroupSize,
            ["bits"] = Recipe.DefaultBits,
            ["mode"] = "affine",
        };
        var overrides = Tensors
            .Where(t => t.Quant is QuantSpec q && (q.Bits != Recipe.DefaultBits || q.GroupSize != Recipe.GroupSize))
            .OrderBy(ModelOrder);
        foreach (var t in overrides)
        {
            block[t.Target.Module] = new JsonObject
            {
                ["group_size"] = t.Quant!.Value.GroupSize,
                ["bits"] = t.Quant!.Value.Bits,
                ["mode"] = "affine",
            };
        }
        return block;
    }

    // Embedding, then layers in index order with modules in definition order, then the head and towers.
    private static (int, int, int, string) ModelOrder(PlannedTensor t) => t.Target.Role switch
    {
        ModuleRole.Embedding => (0, 0, 0, ""),
        ModuleRole.Tower => (3, 0, 0, t.Target.Module),
        ModuleRole.LmHead => (2, 0, 0, ""),
        _ when t.Target.Layer is int layer => (1, layer, (int)t.Target.Role, t.Target.Module),
        _ => (1, int.MaxValue, 0, t.Target.Module),
    };

    /// <summary>Writes the <c>--dry-run</c> table: one line per input tensor and the totals.</summary>
    public void WriteTable(TextWriter writer)
    {
        int nameWidth = Math.Max(4, Tensors.Max(t => t.Target.Full.Length));
        var inv = CultureInfo.InvariantCulture;
        writer.WriteLine(string.Format(inv, "{0} {1,-16} {2,5} {3,5} {4,14}",
            "name".PadRight(nameWidth), "shape", "bits", "group", "bytes"));
        foreach (var t in Tensors)
        {
            string shape = string.Join('x', t.Shape.Select(d => d.ToString(inv)));
            string bits = t.Quant is QuantSpec q ? q.Bits.ToString(inv) : DTypeName(t.OutputType).ToLowerInvariant();
            string group = t.Quant is QuantSpec g ? g.GroupSize.ToString(inv) : "-";
            writer.WriteLine(string.Format(inv, "{0} {1,-16} {2,5} {3,5} {4,14}",
                t.Target.Full.PadRight(nameWidth), shape, bits, group, t.OutputBytes));
        }
        writer.WriteLine(string.Format(inv, "total: {0} tensors, {1} bytes ({2}) from {3} input bytes ({4})",
            Tensors.Count, TotalOutputBytes, FormatSize(TotalOutputBytes), TotalSourceBytes, FormatSize(TotalSourceBytes)));
    }

    public static string FormatSize(double bytes)
    {
        string[] units = ["B", "KB", "MB", "GB", "TB"];
        int unit = 0;
        while (bytes >= 1000 && unit < units.Length - 1)
        {
            bytes /= 1000;
            unit++;
        }
        return string.Create(CultureInfo.InvariantCulture, $"{bytes:0.##} {units[unit]}");
    }

    /// <summary>
    /// Splits the sorted outputs into shards of at most <paramref name="maxShardBytes"/> (a tensor larger
    /// than that gets a shard of its own), as mlx_lm does.
    /// </summary>
    public IReadOnlyList<IReadOnlyList<OutputTensor>> Shards(long maxShardBytes)
    {
        var shards = new List<IReadOnlyList<OutputTensor>>();
        var current = new List<OutputTensor>();
        long size = 0;
        foreach (var output in Outputs)
        {
            if (current.Count > 0 && size + output.Bytes > maxShardBytes)
            {
                shards.Add(current);
                current = [];
                size = 0;
            }
            current.Add(output);
            size += output.Bytes;
        }
        shards.Add(current);
        return shards;
    }

    public static string ShardFileName(int index, int count) => count == 1
        ? "model.safetensors"
        : string.Create(CultureInfo.InvariantCulture, $"model-{index + 1:D5}-of-{count:D5}.safetensors");

    internal static string Describe(long[] shape) =>
        new StringBuilder("[").AppendJoin(", ", shape).Append(']').ToString();
}
