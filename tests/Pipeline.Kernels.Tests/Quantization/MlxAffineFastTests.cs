using Pipeline.Kernels.Quantization;

namespace Pipeline.Kernels.Tests.Quantization;

/// <summary>The vectorized quantizer must produce exactly the reference's bytes.</summary>
public class MlxAffineFastTests
{
    public static TheoryData<int, int, ScalarType> Cases()
    {
        var data = new TheoryData<int, int, ScalarType>();
        foreach (int bits in MlxQuantFormat.SupportedBits)
            foreach (int groupSize in MlxQuantFormat.SupportedGroupSizes)
                data.Add(bits, groupSize, bits % 2 == 0 ? ScalarType.BF16 : groupSize == 64 ? ScalarType.F32 : ScalarType.F16);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void QuantizeRows_MatchesTheReferenceByteForByte(int bits, int groupSize, ScalarType scaleType)
    {
        var rng = new Random(bits * 31 + groupSize);
        foreach (int groups in new[] { 1, 3, 7 }) // odd group counts; 3-bit rows of 3 groups of 32 cross words
        {
            int rows = rng.Next(1, 9), cols = groups * groupSize;
            var weights = new float[rows * cols];
            for (int i = 0; i < weights.Length; i++)
                weights[i] = (float)(rng.NextDouble() * 2 - 1) * (i % 5 == 0 ? 3f : 0.1f);
            // Awkward groups: constant, tiny (q0 == 0), all positive, all negative, bf16-exact values.
            Fill(weights.AsSpan(0, groupSize), _ => 0.75f);
            if (rows > 1)
                Fill(weights.AsSpan(cols, groupSize), _ => 3e-8f);
            if (rows > 2)
                Fill(weights.AsSpan(2 * cols, groupSize), j => 1 + j * 0.01f);
            if (rows > 3)
                Fill(weights.AsSpan(3 * cols, groupSize), j => -2 + j * 0.003f);
            if (rows > 4)
                Fill(weights.AsSpan(4 * cols, cols), j => Scalars.RoundToBf16(MathF.Sin(j * 0.37f) * 0.05f));

            AssertSame(weights, cols, bits, groupSize, scaleType);
        }
    }

    [Fact]
    public void QuantizeRows_RejectsANonFiniteWeightLikeTheReference()
    {
        var weights = new float[3 * 128];
        weights[2 * 128 + 77] = float.PositiveInfinity;
        var reference = Assert.Throws<ArgumentException>(() => Run(MlxAffine.QuantizeRows, weights, 128, 4, 64, ScalarType.BF16));
        var fast = Assert.Throws<ArgumentException>(() => Run(MlxAffineFast.QuantizeRows, weights, 128, 4, 64, ScalarType.BF16));
        Assert.Equal(reference.Message, fast.Message);
        Assert.Contains("row 2, column 77 is not finite", fast.Message);
    }

    [Fact]
    public void QuantizeRows_RejectsUnsupportedBitsLikeTheReference()
    {
        var ex = Assert.Throws<ArgumentException>(() => Run(MlxAffineFast.QuantizeRows, new float[64], 64, 7, 64, ScalarType.BF16));
        Assert.Contains("bits 7 is not supported", ex.Message);
    }

    private delegate void Quantizer(
        ReadOnlySpan<float> weights, int cols, int bits, int groupSize, ScalarType scaleType,
        Span<uint> packed, Span<byte> scales, Span<byte> biases);

    private static void AssertSame(float[] weights, int cols, int bits, int groupSize, ScalarType scaleType)
    {
        var expected = Run(MlxAffine.QuantizeRows, weights, cols, bits, groupSize, scaleType);
        var actual = Run(MlxAffineFast.QuantizeRows, weights, cols, bits, groupSize, scaleType);
        Assert.Equal(expected.Packed, actual.Packed);
        Assert.Equal(expected.Scales, actual.Scales);
        Assert.Equal(expected.Biases, actual.Biases);
    }

    private static (uint[] Packed, byte[] Scales, byte[] Biases) Run(
        Quantizer quantize, float[] weights, int cols, int bits, int groupSize, ScalarType scaleType)
    {
        int rows = weights.Length / cols;
        var packed = new uint[rows * Math.Max(1, cols * bits / 32)];
        int groupBytes = rows * Math.Max(1, cols / groupSize) * Scalars.SizeOf(scaleType);
        var scales = new byte[groupBytes];
        var biases = new byte[groupBytes];
        quantize(weights, cols, bits, groupSize, scaleType, packed, scales, biases);
        return (packed, scales, biases);
    }

    private static void Fill(Span<float> values, Func<int, float> value)
    {
        for (int j = 0; j < values.Length; j++)
            values[j] = value(j);
    }
}
