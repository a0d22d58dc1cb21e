using Pipeline.Model.Checkpoint;

namespace Pipeline.Model.Vision;

/// <summary>
/// Gemma-4's image preprocessing (Hugging Face Gemma4ImageProcessor, PIL path):
/// <list type="number">
/// <item>Aspect-preserving size for a budget of B soft tokens (B*k^2 patches of p x p pixels,
/// k = pooling kernel): factor = sqrt(B*k^2*p^2 / (H*W)), each side floor(factor*side / (k*p)) * k*p.
/// A side that floors to 0 becomes k*p and the other min(floor(long/short) * k*p, B*k*p).
/// Unchanged when the target equals the input.</item>
/// <item>Resize with <see cref="ImageResize.Bicubic"/> (Pillow's antialiased bicubic).</item>
/// <item>Rescale by 1/255, no mean/std.</item>
/// <item>Patchify row-major (patch (py, px) is patch number py * cols + px), each patch flattened as
/// (dy, dx, channel); positions (x = px, y = py).</item>
/// <item>Pad to B*k^2 patches: zero pixels, position (-1, -1).</item>
/// </list>
/// Soft tokens = (H/(k*p)) * (W/(k*p)) &lt;= B.
/// </summary>
public static class Gemma4ImageProcessor
{
    /// <summary>The soft-token budgets the model was trained with.</summary>
    public static IReadOnlyList<int> SupportedBudgets { get; } = [70, 140, 280, 560, 1120];

    public const int DefaultBudget = 280;

    /// <summary>(height, width) the image is resized to; see the class summary.</summary>
    public static (int Height, int Width) TargetSize(int height, int width, int maxSoftTokens, int patchSize, int poolingKernel)
    {
        if (height <= 0 || width <= 0)
            throw new ArgumentOutOfRangeException(nameof(height), $"image size {width}x{height} must be positive");
        ValidateBudget(maxSoftTokens);
        long maxPatches = (long)maxSoftTokens * poolingKernel * poolingKernel;
        long targetPixels = maxPatches * patchSize * patchSize;
        double factor = Math.Sqrt((double)targetPixels / ((double)height * width));
        int side = poolingKernel * patchSize;
        long targetHeight = (long)Math.Floor(factor * height / side) * side;
        long targetWidth = (long)Math.Floor(factor * width / side) * side;
        long maxSide = maxPatches / (poolingKernel * poolingKernel) * side;
        if (targetHeight == 0 && targetWidth == 0)
            throw new ArgumentException($"a {width}x{height} image would resize to 0x0");
        if (targetHeight == 0)
        {
            targetHeight = side;
            targetWidth = Math.Min((long)Math.Floor((double)width / height) * side, maxSide);
        }
        else if (targetWidth == 0)
        {
            targetWidth = side;
            targetHeight = Math.Min((long)Math.Floor((double)height / width) * side, maxSide);
        }
        if (targetHeight * targetWidth > targetPixels)
            throw new ArgumentException(
                $"resizing {width}x{height} to {targetWidth}x{targetHeight} exceeds {maxPatches} patches of {patchSize}x{patchSize}");
        return ((int)targetHeight, (int)targetWidth);
    }

    /// <summary>Preprocesses with the tower's patch size and pooling kernel.</summary>
    public static PreprocessedImage Preprocess(RgbImage image, Gemma4VisionConfig vision, int maxSoftTokens = DefaultBudget) =>
        Preprocess(image, maxSoftTokens, vision.PatchSize, vision.PoolingKernelSize);

    public static PreprocessedImage Preprocess(RgbImage image, int maxSoftTokens = DefaultBudget, int patchSize = 16, int poolingKernel = 3)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(patchSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(poolingKernel);
        var (height, width) = TargetSize(image.Height, image.Width, maxSoftTokens, patchSize, poolingKernel);
        var resized = height == image.Height && width == image.Width ? image : ImageResize.Bicubic(image, width, height);

        int rows = height / patchSize, cols = width / patchSize;
        int maxPatches = maxSoftTokens * poolingKernel * poolingKernel;
        int patchValues = patchSize * patchSize * 3;
        var pixels = new float[(long)maxPatches * patchValues];   // [maxPatches, p * p * 3]
        var positions = new int[maxPatches * 2];                  // [maxPatches, (x, y)]
        var source = resized.Pixels;
        for (int py = 0; py < rows; py++)
        {
            for (int px = 0; px < cols; px++)
            {
                int patch = py * cols + px;
                positions[patch * 2] = px;
                positions[patch * 2 + 1] = py;
                long target = (long)patch * patchValues;
                for (int dy = 0; dy < patchSize; dy++)
                {
                    long row = ((long)(py * patchSize + dy) * width + px * patchSize) * 3;
                    for (int i = 0; i < patchSize * 3; i++)
                        pixels[target++] = Rescale(source[row + i]);
                }
            }
        }
        positions.AsSpan(rows * cols * 2).Fill(-1);
        return new PreprocessedImage(width, height, rows, cols, patchSize, poolingKernel, maxSoftTokens, pixels, positions);
    }

    /// <summary>value / 255 as HF computes it (f64 product with 1/255, stored f32).</summary>
    public static float Rescale(byte value) => (float)(value * (1.0 / 255.0));

    private static void ValidateBudget(int maxSoftTokens)
    {
        if (!SupportedBudgets.Contains(maxSoftTokens))
            throw new ArgumentOutOfRangeException(nameof(maxSoftTokens), maxSoftTokens,
                $"image token budget must be one of {string.Join(", ", SupportedBudgets)}");
    }
}

/// <summary>
/// One image ready for the vision tower: <see cref="Pixels"/> [MaxPatches, PatchSize^2 * 3] in [0, 1]
/// and <see cref="Positions"/> [MaxPatches, 2] as (x, y); the first <see cref="PatchCount"/> patches are
/// the image row-major, the rest padding (zeros, position (-1, -1)).
/// </summary>
public sealed record PreprocessedImage(
    int Width,
    int Height,
    int PatchRows,
    int PatchCols,
    int PatchSize,
    int PoolingKernel,
    int MaxSoftTokens,
    float[] Pixels,
    int[] Positions)
{
    public int PatchCount => PatchRows * PatchCols;
    public int MaxPatches => MaxSoftTokens * PoolingKernel * PoolingKernel;
    public int PatchValues => PatchSize * PatchSize * 3;

    /// <summary>Rows the image takes in the prompt: one per PoolingKernel x PoolingKernel group of patches.</summary>
    public int SoftTokens => PatchRows / PoolingKernel * (PatchCols / PoolingKernel);
}
