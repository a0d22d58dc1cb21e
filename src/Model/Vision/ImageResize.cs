namespace Pipeline.Model.Vision;

/// <summary>
/// Bicubic resampling with antialiasing, computed exactly as Pillow's <c>Image.resize(size, BICUBIC)</c>
/// does for 8-bit images (what Hugging Face's Gemma-4 image processor calls):
/// <list type="bullet">
/// <item>Separable: a horizontal pass (skipped when the width stays), its result rounded to 8 bits, then a
/// vertical pass (skipped when the height stays).</item>
/// <item>Per output index i along an axis of n inputs resized to m: scale = n/m, the filter is stretched by
/// f = max(scale, 1) (the antialiasing), support = 2f, centre = (i + 0.5) scale, taps j in
/// [trunc(centre - support + 0.5), trunc(centre + support + 0.5)) clipped to [0, n), weights
/// k(j) = cubic((j - centre + 0.5) / f) normalised to sum 1, with the cubic of a = -0.5.</item>
/// <item>Weights in fixed point (22 fractional bits, rounded half away from zero); each output is
/// (sum of weight * input + 2^21) &gt;&gt; 22 clamped to [0, 255].</item>
/// </list>
/// </summary>
public static class ImageResize
{
    private const int PrecisionBits = 32 - 8 - 2;
    private const double Support = 2.0;

    public static RgbImage Bicubic(RgbImage source, int width, int height)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (width <= 0 || height <= 0)
            throw new ArgumentOutOfRangeException(nameof(width), $"target size {width}x{height} must be positive");

        var image = source;
        if (width != image.Width)
            image = Horizontal(image, width);
        if (height != image.Height)
            image = Vertical(image, height);
        return ReferenceEquals(image, source) ? new RgbImage(width, height, (byte[])source.Pixels.Clone()) : image;
    }

    /// <summary>Cubic convolution kernel with a = -0.5 (Pillow's BICUBIC).</summary>
    public static double Cubic(double x)
    {
        const double a = -0.5;
        x = Math.Abs(x);
        if (x < 1.0)
            return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
        if (x < 2.0)
            return (((x - 5) * x + 8) * x - 4) * a;
        return 0.0;
    }

    /// <summary>
    /// The taps of every output index along one axis: output i reads inputs [First[i], First[i] + Count[i])
    /// with fixed-point weights Weights[i * Stride ..].
    /// </summary>
    internal sealed class Taps
    {
        public required int[] First { get; init; }
        public required int[] Count { get; init; }
        public required int[] Weights { get; init; }
        public required int Stride { get; init; }
    }

    internal static Taps ComputeTaps(int inputSize, int outputSize)
    {
        double scale = (double)inputSize / outputSize;
        double stretch = Math.Max(scale, 1.0);
        double support = Support * stretch;
        double inverseStretch = 1.0 / stretch;
        int stride = (int)Math.Ceiling(support) * 2 + 1;
        var first = new int[outputSize];
        var count = new int[outputSize];
        var weights = new int[outputSize * stride];
        var k = new double[stride];
        for (int i = 0; i < outputSize; i++)
        {
            double centre = (i + 0.5) * scale;
            int lo = Math.Max(0, (int)(centre - support + 0.5));
            int hi = Math.Min(inputSize, (int)(centre + support + 0.5));
            int n = hi - lo;
            double sum = 0;
            for (int j = 0; j < n; j++)
            {
                k[j] = Cubic((j + lo - centre + 0.5) * inverseStretch);
                sum += k[j];
            }
            for (int j = 0; j < n; j++)
            {
                double w = sum != 0.0 ? k[j] / sum : k[j];
                double fixedPoint = w * (1 << PrecisionBits);
                weights[i * stride + j] = (int)(w < 0 ? fixedPoint - 0.5 : fixedPoint + 0.5);
            }
            first[i] = lo;
            count[i] = n;
        }
        return new Taps { First = first, Count = count, Weights = weights, Stride = stride };
    }

    private static byte Clip8(int accumulator) => (byte)Math.Clamp(accumulator >> PrecisionBits, 0, 255);

    private static RgbImage Horizontal(RgbImage source, int width)
    {
        var taps = ComputeTaps(source.Width, width);
        var input = source.Pixels;
        var output = new byte[3L * width * source.Height];
        int inWidth = source.Width;
        Parallel.For(0, source.Height, new ParallelOptions { MaxDegreeOfParallelism = Workers(source.Height * (long)width) }, y =>
        {
            long inRow = (long)y * inWidth * 3, outRow = (long)y * width * 3;
            for (int x = 0; x < width; x++)
            {
                int r = 1 << (PrecisionBits - 1), g = r, b = r;
                int lo = taps.First[x], n = taps.Count[x], w0 = x * taps.Stride;
                for (int j = 0; j < n; j++)
                {
                    int w = taps.Weights[w0 + j];
                    long p = inRow + (lo + j) * 3L;
                    r += input[p] * w;
                    g += input[p + 1] * w;
                    b += input[p + 2] * w;
                }
                output[outRow + x * 3L] = Clip8(r);
                output[outRow + x * 3L + 1] = Clip8(g);
                output[outRow + x * 3L + 2] = Clip8(b);
            }
        });
        return new RgbImage(width, source.Height, output);
    }

    private static RgbImage Vertical(RgbImage source, int height)
    {
        var taps = ComputeTaps(source.Height, height);
        var input = source.Pixels;
        int width = source.Width;
        long rowBytes = 3L * width;
        var output = new byte[rowBytes * height];
        Parallel.For(0, height, new ParallelOptions { MaxDegreeOfParallelism = Workers(height * (long)width) }, y =>
        {
            int lo = taps.First[y], n = taps.Count[y], w0 = y * taps.Stride;
            long outRow = y * rowBytes;
            for (long c = 0; c < rowBytes; c++)
            {
                int sum = 1 << (PrecisionBits - 1);
                for (int j = 0; j < n; j++)
                    sum += input[(lo + j) * rowBytes + c] * taps.Weights[w0 + j];
                output[outRow + c] = Clip8(sum);
            }
        });
        return new RgbImage(width, height, output);
    }

    /// <summary>One thread for small images (thread start-up would dominate), all cores otherwise.</summary>
    private static int Workers(long outputPixels) => outputPixels < 1 << 16 ? 1 : Environment.ProcessorCount;
}
