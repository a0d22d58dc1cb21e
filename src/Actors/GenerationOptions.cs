using MessagePack;

namespace Pipeline.Actors;

/// <summary>
/// How one turn generates. Sampling values left null take the model's generation_config.json
/// defaults; a null <see cref="Seed"/> draws a random one.
/// </summary>
[MessagePackObject]
public sealed record GenerationOptions
{
    [Key(0)] public float? Temperature { get; init; }
    [Key(1)] public int? TopK { get; init; }
    [Key(2)] public float? TopP { get; init; }
    [Key(3)] public float? MinP { get; init; }
    [Key(4)] public ulong? Seed { get; init; }

    /// <summary>Most tokens the turn may generate (the finish reason is Length when it reaches it).</summary>
    [Key(5)] public int MaxNewTokens { get; init; } = 256;

    /// <summary>Texts that end the turn when the visible output contains them (they are not streamed).</summary>
    [Key(6)] public IReadOnlyList<string>? Stop { get; init; }

    /// <summary>Lets the model think first (the template's enable_thinking); null = <see cref="ReasoningEffort"/> decides (off without it).</summary>
    [Key(7)] public bool? EnableThinking { get; init; }

    /// <summary>none, low, medium or high (Gemma 4 thinks at medium and high); null = unset.</summary>
    [Key(8)] public string? ReasoningEffort { get; init; }

    /// <summary>Tool declarations (an OpenAI-style JSON array of {type: function, function: {...}}), or null.</summary>
    [Key(9)] public string? ToolsJson { get; init; }

    /// <summary>Repetition cut-offs (0 = off), see the sampler.</summary>
    [Key(10)] public int MaxConsecutiveRepeats { get; init; }
    [Key(11)] public int NgramSize { get; init; }
    [Key(12)] public int NgramRepeatLimit { get; init; }

    public static GenerationOptions Default { get; } = new();
}
