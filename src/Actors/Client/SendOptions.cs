using Pipeline.Tokenizer.Chat;

namespace Pipeline.Actors.Client;

/// <summary>
/// How one <see cref="ChatSession"/> turn generates. Sampling values left null take the model's
/// generation_config.json defaults; a null <see cref="Seed"/> draws a random one.
/// </summary>
public sealed record SendOptions
{
    public int MaxNewTokens { get; init; } = 2048;
    public double? Temperature { get; init; }
    public double? TopP { get; init; }
    public int? TopK { get; init; }
    public double? MinP { get; init; }
    public ulong? Seed { get; init; }

    /// <summary>None and Low answer directly; Medium and High let Gemma-4 think first (streamed as reasoning).</summary>
    public ReasoningEffort? ReasoningEffort { get; init; }

    /// <summary>Explicit thinking switch, overriding what <see cref="ReasoningEffort"/> implies.</summary>
    public bool? EnableThinking { get; init; }

    /// <summary>Texts that end the answer (not streamed).</summary>
    public IReadOnlyList<string>? Stop { get; init; }

    /// <summary>Images attached to this turn's user message (see <see cref="ImageFiles.Load"/>).</summary>
    public IReadOnlyList<ImagePart>? Images { get; init; }

    /// <summary>Tool declarations: an OpenAI-style JSON array of {type: function, function: {name, description, parameters}}.</summary>
    public string? ToolsJson { get; init; }

    /// <summary>The actor pipeline's options for these values.</summary>
    public GenerationOptions ToGenerationOptions() => new()
    {
        MaxNewTokens = MaxNewTokens,
        Temperature = (float?)Temperature,
        TopP = (float?)TopP,
        TopK = TopK,
        MinP = (float?)MinP,
        Seed = Seed,
        ReasoningEffort = ReasoningEffort?.ToString().ToLowerInvariant(),
        EnableThinking = EnableThinking,
        Stop = Stop,
        ToolsJson = ToolsJson,
    };
}
