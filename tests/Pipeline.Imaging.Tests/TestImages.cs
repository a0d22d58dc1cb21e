using Pipeline.Model.Vision;
using SkiaSharp;

namespace Pipeline.Imaging.Tests;

/// <summary>Crafted images: encoded with SkiaSharp in the test, or hand-laid bytes; the repository's fixtures folder.</summary>
internal static class TestImages
{
    public static string Fixtures { get; } = Path.Combine(FindRepoRoot(), "tests", "fixtures", "vision");

    /// <summary>The deterministic pattern of tests/fixtures/vision/make_pil_resize.py.</summary>
    public static byte Pattern(int x, int y, int c) => (byte)((x * x * 7 + y * 13 + x * y * 3 + c * 85 + ((x ^ y) & 31) * 5) & 255);

    public static RgbImage PatternImage(int width, int height)
    {
        var pixels = new byte[3L * width * height];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                for (int c = 0; c < 3; c++)
                    pixels[((long)y * width + x) * 3 + c] = Pattern(x, y, c);
        return new RgbImage(width, height, pixels);
    }

    /// <summary>Encodes <paramref name="pixels"/> ([h, w, channels of colorType]) with Skia.</summary>
    public static byte[] Encode(int width, int height, SKColorType colorType, SKAlphaType alphaType, byte[] pixels, SKEncodedImageFormat format, int quality = 100)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(width, height, colorType, alphaType));
        pixels.CopyTo(bitmap.GetPixelSpan());
        using var pixmap = bitmap.PeekPixels();
        using var data = (format == SKEncodedImageFormat.Webp
            ? pixmap.Encode(new SKWebpEncoderOptions(SKWebpEncoderCompression.Lossless, 100))
            : pixmap.Encode(format, quality)) ?? throw new InvalidOperationException($"Skia could not encode {format}");
        return data.ToArray();
    }

    /// <summary>RGBA (alpha 255) pattern pixels for <see cref="Encode"/>.</summary>
    public static byte[] PatternRgba(int width, int height, Func<int, int, byte>? alpha = null)
    {
        var rgba = new byte[4L * width * height];
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++)
            {
                long i = ((long)y * width + x) * 4;
                for (int c = 0; c < 3; c++)
                    rgba[i + c] = Pattern(x, y, c);
                rgba[i + 3] = alpha?.Invoke(x, y) ?? 255;
            }
        }
        return rgba;
    }

    /// <summary>A PNG holding only a valid signature and IHDR chunk declaring <paramref name="width"/>x<paramref name="height"/> RGB.</summary>
    public static byte[] PngHeaderOnly(int width, int height)
    {
        var bytes = new List<byte> { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A };
        var ihdr = new List<byte>();
        ihdr.AddRange(BigEndian(width));
        ihdr.AddRange(BigEndian(height));
        ihdr.AddRange(new byte[] { 8, 2, 0, 0, 0 }); // 8-bit, RGB, deflate, adaptive filter, no interlace
        AddChunk(bytes, "IHDR", [.. ihdr]);
        AddChunk(bytes, "IDAT", [0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
        AddChunk(bytes, "IEND", []);
        return [.. bytes];
    }

    /// <summary>Inserts an EXIF APP1 segment with the given orientation tag right after a JPEG's SOI marker.</summary>
    public static byte[] WithExifOrientation(byte[] jpeg, ushort orientation)
    {
        // "Exif\0\0", little-endian TIFF header, IFD0 with one entry: 0x0112 SHORT x1 = orientation.
        byte[] tiff =
        [
            (byte)'I', (byte)'I', 42, 0, 8, 0, 0, 0,
            1, 0,
            0x12, 0x01, 3, 0, 1, 0, 0, 0, (byte)orientation, (byte)(orientation >> 8), 0, 0,
            0, 0, 0, 0,
        ];
        var payload = new List<byte>("Exif\0\0"u8.ToArray());
        payload.AddRange(tiff);
        int length = payload.Count + 2;
        var result = new List<byte> { jpeg[0], jpeg[1], 0xFF, 0xE1, (byte)(length >> 8), (byte)length };
        result.AddRange(payload);
        result.AddRange(jpeg.Skip(2));
        return [.. result];
    }

    private static void AddChunk(List<byte> bytes, string type, byte[] data)
    {
        bytes.AddRange(BigEndian(data.Length));
        var typed = System.Text.Encoding.ASCII.GetBytes(type).Concat(data).ToArray();
        bytes.AddRange(typed);
        bytes.AddRange(BigEndian((int)Crc32(typed)));
    }

    private static byte[] BigEndian(int value) => [(byte)(value >> 24), (byte)(value >> 16), (byte)(value >> 8), (byte)value];

    private static uint Crc32(byte[] data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++)
                crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320 : crc >> 1;
        }
        return ~crc;
    }

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "pipeline.sln")))
                return dir.FullName;
        }
        throw new InvalidOperationException($"No pipeline.sln above {AppContext.BaseDirectory}");
    }
}
