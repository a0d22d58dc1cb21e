namespace Pipeline.Model.Vision;

/// <summary>
/// An 8-bit RGB image: <see cref="Pixels"/> is row-major, 3 bytes per pixel (R, G, B), no padding.
/// What decoders produce and the Gemma-4 image processor consumes.
/// </summary>
public sealed class RgbImage
{
    public RgbImage(int width, int height, byte[] pixels)
    {
        ArgumentNullException.ThrowIfNull(pixels);
        if (width <= 0 || height <= 0)
            throw new ArgumentOutOfRangeException(nameof(width), $"image size {width}x{height} must be positive");
        if (pixels.LongLength != 3L * width * height)
            throw new ArgumentException($"a {width}x{height} RGB image has {3L * width * height} bytes, found {pixels.LongLength}", nameof(pixels));
        Width = width;
        Height = height;
        Pixels = pixels;
    }

    public int Width { get; }
    public int Height { get; }

    /// <summary>[Height, Width, 3] bytes.</summary>
    public byte[] Pixels { get; }

    /// <summary>Channel <paramref name="channel"/> (0 = R, 1 = G, 2 = B) at column x, row y.</summary>
    public byte this[int x, int y, int channel] => Pixels[((long)y * Width + x) * 3 + channel];
}
