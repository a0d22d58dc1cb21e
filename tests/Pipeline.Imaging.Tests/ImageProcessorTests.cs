using System.Security.Cryptography;
using System.Text.Json;
using Pipeline.Model.Vision;
using SkiaSharp;

namespace Pipeline.Imaging.Tests;

public class ImageProcessorTests
{
    // (height, width, budget) -> (target height, target width), worked out by hand from HF's
    // get_aspect_ratio_preserving_size: side = floor(sqrt(B*9*256 / (H*W)) * side / 48) * 48, with the
    // 0-side rule (48 and min(floor(long/short) * 48, B*48)).
    [Theory]
    [InlineData(1, 1, 280, 768, 768)]
    [InlineData(30, 4000, 280, 48, 9264)]
    [InlineData(4000, 30, 280, 9264, 48)]
    [InlineData(777, 333, 280, 1200, 480)]
    [InlineData(1, 10000, 280, 48, 13440)]
    [InlineData(10000, 1, 70, 3360, 48)]
    [InlineData(480, 640, 70, 336, 432)]
    [InlineData(480, 640, 140, 480, 624)]
    [InlineData(480, 640, 280, 672, 912)]
    [InlineData(480, 640, 560, 960, 1296)]
    [InlineData(480, 640, 1120, 1344, 1824)]
    [InlineData(768, 768, 280, 768, 768)]
    [InlineData(1500, 2000, 280, 672, 912)]
    public void TargetSize_MatchesTheFormula(int height, int width, int budget, int targetHeight, int targetWidth)
    {
        Assert.Equal((targetHeight, targetWidth), Gemma4ImageProcessor.TargetSize(height, width, budget, 16, 3));
    }

    [Fact]
    public void TargetSize_IsTheLargestFittingMultipleOf48_ForManySizes()
    {
        var random = new Random(11);
        foreach (int budget in Gemma4ImageProcessor.SupportedBudgets)
        {
            for (int i = 0; i < 2000; i++)
            {
                int h = random.Next(1, 6000), w = random.Next(1, 6000);
                var (th, tw) = Gemma4ImageProcessor.TargetSize(h, w, budget, 16, 3);
                Assert.True(th % 48 == 0 && tw % 48 == 0 && th > 0 && tw > 0, $"{h}x{w}: {th}x{tw}");
                Assert.True((long)th * tw <= budget * 9L * 256, $"{h}x{w}: {th}x{tw} exceeds budget {budget}");
                double factor = Math.Sqrt(budget * 9.0 * 256 / ((double)h * w));
                if (factor * h >= 48 && factor * w >= 48)
                {
                    // Each side is the ideal (aspect-preserving, budget-filling) side floored to 48.
                    Assert.InRange(factor * h - th, 0, 48);
                    Assert.InRange(factor * w - tw, 0, 48);
                }
            }
        }
    }

    [Fact]
    public void UnsupportedBudget_IsRefused()
    {
        var image = new RgbImage(2, 2, new byte[12]);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => Gemma4ImageProcessor.Preprocess(image, maxSoftTokens: 100));
        Assert.Contains("70, 140, 280, 560, 1120", ex.Message);
    }

    public static TheoryData<int, int, int, int> PillowCases()
    {
        var data = new TheoryData<int, int, int, int>();
        foreach (var c in PillowFixture().RootElement.GetProperty("cases").EnumerateArray())
            data.Add(c.GetProperty("width").GetInt32(), c.GetProperty("height").GetInt32(), c.GetProperty("target_width").GetInt32(), c.GetProperty("target_height").GetInt32());
        return data;
    }

    [Theory]
    [MemberData(nameof(PillowCases))]
    public void Resize_IsBitExactWithPillow(int width, int height, int targetWidth, int targetHeight)
    {
        var expected = PillowFixture().RootElement.GetProperty("cases").EnumerateArray()
            .First(c => c.GetProperty("width").GetInt32() == width && c.GetProperty("height").GetInt32() == height
                && c.GetProperty("target_width").GetInt32() == targetWidth);
        var resized = ImageResize.Bicubic(TestImages.PatternImage(width, height), targetWidth, targetHeight);
        Assert.Equal(
            expected.GetProperty("first_bytes").EnumerateArray().Select(v => (byte)v.GetInt32()),
            resized.Pixels.Take(24));
        Assert.Equal(expected.GetProperty("sha256").GetString(), Convert.ToHexStringLower(SHA256.HashData(resized.Pixels)));
    }

    [Theory]
    [InlineData(61, 47, 24, 20)]
    [InlineData(61, 47, 130, 97)]
    [InlineData(61, 47, 30, 101)]
    [InlineData(133, 57, 190, 80)]
    public void Resize_AgreesWithTheDefinitionEvaluatedInDoubles(int width, int height, int targetWidth, int targetHeight)
    {
        // Independent of the fixed-point code: weights straight from the definition (antialiased bicubic,
        // a = -0.5, normalised) in doubles; a horizontal then a vertical pass, each rounded and clamped to
        // 8 bits as Pillow does (the clamp matters: bicubic overshoots on sharp edges). Only the weights'
        // 22-bit rounding may move a value by one level.
        var source = TestImages.PatternImage(width, height);
        var resized = ImageResize.Bicubic(source, targetWidth, targetHeight);
        var wx = DirectWeights(width, targetWidth);
        var wy = DirectWeights(height, targetHeight);
        var horizontal = new byte[height, targetWidth, 3];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < targetWidth; x++)
                for (int c = 0; c < 3; c++)
                    horizontal[y, x, c] = Round8(wx[x].Sum(t => t.Weight * TestImages.Pattern(t.Index, y, c)));
        int exact = 0, total = 0;
        for (int y = 0; y < targetHeight; y++)
        {
            for (int x = 0; x < targetWidth; x++)
            {
                for (int c = 0; c < 3; c++)
                {
                    int expected = Round8(wy[y].Sum(t => t.Weight * horizontal[t.Index, x, c]));
                    int actual = resized[x, y, c];
                    Assert.InRange(actual, expected - 1, expected + 1);
                    exact += actual == expected ? 1 : 0;
                    total++;
                }
            }
        }
        Assert.True(exact > total * 0.99, $"only {exact} of {total} values agree exactly");
    }

    private static byte Round8(double value) => (byte)Math.Clamp(Math.Floor(value + 0.5), 0, 255);

    private static List<(int Index, double Weight)>[] DirectWeights(int inputSize, int outputSize)
    {
        double scale = (double)inputSize / outputSize, stretch = Math.Max(1, scale);
        var result = new List<(int, double)>[outputSize];
        for (int o = 0; o < outputSize; o++)
        {
            double centre = (o + 0.5) * scale; // in input pixel units; input pixel i covers [i, i + 1)
            var taps = new List<(int, double)>();
            for (int i = 0; i < inputSize; i++)
            {
                double w = ImageResize.Cubic((i + 0.5 - centre) / stretch);
                if (w != 0)
                    taps.Add((i, w));
            }
            double total = taps.Sum(t => t.Item2);
            result[o] = taps.Select(t => (t.Item1, t.Item2 / total)).ToList();
        }
        return result;
    }

    [Fact]
    public void OnePixel_FillsTheWholeBudgetGrid()
    {
        var png = TestImages.Encode(1, 1, SKColorType.Rgba8888, SKAlphaType.Unpremul, [12, 200, 77, 255], SKEncodedImageFormat.Png);
        var input = Gemma4ImageProcessor.Preprocess(ImageDecoder.Decode(png));
        AssertLayout(input, width: 768, height: 768, softTokens: 256);
        float[] colour = [12 / 255f, 200 / 255f, 77 / 255f];
        for (int i = 0; i < input.PatchCount * 256 * 3; i++)
        {
            if (Math.Abs(input.Pixels[i] - colour[i % 3]) > 1e-7f)
                Assert.Fail($"value {i} is {input.Pixels[i]}, expected {colour[i % 3]}");
        }
    }

    [Theory]
    [InlineData(4000, 30, 9264, 48, 193)]
    [InlineData(333, 777, 480, 1200, 250)]
    [InlineData(30, 4000, 48, 9264, 193)]
    public void CraftedPng_HasTheFormulaSizes_AndPatchesOfTheResizedImage(int width, int height, int targetWidth, int targetHeight, int softTokens)
    {
        var png = TestImages.Encode(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul, TestImages.PatternRgba(width, height), SKEncodedImageFormat.Png);
        var decoded = ImageDecoder.Decode(png);
        var input = Gemma4ImageProcessor.Preprocess(decoded);
        AssertLayout(input, targetWidth, targetHeight, softTokens);
        AssertPatchesOf(ImageResize.Bicubic(decoded, targetWidth, targetHeight), input);
    }

    [Fact]
    public void Grayscale_GivesEqualChannels()
    {
        const int W = 50, H = 70;
        var gray = new byte[W * H];
        for (int i = 0; i < gray.Length; i++)
            gray[i] = (byte)(i * 7 % 251);
        var input = Gemma4ImageProcessor.Preprocess(ImageDecoder.Decode(TestImages.Encode(W, H, SKColorType.Gray8, SKAlphaType.Opaque, gray, SKEncodedImageFormat.Png)));
        for (int i = 0; i < input.PatchCount * 256; i++)
        {
            if (input.Pixels[i * 3] != input.Pixels[i * 3 + 1] || input.Pixels[i * 3] != input.Pixels[i * 3 + 2])
                Assert.Fail($"pixel {i} has unequal channels");
        }
        var expected = Gemma4ImageProcessor.Preprocess(new RgbImage(W, H, gray.SelectMany(g => new[] { g, g, g }).ToArray()));
        Assert.True(expected.Pixels.AsSpan().SequenceEqual(input.Pixels), "grayscale tensors differ from the replicated-RGB ones");
    }

    [Fact]
    public void Alpha_GivesTheSameTensorsAsTheOpaqueImage()
    {
        const int W = 90, H = 41;
        var translucent = TestImages.Encode(W, H, SKColorType.Rgba8888, SKAlphaType.Unpremul, TestImages.PatternRgba(W, H, (x, y) => (byte)(x * 2 + y)), SKEncodedImageFormat.Png);
        var opaque = TestImages.PatternImage(W, H);
        var input = Gemma4ImageProcessor.Preprocess(ImageDecoder.Decode(translucent));
        var expected = Gemma4ImageProcessor.Preprocess(opaque);
        Assert.True(expected.Pixels.AsSpan().SequenceEqual(input.Pixels), "pixels differ from the opaque image's");
        Assert.True(expected.Positions.AsSpan().SequenceEqual(input.Positions), "positions differ from the opaque image's");
    }

    [Fact]
    public void CmykJpeg_Preprocesses()
    {
        var decoded = ImageDecoder.Decode(File.ReadAllBytes(Path.Combine(TestImages.Fixtures, "cmyk.jpg")));
        var input = Gemma4ImageProcessor.Preprocess(decoded);
        AssertLayout(input, 768, 768, 256);
        AssertPatchesOf(ImageResize.Bicubic(decoded, 768, 768), input);
        // Top-left block is unprinted paper: white.
        Assert.Equal(1f, input.Pixels[0], 1e-6f);
    }

    [Fact]
    public void SmallerBudget_GivesFewerPatchesAndPadding()
    {
        var input = Gemma4ImageProcessor.Preprocess(TestImages.PatternImage(640, 480), maxSoftTokens: 70);
        AssertLayout(input, 432, 336, 63);
        Assert.Equal(630, input.MaxPatches);
    }

    private static void AssertLayout(PreprocessedImage input, int width, int height, int softTokens)
    {
        Assert.Equal((width, height), (input.Width, input.Height));
        Assert.Equal((height / 16, width / 16), (input.PatchRows, input.PatchCols));
        Assert.Equal(softTokens, input.SoftTokens);
        Assert.Equal((height / 48) * (width / 48), input.SoftTokens);
        Assert.Equal(input.MaxPatches * 768, input.Pixels.Length);
        Assert.Equal(input.MaxPatches * 2, input.Positions.Length);
        int cols = width / 16;
        for (int p = 0; p < input.MaxPatches; p++)
        {
            bool valid = p < input.PatchCount;
            var expected = valid ? (p % cols, p / cols) : (-1, -1);
            if ((input.Positions[p * 2], input.Positions[p * 2 + 1]) != expected)
                Assert.Fail($"patch {p}: position ({input.Positions[p * 2]}, {input.Positions[p * 2 + 1]}), expected {expected}");
        }
        Assert.True(input.Pixels.AsSpan(input.PatchCount * 768).IndexOfAnyExcept(0f) < 0, "padding patches hold non-zero pixels");
    }

    /// <summary>Patch (py, px) element (dy, dx, c) is resized[16 py + dy, 16 px + dx, c] / 255.</summary>
    private static void AssertPatchesOf(RgbImage resized, PreprocessedImage input)
    {
        Assert.Equal((resized.Width, resized.Height), (input.Width, input.Height));
        for (int py = 0; py < input.PatchRows; py++)
            for (int px = 0; px < input.PatchCols; px++)
                for (int dy = 0; dy < 16; dy++)
                    for (int dx = 0; dx < 16; dx++)
                        for (int c = 0; c < 3; c++)
                        {
                            float actual = input.Pixels[(py * input.PatchCols + px) * 768 + (dy * 16 + dx) * 3 + c];
                            float expected = resized[px * 16 + dx, py * 16 + dy, c] / 255f;
                            if (Math.Abs(actual - expected) > 1e-7f)
                                Assert.Fail($"patch ({py}, {px}) element ({dy}, {dx}, {c}): {actual} != {expected}");
                        }
    }

    private static JsonDocument PillowFixture() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(TestImages.Fixtures, "pil-bicubic.json")));
}
