namespace Pipeline.Actors.Client;

/// <summary>Images from files, for <see cref="SendOptions.Images"/>.</summary>
public static class ImageFiles
{
    /// <summary>The file's bytes with a media type from its extension (png, jpeg, gif, webp, bmp).</summary>
    public static ImagePart Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string mediaType = Path.GetExtension(path).ToLowerInvariant() switch
        {
            ".png" => "image/png",
            ".jpg" or ".jpeg" => "image/jpeg",
            ".gif" => "image/gif",
            ".webp" => "image/webp",
            ".bmp" => "image/bmp",
            var other => throw new ArgumentException(
                $"image file '{path}' has extension '{other}'; expected .png, .jpg, .jpeg, .gif, .webp or .bmp", nameof(path)),
        };
        if (!File.Exists(path))
            throw new FileNotFoundException($"image file '{path}' does not exist", path);
        return new ImagePart(mediaType, File.ReadAllBytes(path), null);
    }
}
