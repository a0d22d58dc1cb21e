namespace Pipeline.Convert;

/// <summary>
/// How AWQ rescales one tensor before quantization: w[r, c] * ColumnMultipliers[c] / ColumnDivisors[c] / RowDivisors[r].
/// </summary>
public sealed record TensorFold(float[]? ColumnMultipliers, float[]? ColumnDivisors, float[]? RowDivisors);

/// <summary>
/// AWQ pre-scaling from an importance matrix, folded so the float model computes exactly the same function:
/// for a linear fed by a norm, y = (norm(x)/s) (W diag(s))^T, and Gemma-4 norms multiply by w (not 1+w),
/// so dividing the norm weight by s is exact. Per input channel j: s_j = max(imp_j, 1e-8)^0.5, then
/// s /= max(sqrt(max(s) min(s)), 1e-8). Groups per layer:
/// q/k/v columns *= s, input_layernorm /= s (importance: element-wise max over the group);
/// gate/up columns *= s, pre_feedforward_layernorm /= s; down columns *= s, up_proj rows /= s.
/// A group whose importances are not all present is skipped with a warning.
/// </summary>
public sealed class AwqFolding
{
    private readonly Dictionary<string, TensorFold> _folds;

    private AwqFolding(Dictionary<string, TensorFold> folds, int groups)
    {
        _folds = folds;
        FoldedGroups = groups;
    }

    public static AwqFolding None { get; } = new([], 0);

    /// <summary>Number of (layer, group) pairs that were rescaled.</summary>
    public int FoldedGroups { get; }

    /// <summary>The fold of an output tensor (MLX name), or null when it is written unchanged.</summary>
    public TensorFold? For(string targetName) => _folds.GetValueOrDefault(targetName);

    public static float[] ScalesFromImportance(ReadOnlySpan<float> importance)
    {
        var s = new float[importance.Length];
        float max = float.NegativeInfinity, min = float.PositiveInfinity;
        for (int j = 0; j < s.Length; j++)
        {
            s[j] = MathF.Sqrt(MathF.Max(importance[j], 1e-8f));
            max = MathF.Max(max, s[j]);
            min = MathF.Min(min, s[j]);
        }
        float norm = MathF.Max(MathF.Sqrt(max * min), 1e-8f);
        for (int j = 0; j < s.Length; j++)
            s[j] /= norm;
        return s;
    }

    public static AwqFolding Compute(ConversionPlan plan, IReadOnlyDictionary<string, float[]> importances, Action<string> warn)
    {
        var byName = plan.Tensors.ToDictionary(t => t.Target.Full, StringComparer.Ordinal);
        var columnMultipliers = new Dictionary<string, float[]>(StringComparer.Ordinal);
        var columnDivisors = new Dictionary<string, float[]>(StringComparer.Ordinal);
        var rowDivisors = new Dictionary<string, float[]>(StringComparer.Ordinal);
        int groups = 0;

        var layers = plan.Tensors.Where(t => t.Target.Layer is not null).Select(t => t.Target.Layer!.Value).Distinct().Order();
        foreach (int layer in layers)
        {
            PlannedTensor? Matrix(ModuleRole role) =>
                byName.GetValueOrDefault(TensorNaming.LayerModule(layer, TensorNaming.Submodule(role)) + ".weight") is { Shape.Length: 2 } t ? t : null;
            PlannedTensor? Norm(ModuleRole role) =>
                byName.GetValueOrDefault(TensorNaming.LayerModule(layer, TensorNaming.Submodule(role)) + ".weight");

            // Linears sharing one norm's output as their input.
            void NormGroup(string label, ModuleRole normRole, params ModuleRole[] roles)
            {
                var members = roles.Select(Matrix).OfType<PlannedTensor>().ToList();
                if (members.Count == 0)
                    return;
                var missing = members.Where(m => !importances.ContainsKey(m.Target.Module)).Select(m => m.Target.Module).ToList();
                if (missing.Count > 0)
                {
                    warn($"AWQ: layer {layer} {label} skipped: the imatrix has no entry for {string.Join(", ", missing)}");
                    return;
                }
                var norm = Norm(normRole);
                long width = members[0].Shape[1];
                if (norm is null || norm.Shape.Length != 1 || norm.Shape[0] != width || members.Any(m => m.Shape[1] != width))
                {
                    warn($"AWQ: layer {layer} {label} skipped: {TensorNaming.LayerModule(layer, TensorNaming.Submodule(normRole))} is missing or does not match the inputs ({width})");
                    return;
                }
                var importance = new float[width];
                Array.Fill(importance, float.NegativeInfinity);
                foreach (var member in members)
                {
                    var values = importances[member.Target.Module];
                    for (int j = 0; j < importance.Length; j++)
                        importance[j] = MathF.Max(importance[j], values[j]);
                }
                var s = ScalesFromImportance(importance);
                foreach (var member in members)
                    columnMultipliers[member.Target.Full] = s;
                columnDivisors[norm.Target.Full] = s;
                groups++;
            }

            NormGroup("attention input (q/k/v)", ModuleRole.InputNorm, ModuleRole.QProj, ModuleRole.KProj, ModuleRole.VProj);
            NormGroup("feed-forward input (gate/up)", ModuleRole.PreFeedforwardNorm, ModuleRole.GateProj, ModuleRole.UpProj);

            // down_proj's input is gelu(gate) * up, so up_proj's rows carry the inverse scale.
            if (Matrix(ModuleRole.DownProj) is { } down)
            {
                var up = Matrix(ModuleRole.UpProj);
                if (!importances.TryGetValue(down.Target.Module, out var importance))
                    warn($"AWQ: layer {layer} down_proj skipped: the imatrix has no entry for {down.Target.Module}");
                else if (up is null || up.Shape[0] != down.Shape[1])
                    warn($"AWQ: layer {layer} down_proj skipped: up_proj is missing or has {up?.Shape[0]} rows for {down.Shape[1]} inputs");
                else
                {
                    var s = ScalesFromImportance(importance);
                    columnMultipliers[down.Target.Full] = s;
                    rowDivisors[up.Target.Full] = s;
                    groups++;
                }
            }
        }

        var folds = new Dictionary<string, TensorFold>(StringComparer.Ordinal);
        foreach (var name in columnMultipliers.Keys.Concat(columnDivisors.Keys).Concat(rowDivisors.Keys).Distinct())
        {
            folds[name] = new TensorFold(
                columnMultipliers.GetValueOrDefault(name), columnDivisors.GetValueOrDefault(name), rowDivisors.GetValueOrDefault(name));
        }
        return new AwqFolding(folds, groups);
    }

    /// <summary>Applies a fold in place to rows [firstRow, firstRow + rows) of a tensor held as floats.</summary>
    public static void Apply(TensorFold fold, Span<float> values, long firstRow, int cols)
    {
        int rows = values.Length / cols;
        for (int r = 0; r < rows; r++)
        {
            var row = values.Slice(r * cols, cols);
            if (fold.ColumnMultipliers is { } multipliers)
            {
                for (int c = 0; c < cols; c++)
                    row[c] *= multipliers[c];
            }
            if (fold.ColumnDivisors is { } divisors)
            {
                for (int c = 0; c < cols; c++)
                    row[c] /= divisors[c];
            }
            if (fold.RowDivisors is { } rowDivisors)
            {
                float d = rowDivisors[firstRow + r];
                for (int c = 0; c < cols; c++)
                    row[c] /= d;
            }
        }
    }
}
