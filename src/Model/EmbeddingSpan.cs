namespace Pipeline.Model;

/// <summary>
/// Prompt rows whose input embeddings are given rather than looked up: an image's projected soft
/// tokens. The n = Rows.Length / hidden tokens from <see cref="Start"/> on take <see cref="Rows"/>
/// [n, hidden] as they are (not multiplied by the text embedding scale; their token ids are only
/// placeholders), and while prefilled they attend to each other in both directions on sliding-window
/// layers; full-attention layers stay causal inside the span.
/// Start counts from the first id of the call (or of the batch segment) it is given with.
/// <para>
/// As in Hugging Face's Gemma-4 (use_bidirectional_attention = "vision"): its create_causal_mask_mapping
/// ORs the same-image mask into the sliding-window mask only, so full-attention layers are causal; the
/// block is the image's soft tokens only (boi and eoi stay causal). One difference remains: on sliding
/// layers a row of a span longer than the window still cannot see span rows more than a window back
/// (the attention op applies the window before the bidirectional range), where HF's OR lets the whole
/// block see itself. Only an image longer than the window is affected: for Gemma-4-31B (window 1024)
/// the 1120-token budget, which also needs MaxBatchRows above its default.
/// </para>
/// </summary>
public readonly record struct EmbeddingSpan(int Start, ReadOnlyMemory<float> Rows)
{
    /// <summary>Rows covered for a model of <paramref name="hidden"/> dimensions.</summary>
    public int Count(int hidden) => Rows.Length / hidden;

    /// <summary>
    /// Checks that <paramref name="spans"/> are non-empty whole rows of <paramref name="hidden"/> values,
    /// in order, disjoint and inside <paramref name="tokens"/> ids.
    /// </summary>
    public static void Validate(ReadOnlySpan<EmbeddingSpan> spans, int tokens, int hidden, string parameter)
    {
        int end = 0;
        for (int i = 0; i < spans.Length; i++)
        {
            var span = spans[i];
            if (span.Rows.IsEmpty || span.Rows.Length % hidden != 0)
                throw new ArgumentException($"embedding span {i} has {span.Rows.Length} values, not a positive multiple of the hidden size {hidden}", parameter);
            int count = span.Rows.Length / hidden;
            if (span.Start < end || span.Start + (long)count > tokens)
                throw new ArgumentOutOfRangeException(parameter,
                    $"embedding span {i} covers tokens [{span.Start}, {span.Start + (long)count}); spans must be in order, disjoint and inside the {tokens} ids");
            end = span.Start + count;
        }
    }
}
