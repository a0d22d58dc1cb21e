using System.Globalization;

namespace Pipeline.Model.Sampling;

/// <summary>
/// How a <see cref="Sampler"/> picks the next token. The defaults are greedy (temperature 0) with every
/// truncation and cut-off off. Stages run in llama.cpp's and mlx-lm's order: top-k, top-p, min-p on the
/// untempered distribution, then temperature on what is left, then one seeded draw, renormalized.
/// (Hugging Face transformers applies temperature first; with top-p or min-p that keeps a different set.)
/// </summary>
public sealed record SamplingOptions
{
    /// <summary>0 = greedy: the highest logit, ties to the lowest id. Otherwise the kept tokens' logits are divided by it.</summary>
    public float Temperature { get; init; }

    /// <summary>Keep the K highest logits (ties to the lowest id). 0 = off; K ≥ vocab size is also off.</summary>
    public int TopK { get; init; }

    /// <summary>Nucleus: keep the smallest highest-ranked set whose untempered probability mass is ≥ TopP (always ≥ 1 token). 1 = off.</summary>
    public float TopP { get; init; } = 1f;

    /// <summary>Keep tokens whose probability is ≥ MinP × the top token's probability (untempered). 0 = off.</summary>
    public float MinP { get; init; }

    /// <summary>Same seed, same options and same logits give the same tokens. Null = a random seed.</summary>
    public ulong? Seed { get; init; }

    /// <summary>Cut-off: generation ends when this many identical tokens arrive in a row (≥ 2). 0 = off.</summary>
    public int MaxConsecutiveRepeats { get; init; }

    /// <summary>
    /// Longest loop the n-gram cut-off looks for. With <see cref="NgramRepeatLimit"/> = L, generation ends
    /// when, for some block length p in 1..NgramSize, the newest p·(L+1) tokens are one p-token block
    /// occurring L+1 times back to back (the block repeated more than L times in a row).
    /// Set both or neither; 0 = off.
    /// </summary>
    public int NgramSize { get; init; }

    /// <summary>Upper bound on <see cref="NgramSize"/>: the cut-off does O(NgramSize) work per token.</summary>
    public const int MaxNgramSize = 4096;

    /// <summary>How many back-to-back occurrences of a block the n-gram cut-off tolerates. 0 = off.</summary>
    public int NgramRepeatLimit { get; init; }

    /// <summary>Greedy decoding with no cut-offs.</summary>
    public static SamplingOptions Greedy { get; } = new();

    /// <summary>
    /// Options from generation_config.json values (temperature, top_k, top_p, min_p). A missing value means
    /// that stage is neutral: temperature 1, top-k off, top-p 1, min-p 0. top_k 0 means off, as in
    /// transformers. Seed and cut-offs are left off; set them with <c>with { ... }</c>.
    /// </summary>
    public static SamplingOptions FromGenerationDefaults(float? temperature, int? topK, float? topP, float? minP)
    {
        var options = new SamplingOptions
        {
            Temperature = temperature ?? 1f,
            TopK = topK ?? 0,
            TopP = topP ?? 1f,
            MinP = minP ?? 0f,
        };
        options.Validate();
        return options;
    }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first field that is out of range.</summary>
    public void Validate()
    {
        if (!float.IsFinite(Temperature) || Temperature < 0)
            throw Invalid(nameof(Temperature), "temperature", Temperature, "must be finite and >= 0 (0 = greedy)");
        if (TopK < 0)
            throw Invalid(nameof(TopK), "top_k", TopK, "must be >= 0 (0 = off)");
        if (!(TopP > 0 && TopP <= 1))
            throw Invalid(nameof(TopP), "top_p", TopP, "must be in (0, 1] (1 = off)");
        if (!(MinP >= 0 && MinP < 1))
            throw Invalid(nameof(MinP), "min_p", MinP, "must be in [0, 1) (0 = off)");
        if (MaxConsecutiveRepeats < 0 || MaxConsecutiveRepeats == 1)
            throw Invalid(nameof(MaxConsecutiveRepeats), null, MaxConsecutiveRepeats, "must be 0 (off) or >= 2");
        if (NgramSize < 0 || NgramSize > MaxNgramSize)
            throw Invalid(nameof(NgramSize), null, NgramSize, $"must be in [0, {MaxNgramSize}] (0 = off)");
        if (NgramRepeatLimit < 0)
            throw Invalid(nameof(NgramRepeatLimit), null, NgramRepeatLimit, "must be >= 0 (0 = off)");
        if ((NgramSize == 0) != (NgramRepeatLimit == 0))
            throw new ArgumentException(
                $"Sampling options NgramSize ({NgramSize}) and NgramRepeatLimit ({NgramRepeatLimit}) must be set together or both be 0.");
    }

    private static ArgumentException Invalid(string field, string? configKey, object value, string rule)
    {
        string name = configKey is null ? field : $"{field} ({configKey})";
        string shown = Convert.ToString(value, CultureInfo.InvariantCulture) ?? "null";
        return new ArgumentException($"Sampling option {name} {rule}; got {shown}.", field);
    }
}
