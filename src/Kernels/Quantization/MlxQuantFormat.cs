namespace Pipeline.Kernels.Quantization;

/// <summary>The parameters MLX's "affine" quantization mode accepts, and the packed row geometry.</summary>
public static class MlxQuantFormat
{
    public static readonly IReadOnlyList<int> SupportedBits = [2, 3, 4, 5, 6, 8];
    public static readonly IReadOnlyList<int> SupportedGroupSizes = [32, 64, 128];

    public static bool IsSupportedBits(int bits) => SupportedBits.Contains(bits);

    public static bool IsSupportedGroupSize(int groupSize) => SupportedGroupSizes.Contains(groupSize);

    /// <summary>uint32 words holding one packed row of <paramref name="cols"/> values.</summary>
    public static int WordsPerRow(int cols, int bits) => checked(cols * bits / 32);

    /// <summary>Whether a row of <paramref name="cols"/> values packs into whole words and whole groups.</summary>
    public static bool RowFits(int cols, int bits, int groupSize) =>
        cols > 0 && cols % groupSize == 0 && (long)cols * bits % 32 == 0;
}
