using System.Globalization;
using System.Text.RegularExpressions;

namespace Pipeline.Convert;

/// <summary>llama.cpp's names for Gemma-4 decoder linears (<c>blk.N.attn_q.weight</c>, ...) and the MLX modules they are.</summary>
public static partial class ImatrixNames
{
    private static readonly (string Llama, ModuleRole Role)[] Table =
    [
        ("attn_q", ModuleRole.QProj),
        ("attn_k", ModuleRole.KProj),
        ("attn_v", ModuleRole.VProj),
        ("attn_output", ModuleRole.OProj),
        ("ffn_gate", ModuleRole.GateProj),
        ("ffn_up", ModuleRole.UpProj),
        ("ffn_down", ModuleRole.DownProj),
    ];

    [GeneratedRegex(@"^blk\.(\d+)\.([a-z_]+)\.weight$", RegexOptions.CultureInvariant)]
    private static partial Regex LayerWeight();

    /// <summary>The MLX module of a llama.cpp weight name, or null for names that are not decoder linears.</summary>
    public static (int Layer, ModuleRole Role, string Module)? ToModule(string llamaName)
    {
        var match = LayerWeight().Match(llamaName);
        if (!match.Success || !int.TryParse(match.Groups[1].ValueSpan, NumberStyles.None, CultureInfo.InvariantCulture, out int layer))
            return null;
        foreach (var (llama, role) in Table)
        {
            if (match.Groups[2].Value == llama)
                return (layer, role, TensorNaming.LayerModule(layer, TensorNaming.Submodule(role)));
        }
        return null;
    }

    /// <summary>The llama.cpp weight name of a decoder linear.</summary>
    public static string ToLlamaName(int layer, ModuleRole role)
    {
        foreach (var (llama, candidate) in Table)
        {
            if (candidate == role)
                return string.Create(CultureInfo.InvariantCulture, $"blk.{layer}.{llama}.weight");
        }
        throw new ArgumentOutOfRangeException(nameof(role), role, "not a decoder linear");
    }

    /// <summary>
    /// Importance (mean squared input activation) per MLX module, checked against the checkpoint: every
    /// decoder-linear entry must name a matrix of the plan and hold one value per input channel.
    /// Entries for other tensors (e.g. <c>output.weight</c>) are ignored.
    /// </summary>
    public static Dictionary<string, float[]> Importances(ImatrixFile imatrix, ConversionPlan plan, string imatrixPath)
    {
        var matrices = plan.Tensors
            .Where(t => t.Target.Parameter == "weight" && t.Shape.Length == 2)
            .ToDictionary(t => t.Target.Module, StringComparer.Ordinal);
        var importances = new Dictionary<string, float[]>(StringComparer.Ordinal);
        foreach (var entry in imatrix.Entries.Values)
        {
            if (ToModule(entry.Name) is not var (_, _, module))
                continue;
            if (!matrices.TryGetValue(module, out var tensor))
                throw new ConvertException(
                    $"{imatrixPath}: imatrix entry '{entry.Name}' names {module}, which the checkpoint does not have (imatrix made for another model?)");
            if (tensor.Shape[1] != entry.SumOfSquares.Length)
                throw new ConvertException(
                    $"{imatrixPath}: imatrix entry '{entry.Name}' has {entry.SumOfSquares.Length} values but {module} takes {tensor.Shape[1]} inputs (shape {ConversionPlan.Describe(tensor.Shape)})");
            importances.Add(module, entry.Importance());
        }
        return importances;
    }
}
