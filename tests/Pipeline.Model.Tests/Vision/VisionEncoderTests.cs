using Pipeline.Kernels.Cpu;
using Pipeline.Kernels.Reference;
using Pipeline.Model.Checkpoint;
using Pipeline.Model.Vision;

namespace Pipeline.Model.Tests.Vision;

[Collection(TinyVisionCollection.Name)]
public class VisionEncoderTests(TinyVisionModels models)
{
    /// <summary>An image of random bytes, preprocessed at a budget of 70 soft tokens (630 patches).</summary>
    internal static PreprocessedImage RandomImage(int width, int height, int seed, int budget = 70)
    {
        var pixels = new byte[3 * width * height];
        new Random(seed).NextBytes(pixels);
        return Gemma4ImageProcessor.Preprocess(new RgbImage(width, height, pixels), budget);
    }

    /// <summary>A grid of rows x cols random patches (not from an image), padded to the 70-token budget.</summary>
    internal static PreprocessedImage GridImage(int rows, int cols, int seed)
    {
        const int Budget = 70, MaxPatches = Budget * 9, Values = 16 * 16 * 3;
        var random = new Random(seed);
        var pixels = new float[MaxPatches * Values];
        for (int i = 0; i < rows * cols * Values; i++)
            pixels[i] = random.Next(256) / 255f;
        var positions = new int[MaxPatches * 2];
        Array.Fill(positions, -1);
        for (int p = 0; p < rows * cols; p++)
            (positions[p * 2], positions[p * 2 + 1]) = (p % cols, p / cols);
        return new PreprocessedImage(cols * 16, rows * 16, rows, cols, 16, 3, Budget, pixels, positions);
    }

    public static TheoryData<int, int, int> Images() => new()
    {
        { 50, 50, 64 },     // 24 x 24 patches of 630: padding
        { 200, 40, 54 },    // 9 x 54 patches, wide
        { 1000, 10, 70 },   // 3 x 210 patches: the whole budget, no padding
        { 20, 90, 51 },     // tall: 51 x 9 patches
    };

    [Theory]
    [MemberData(nameof(Images))]
    public void Tower_MatchesTheDirectReference(int width, int height, int softTokens)
    {
        using var checkpoint = Gemma4Checkpoint.Open(models.Mlx);
        var weights = Gemma4VisionWeights.Load(checkpoint);
        var image = RandomImage(width, height, seed: width * 7 + height);
        Assert.Equal(softTokens, image.SoftTokens);

        var expected = VisionReference.Encode(weights, checkpoint.Text.HiddenSize, image);
        Assert.Equal(softTokens * checkpoint.Text.HiddenSize, expected.Length);
        using var backend = new CpuBackend(2);
        using var encoder = new Gemma4VisionEncoder(backend, weights, checkpoint.Text.HiddenSize, maxSoftTokens: 70);
        AssertClose(expected, encoder.EncodeToHost(image), backend.Name);
    }

    [Fact]
    public void Tower_OnTheReferenceBackend_MatchesTheDirectReference()
    {
        using var checkpoint = Gemma4Checkpoint.Open(models.Hf);
        var weights = Gemma4VisionWeights.Load(checkpoint);
        var image = GridImage(6, 9, seed: 5);
        Assert.Equal(6, image.SoftTokens);
        using var backend = new ReferenceBackend();
        using var encoder = new Gemma4VisionEncoder(backend, weights, checkpoint.Text.HiddenSize, maxSoftTokens: 70);
        AssertClose(VisionReference.Encode(weights, checkpoint.Text.HiddenSize, image), encoder.EncodeToHost(image), backend.Name);
    }

    [Fact]
    public void BothLayouts_GiveTheSameEmbeddings()
    {
        var image = RandomImage(60, 45, seed: 3);
        using var mlx = Gemma4Checkpoint.Open(models.Mlx);
        using var hf = Gemma4Checkpoint.Open(models.Hf);
        using var backend = new CpuBackend(2);
        using var a = new Gemma4VisionEncoder(backend, mlx, maxSoftTokens: 70);
        using var b = new Gemma4VisionEncoder(backend, hf, maxSoftTokens: 70);
        Assert.Equal(a.EncodeToHost(image), b.EncodeToHost(image));
        Assert.Equal(64, a.OutputWidth);
    }

    [Fact]
    public void LaterPatch_ChangesEarlierSoftTokens_PaddingChangesNothing()
    {
        using var checkpoint = Gemma4Checkpoint.Open(models.Mlx);
        using var backend = new CpuBackend(2);
        using var encoder = new Gemma4VisionEncoder(backend, checkpoint, maxSoftTokens: 70);
        var image = RandomImage(50, 50, seed: 9);
        int width = checkpoint.Text.HiddenSize, values = image.PatchValues;
        var baseline = encoder.EncodeToHost(image);

        // The last patch belongs to the last pooling group only; bidirectional attention carries it to group 0.
        var lastPatch = image with { Pixels = (float[])image.Pixels.Clone() };
        lastPatch.Pixels.AsSpan((image.PatchCount - 1) * values, values).Fill(1f);
        var changed = encoder.EncodeToHost(lastPatch);
        Assert.True(MaxDiff(baseline.AsSpan(0, width), changed.AsSpan(0, width)) > 1e-3, "soft token 0 did not see the last patch");

        // Padding patches are masked: changing their pixels changes nothing.
        var paddingPatch = image with { Pixels = (float[])image.Pixels.Clone() };
        paddingPatch.Pixels.AsSpan(image.PatchCount * values, values).Fill(1f);
        Assert.Equal(baseline, encoder.EncodeToHost(paddingPatch));
    }

    [Fact]
    public void BadInputs_AreRefusedClearly()
    {
        using var checkpoint = Gemma4Checkpoint.Open(models.Mlx);
        using var backend = new CpuBackend(1);
        using var encoder = new Gemma4VisionEncoder(backend, checkpoint, maxSoftTokens: 70);

        var big = RandomImage(50, 50, seed: 1, budget: 140);
        Assert.Contains("sized for at most 70", Assert.Throws<ArgumentException>(() => encoder.Encode(big)).Message);

        var small = RandomImage(50, 50, seed: 1);
        var shuffled = small with { Positions = (int[])small.Positions.Clone() };
        (shuffled.Positions[0], shuffled.Positions[2]) = (shuffled.Positions[2], shuffled.Positions[0]);
        Assert.Contains("row-major", Assert.Throws<ArgumentException>(() => encoder.Encode(shuffled)).Message);

        var otherPatch = small with { PatchSize = 14 };
        Assert.Contains("patch 14", Assert.Throws<ArgumentException>(() => encoder.Encode(otherPatch)).Message);
    }

    private static void AssertClose(float[] expected, float[] actual, string label)
    {
        Assert.Equal(expected.Length, actual.Length);
        double scale = expected.Max(v => Math.Abs((double)v));
        double diff = MaxDiff(expected, actual);
        Assert.True(diff <= 1e-4 * scale, $"{label}: max |diff| {diff:G3} exceeds 1e-4 of the largest value {scale:G3}");
    }

    private static double MaxDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double max = 0;
        for (int i = 0; i < a.Length; i++)
            max = Math.Max(max, Math.Abs((double)a[i] - b[i]));
        return max;
    }
}
