using Pipeline.Kernels.Quantization;

namespace Pipeline.Convert;

/// <summary>Bits and group size of one quantized module.</summary>
public readonly record struct QuantSpec(int Bits, int GroupSize);

/// <summary>
/// Which modules get how many bits. <c>unsloth</c> is the table the seed UD-Q2_K_XL checkpoint was made
/// with (base bits d): embed_tokens and q/k/v at d+2, gate/up at d, down at d+1, o_proj kept in the
/// source dtype because its input does not come from a norm (AWQ cannot correct it).
/// <c>uniform</c> puts every linear and the embedding at d.
/// </summary>
public sealed class QuantRecipe
{
    public static readonly IReadOnlyList<string> Names = ["unsloth", "uniform"];

    public string Name { get; }
    public int BaseBits { get; }
    public int GroupSize { get; }

    private QuantRecipe(string name, int baseBits, int groupSize)
    {
        Name = name;
        BaseBits = baseBits;
        GroupSize = groupSize;
    }

    public static QuantRecipe Create(string name, int baseBits, int groupSize)
    {
        if (!Names.Contains(name))
            throw new ConvertException(
                $"unknown quantization recipe '{name}' (known: {string.Join(", ", Names)})");
        if (baseBits < 2 || baseBits > 8)
            throw new ConvertException($"--q-bits {baseBits} is outside 2..8");
        if (!MlxQuantFormat.IsSupportedGroupSize(groupSize))
            throw new ConvertException(
                $"--q-group-size {groupSize} is not supported (use {string.Join(", ", MlxQuantFormat.SupportedGroupSizes)})");
        return new QuantRecipe(name, baseBits, groupSize);
    }

    /// <summary>The nearest width MLX can pack: &lt;=2 -> 2, 3..6 as is, 7 and above -> 8.</summary>
    public static int SnapBits(int bits) => bits switch
    {
        <= 2 => 2,
        >= 7 => 8,
        _ => bits,
    };

    /// <summary>The top-level bits written to config.json (the base width, snapped).</summary>
    public int DefaultBits => SnapBits(BaseBits);

    /// <summary>Bits for a module of this role, or null when the recipe keeps it unquantized.</summary>
    public int? BitsFor(ModuleRole role)
    {
        int d = BaseBits;
        int? raw = Name switch
        {
            "unsloth" => role switch
            {
                ModuleRole.Embedding or ModuleRole.LmHead => d + 2,
                ModuleRole.QProj or ModuleRole.KProj or ModuleRole.VProj => d + 2,
                ModuleRole.GateProj or ModuleRole.UpProj => d,
                ModuleRole.DownProj => d + 1,
                _ => null,
            },
            _ => role switch
            {
                ModuleRole.Embedding or ModuleRole.LmHead or ModuleRole.QProj or ModuleRole.KProj
                    or ModuleRole.VProj or ModuleRole.OProj or ModuleRole.GateProj or ModuleRole.UpProj
                    or ModuleRole.DownProj => d,
                _ => null,
            },
        };
        return raw is int bits ? SnapBits(bits) : null;
    }
}
