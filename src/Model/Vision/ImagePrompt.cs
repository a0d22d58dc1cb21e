using Pipeline.Model.Checkpoint;

namespace Pipeline.Model.Vision;

/// <summary>
/// Image tokens in a prompt, as Hugging Face's Gemma4Processor lays them out. The chat template renders
/// each image as one <c>&lt;|image|&gt;</c> (image_token_id, 258880); the processor expands it to
/// <c>&lt;|image&gt;</c> (boi, 255999), n x <c>&lt;|image|&gt;</c> and <c>&lt;image|&gt;</c> (eoi, 258882),
/// where n is the image's soft-token count. The n rows take the projected image embeddings (an
/// <see cref="EmbeddingSpan"/>); boi and eoi are ordinary tokens.
/// </summary>
public static class ImagePrompt
{
    /// <summary>The ids one image takes: boi, <paramref name="softTokens"/> image tokens, eoi.</summary>
    public static int[] ImageTokens(Gemma4VisionConfig vision, int softTokens)
    {
        ArgumentNullException.ThrowIfNull(vision);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(softTokens);
        var ids = new int[softTokens + 2];
        ids[0] = vision.BeginOfImageTokenId;
        ids.AsSpan(1, softTokens).Fill(vision.ImageTokenId);
        ids[^1] = vision.EndOfImageTokenId;
        return ids;
    }

    /// <summary>
    /// Expands the k-th image placeholder of <paramref name="ids"/> for <paramref name="images"/>[k]
    /// (embeddings [n_k, hidden] from the vision encoder) and returns the expanded ids with one span per
    /// image, starts counted from the first expanded id. The number of placeholders must equal the
    /// number of images.
    /// </summary>
    public static (int[] Ids, EmbeddingSpan[] Spans) Expand(
        ReadOnlySpan<int> ids, IReadOnlyList<ReadOnlyMemory<float>> images, Gemma4VisionConfig vision, int hidden)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(vision);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(hidden);
        int placeholders = ids.Count(vision.ImageTokenId);
        if (placeholders != images.Count)
            throw new ArgumentException(
                $"the prompt has {placeholders} image placeholders (token {vision.ImageTokenId}) but {images.Count} images were given", nameof(images));
        int total = ids.Length;
        for (int k = 0; k < images.Count; k++)
        {
            if (images[k].IsEmpty || images[k].Length % hidden != 0)
                throw new ArgumentException($"image {k} has {images[k].Length} values, not a positive multiple of the hidden size {hidden}", nameof(images));
            total += images[k].Length / hidden + 1;
        }

        var expanded = new int[total];
        var spans = new EmbeddingSpan[images.Count];
        int at = 0, image = 0;
        foreach (int id in ids)
        {
            if (id != vision.ImageTokenId)
            {
                expanded[at++] = id;
                continue;
            }
            int n = images[image].Length / hidden;
            ImageTokens(vision, n).CopyTo(expanded, at);
            spans[image] = new EmbeddingSpan(at + 1, images[image]);
            at += n + 2;
            image++;
        }
        return (expanded, spans);
    }
}
