using System.Runtime.InteropServices;
using Pipeline.Model.Vision;
using SkiaSharp;

namespace Pipeline.Imaging;

/// <summary>An image that cannot be decoded: unknown or unsupported format, corrupt or truncated data, too large.</summary>
public sealed class InvalidImageException(string message) : FormatException(message);

/// <summary>
/// Decodes PNG, JPEG, WebP, GIF (first frame) and BMP bytes into 8-bit RGB with SkiaSharp, the way
/// Hugging Face prepares images for Gemma 4 (PIL <c>convert("RGB")</c>):
/// <list type="bullet">
/// <item>alpha is dropped (the stored, un-premultiplied colour is kept, not composited);</item>
/// <item>grayscale is replicated to R = G = B; palette images are expanded;</item>
/// <item>CMYK JPEGs (Adobe, inverted) become R = (255 - C)(255 - K) / 255 and likewise G, B;</item>
/// <item>no colour management (embedded ICC profiles are ignored, as PIL does);</item>
/// <item>the EXIF orientation is applied (as HF's <c>load_image</c> does with <c>exif_transpose</c>).</item>
/// </list>
/// Images above <see cref="MaxPixels"/> are refused before any pixel is decoded.
/// </summary>
public static class ImageDecoder
{
    /// <summary>50 megapixels.</summary>
    public const long MaxPixels = 50_000_000;

    private static readonly SKEncodedImageFormat[] Supported =
        [SKEncodedImageFormat.Png, SKEncodedImageFormat.Jpeg, SKEncodedImageFormat.Webp, SKEncodedImageFormat.Gif, SKEncodedImageFormat.Bmp];

    /// <summary>
    /// Decodes <paramref name="encoded"/>; <paramref name="name"/> (a file name, "image 2", ...) prefixes
    /// error messages. Throws <see cref="InvalidImageException"/> for anything that is not a whole,
    /// supported image of at most <see cref="MaxPixels"/> pixels.
    /// </summary>
    public static RgbImage Decode(byte[] encoded, string name = "image")
    {
        ArgumentNullException.ThrowIfNull(encoded);
        if (encoded.Length == 0)
            throw new InvalidImageException($"{name}: no bytes (an empty image)");
        using var stream = new SKMemoryStream(encoded);
        using var codec = SKCodec.Create(stream, out var created);
        if (codec is null)
            throw new InvalidImageException(
                $"{name}: not a decodable image ({Describe(created)}; {encoded.Length} bytes starting {Magic(encoded)}); supported: PNG, JPEG, WebP, GIF, BMP");
        if (!Supported.Contains(codec.EncodedFormat))
            throw new InvalidImageException($"{name}: {codec.EncodedFormat} images are not supported (supported: PNG, JPEG, WebP, GIF, BMP)");

        int width = codec.Info.Width, height = codec.Info.Height;
        if (width <= 0 || height <= 0)
            throw new InvalidImageException($"{name}: {codec.EncodedFormat} image declares an empty size {width}x{height}");
        if ((long)width * height > MaxPixels)
            throw new InvalidImageException(
                $"{name}: {codec.EncodedFormat} image of {width}x{height} = {(long)width * height:N0} pixels exceeds the limit of {MaxPixels:N0} (50 MP)");

        // RGBA, un-premultiplied, no colour space: Skia converts gray, palette and CMYK to RGB but leaves colours unmanaged.
        var info = new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        var rgba = new byte[(long)width * height * 4];
        var handle = GCHandle.Alloc(rgba, GCHandleType.Pinned);
        SKCodecResult decoded;
        try
        {
            decoded = codec.GetPixels(info, handle.AddrOfPinnedObject());
        }
        finally
        {
            handle.Free();
        }
        if (decoded != SKCodecResult.Success)
            throw new InvalidImageException($"{name}: {codec.EncodedFormat} image of {width}x{height} could not be decoded: {Describe(decoded)}");
        return Orient(rgba, width, height, codec.EncodedOrigin);
    }

    /// <summary>Drops alpha and applies the EXIF orientation: output pixel (x, y) reads source pixel Source(x, y).</summary>
    private static RgbImage Orient(byte[] rgba, int width, int height, SKEncodedOrigin origin)
    {
        bool swaps = origin is SKEncodedOrigin.LeftTop or SKEncodedOrigin.RightTop or SKEncodedOrigin.RightBottom or SKEncodedOrigin.LeftBottom;
        int outWidth = swaps ? height : width, outHeight = swaps ? width : height;
        var rgb = new byte[(long)outWidth * outHeight * 3];
        for (int y = 0; y < outHeight; y++)
        {
            for (int x = 0; x < outWidth; x++)
            {
                var (sx, sy) = origin switch
                {
                    SKEncodedOrigin.TopRight => (width - 1 - x, y),
                    SKEncodedOrigin.BottomRight => (width - 1 - x, height - 1 - y),
                    SKEncodedOrigin.BottomLeft => (x, height - 1 - y),
                    SKEncodedOrigin.LeftTop => (y, x),
                    SKEncodedOrigin.RightTop => (y, height - 1 - x),
                    SKEncodedOrigin.RightBottom => (width - 1 - y, height - 1 - x),
                    SKEncodedOrigin.LeftBottom => (width - 1 - y, x),
                    _ => (x, y),
                };
                long from = ((long)sy * width + sx) * 4, to = ((long)y * outWidth + x) * 3;
                rgb[to] = rgba[from];
                rgb[to + 1] = rgba[from + 1];
                rgb[to + 2] = rgba[from + 2];
            }
        }
        return new RgbImage(outWidth, outHeight, rgb);
    }

    private static string Describe(SKCodecResult result) => result switch
    {
        SKCodecResult.IncompleteInput => "the data is truncated",
        SKCodecResult.ErrorInInput => "the data is corrupt",
        SKCodecResult.InvalidInput => "unrecognised or corrupt data",
        SKCodecResult.Unimplemented => "an unsupported variant of the format",
        _ => result.ToString(),
    };

    private static string Magic(byte[] bytes) =>
        string.Join(" ", bytes.Take(8).Select(b => b.ToString("X2", System.Globalization.CultureInfo.InvariantCulture)));
}
