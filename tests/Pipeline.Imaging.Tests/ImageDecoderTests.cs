using System.Text.Json;
using SkiaSharp;

namespace Pipeline.Imaging.Tests;

public class ImageDecoderTests
{
    [Theory]
    [InlineData(SKEncodedImageFormat.Png)]
    [InlineData(SKEncodedImageFormat.Webp)]
    public void LosslessFormats_DecodeToTheExactPixels(SKEncodedImageFormat format)
    {
        const int W = 37, H = 23;
        var image = ImageDecoder.Decode(TestImages.Encode(W, H, SKColorType.Rgba8888, SKAlphaType.Unpremul, TestImages.PatternRgba(W, H), format));
        Assert.Equal((W, H), (image.Width, image.Height));
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int c = 0; c < 3; c++)
                    Assert.Equal(TestImages.Pattern(x, y, c), image[x, y, c]);
    }

    [Fact]
    public void Jpeg_DecodesCloseToTheEncodedPixels()
    {
        // Flat 16x16 blocks survive JPEG at quality 100 almost exactly away from their edges (chroma is
        // subsampled and upsampled smoothly across block boundaries).
        const int W = 64, H = 32;
        var rgba = new byte[W * H * 4];
        for (int y = 0; y < H; y++)
        {
            for (int x = 0; x < W; x++)
            {
                int block = x / 16 + 4 * (y / 16);
                rgba[(y * W + x) * 4] = (byte)(block * 30);
                rgba[(y * W + x) * 4 + 1] = (byte)(255 - block * 25);
                rgba[(y * W + x) * 4 + 2] = (byte)(block * 13 + 40);
                rgba[(y * W + x) * 4 + 3] = 255;
            }
        }
        var image = ImageDecoder.Decode(TestImages.Encode(W, H, SKColorType.Rgba8888, SKAlphaType.Unpremul, rgba, SKEncodedImageFormat.Jpeg));
        Assert.Equal((W, H), (image.Width, image.Height));
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int c = 0; c < 3; c++)
                    if (x % 16 is >= 4 and < 12 && y % 16 is >= 4 and < 12)
                        Assert.InRange(image[x, y, c] - rgba[(y * W + x) * 4 + c], -3, 3);
    }

    [Fact]
    public void FullyTransparentPng_KeepsItsColour()
    {
        var rgba = new byte[] { 200, 100, 50, 0, 10, 20, 30, 0 };
        var image = ImageDecoder.Decode(TestImages.Encode(2, 1, SKColorType.Rgba8888, SKAlphaType.Unpremul, rgba, SKEncodedImageFormat.Png));
        Assert.Equal([200, 100, 50, 10, 20, 30], image.Pixels);
    }

    [Fact]
    public void Grayscale_IsReplicatedToRgb()
    {
        const int W = 17, H = 5;
        var gray = new byte[W * H];
        for (int i = 0; i < gray.Length; i++)
            gray[i] = (byte)(i * 3);
        var png = TestImages.Encode(W, H, SKColorType.Gray8, SKAlphaType.Opaque, gray, SKEncodedImageFormat.Png);
        Assert.Equal(0, png[25]); // IHDR colour type 0: a true grayscale PNG
        var image = ImageDecoder.Decode(png);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int c = 0; c < 3; c++)
                    Assert.Equal(gray[y * W + x], image[x, y, c]);
    }

    [Theory]
    [InlineData(SKEncodedImageFormat.Png)]
    [InlineData(SKEncodedImageFormat.Webp)]
    public void Alpha_IsDropped_KeepingTheStoredColour(SKEncodedImageFormat format)
    {
        // PIL convert("RGB") drops alpha, keeping the stored colour (alpha from 1: libwebp's lossless
        // encoder may recolour fully transparent pixels, which says nothing about decoding).
        const int W = 16, H = 16;
        var rgba = TestImages.PatternRgba(W, H, (x, y) => (byte)(1 + (x * 16 + y) % 255));
        var encoded = TestImages.Encode(W, H, SKColorType.Rgba8888, SKAlphaType.Unpremul, rgba, format);
        var image = ImageDecoder.Decode(encoded);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int c = 0; c < 3; c++)
                    Assert.Equal(TestImages.Pattern(x, y, c), image[x, y, c]);
    }

    [Fact]
    public void CmykJpeg_ConvertsLikePillow()
    {
        // cmyk.jpg and cmyk.json come from Pillow (tests/fixtures/vision/make_cmyk.py).
        var image = ImageDecoder.Decode(File.ReadAllBytes(Path.Combine(TestImages.Fixtures, "cmyk.jpg")), "cmyk.jpg");
        Assert.Equal((16, 16), (image.Width, image.Height));
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestImages.Fixtures, "cmyk.json")));
        foreach (var block in json.RootElement.GetProperty("blocks").EnumerateArray())
        {
            int x = block.GetProperty("x").GetInt32(), y = block.GetProperty("y").GetInt32();
            var expected = block.GetProperty("pil_rgb").EnumerateArray().Select(v => v.GetInt32()).ToArray();
            var ink = block.GetProperty("ink").EnumerateArray().Select(v => v.GetInt32()).ToArray();
            for (int c = 0; c < 3; c++)
            {
                Assert.InRange(image[x, y, c], expected[c] - 1, expected[c] + 1);
                // The formula: (255 - ink) * (255 - K) / 255.
                Assert.InRange(image[x, y, c], (255 - ink[c]) * (255 - ink[3]) / 255.0 - 1.5, (255 - ink[c]) * (255 - ink[3]) / 255.0 + 1.5);
            }
        }
    }

    [Theory]
    [InlineData(1, 3, 2, 0)]
    [InlineData(2, 3, 2, 1)]
    [InlineData(3, 3, 2, 3)]
    [InlineData(4, 3, 2, 2)]
    [InlineData(5, 2, 3, 0)]
    [InlineData(6, 2, 3, 2)]
    [InlineData(7, 2, 3, 3)]
    [InlineData(8, 2, 3, 1)]
    public void ExifOrientation_IsApplied(ushort orientation, int width, int height, int topLeftQuadrant)
    {
        // A 48x32 JPEG of four flat 24x16 quadrants: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right.
        byte[][] colours = [[250, 10, 10], [10, 250, 10], [10, 10, 250], [250, 250, 10]];
        const int W = 48, H = 32;
        var rgba = new byte[W * H * 4];
        for (int y = 0; y < H; y++)
        {
            for (int x = 0; x < W; x++)
            {
                var colour = colours[(x >= W / 2 ? 1 : 0) + (y >= H / 2 ? 2 : 0)];
                colour.CopyTo(rgba, (y * W + x) * 4);
                rgba[(y * W + x) * 4 + 3] = 255;
            }
        }
        var jpeg = TestImages.WithExifOrientation(TestImages.Encode(W, H, SKColorType.Rgba8888, SKAlphaType.Unpremul, rgba, SKEncodedImageFormat.Jpeg), orientation);
        var image = ImageDecoder.Decode(jpeg);
        Assert.Equal((width * 16, height * 16), (image.Width, image.Height));
        var expected = colours[topLeftQuadrant];
        for (int c = 0; c < 3; c++)
            Assert.InRange(image[2, 2, c], expected[c] - 8, expected[c] + 8);
    }

    [Fact]
    public void Oversized_IsRefusedBeforeDecoding()
    {
        var ex = Assert.Throws<InvalidImageException>(() => ImageDecoder.Decode(TestImages.PngHeaderOnly(10_000, 5_001), "big.png"));
        Assert.Contains("big.png", ex.Message);
        Assert.Contains("10000x5001", ex.Message);
        Assert.Contains("50 MP", ex.Message);
    }

    [Fact]
    public void JustUnderTheLimit_PassesTheSizeCheck()
    {
        // 10000 x 5000 = 50 MP exactly is allowed by the size check; the empty pixel data then fails as truncated.
        var ex = Assert.Throws<InvalidImageException>(() => ImageDecoder.Decode(TestImages.PngHeaderOnly(10_000, 5_000), "edge.png"));
        Assert.DoesNotContain("50 MP", ex.Message);
        Assert.Contains("could not be decoded", ex.Message);
    }

    public static TheoryData<string, byte[], string> CorruptInputs()
    {
        var png = TestImages.Encode(20, 20, SKColorType.Rgba8888, SKAlphaType.Unpremul, TestImages.PatternRgba(20, 20), SKEncodedImageFormat.Png);
        var jpeg = TestImages.Encode(64, 64, SKColorType.Rgba8888, SKAlphaType.Unpremul, TestImages.PatternRgba(64, 64), SKEncodedImageFormat.Jpeg, 90);
        var random = new byte[500];
        new Random(7).NextBytes(random);
        var text = "<html>not an image</html>"u8.ToArray();
        var garbledPng = (byte[])png.Clone();
        for (int i = 60; i < garbledPng.Length - 20; i++)
            garbledPng[i] ^= 0x5A;
        return new TheoryData<string, byte[], string>
        {
            { "empty", [], "no bytes" },
            { "random", random, "not a decodable image" },
            { "text", text, "not a decodable image" },
            { "truncated png", png[..(png.Length / 2)], "could not be decoded" },
            { "truncated jpeg", jpeg[..(jpeg.Length / 3)], "could not be decoded" },
            { "garbled png", garbledPng, "could not be decoded" },
        };
    }

    [Theory]
    [MemberData(nameof(CorruptInputs))]
    public void CorruptInput_IsRejectedClearly(string name, byte[] bytes, string expected)
    {
        var ex = Assert.Throws<InvalidImageException>(() => ImageDecoder.Decode(bytes, name));
        Assert.StartsWith(name + ":", ex.Message);
        Assert.Contains(expected, ex.Message);
    }

    [Fact]
    public void UnsupportedFormat_IsNamed()
    {
        // A 2x1 WBMP (type 0, header 0, width, height, one byte of bits): Skia reads it, we do not accept it.
        byte[] wbmp = [0, 0, 2, 1, 0x80];
        var ex = Assert.Throws<InvalidImageException>(() => ImageDecoder.Decode(wbmp, "w.wbmp"));
        Assert.Contains("Wbmp images are not supported", ex.Message);
    }
}
