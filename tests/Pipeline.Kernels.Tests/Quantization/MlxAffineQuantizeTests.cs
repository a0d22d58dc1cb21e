using System.Buffers.Binary;
using Pipeline.Kernels.Quantization;

namespace Pipeline.Kernels.Tests.Quantization;

public class MlxAffineQuantizeTests
{
    public static TheoryData<int, int> BitsAndGroupSizes() => MlxAffinePackingTests.BitsAndGroupSizes();

    [Theory]
    [MemberData(nameof(BitsAndGroupSizes))]
    public void Quantize_F32Scales_EveryValueWithinOneStep(int bits, int groupSize)
    {
        int rows = 37, cols = groupSize * 3;
        var weights = RandomNormal(rows * cols, seed: bits * 100 + groupSize, std: 0.05f);

        var q = MlxAffine.Quantize(weights, rows, cols, bits, groupSize, ScalarType.F32);

        var row = new float[cols];
        for (int r = 0; r < rows; r++)
        {
            MlxAffine.DequantizeRow(q, r, row);
            for (int c = 0; c < cols; c++)
            {
                float step = MathF.Abs(StoredScale(q, r, c / groupSize));
                Assert.True(MathF.Abs(row[c] - weights[r * cols + c]) <= step,
                    $"row {r} col {c}: {row[c]} vs {weights[r * cols + c]}, step {step}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(BitsAndGroupSizes))]
    public void Quantize_Bf16Scales_WithinOneStepPlusTheStoredRounding(int bits, int groupSize)
    {
        int rows = 29, cols = groupSize * 5;
        var weights = RandomNormal(rows * cols, seed: bits * 7 + groupSize, std: 0.02f);
        for (int i = 0; i < weights.Length; i++)
            weights[i] = Scalars.RoundToBf16(weights[i]);

        var q = MlxAffine.Quantize(weights, rows, cols, bits, groupSize, ScalarType.BF16);

        // One f32 step, plus what rounding scale and bias to bf16 (relative error <= 2^-9) can add.
        int levels = (1 << bits) - 1;
        var row = new float[cols];
        for (int r = 0; r < rows; r++)
        {
            MlxAffine.DequantizeRow(q, r, row);
            for (int c = 0; c < cols; c++)
            {
                float scale = MathF.Abs(StoredScale(q, r, c / groupSize));
                float bias = MathF.Abs(StoredBias(q, r, c / groupSize));
                float bound = scale * (1 + levels / 256f) + bias / 256f;
                Assert.True(MathF.Abs(row[c] - weights[r * cols + c]) <= bound,
                    $"row {r} col {c}: {row[c]} vs {weights[r * cols + c]}, bound {bound}");
            }
        }
    }

    [Fact]
    public void Quantize_ProducesBothNegativeAndPositiveScales()
    {
        var weights = RandomNormal(64 * 64, seed: 3, std: 1f);
        var q = MlxAffine.Quantize(weights, 64, 64, 4, 64, ScalarType.F32);
        int negative = Enumerable.Range(0, 64).Count(r => StoredScale(q, r, 0) < 0);
        Assert.InRange(negative, 1, 63);
    }

    [Fact]
    public void Quantize_WhenMaxIsTheEdge_ScaleIsNegativeAndMaxIsExact()
    {
        // min 0, max 63: |max| > |min| so the max is made exact with a negative scale.
        var weights = Enumerable.Range(0, 64).Select(i => (float)i).ToArray();

        var q = MlxAffine.Quantize(weights, 1, 64, 2, 64, ScalarType.F32);

        Assert.Equal(-21f, StoredScale(q, 0, 0));
        Assert.Equal(63f, StoredBias(q, 0, 0));
        Assert.Equal(0u, MlxAffine.GetCode(q.Packed, 63, 2)); // code 0 decodes to the bias, the max
        Assert.Equal(3u, MlxAffine.GetCode(q.Packed, 0, 2));
        var row = new float[64];
        MlxAffine.DequantizeRow(q, 0, row);
        Assert.Equal(63f, row[63]);
        Assert.Equal(0f, row[0]);
    }

    [Fact]
    public void Quantize_WhenMinIsTheEdge_ScaleIsPositiveAndMinIsExact()
    {
        var weights = Enumerable.Range(0, 64).Select(i => -2f + i / 63f).ToArray(); // -2 .. -1

        var q = MlxAffine.Quantize(weights, 1, 64, 4, 64, ScalarType.F32);

        Assert.True(StoredScale(q, 0, 0) > 0);
        Assert.Equal(-2f, StoredBias(q, 0, 0));
        Assert.Equal(0u, MlxAffine.GetCode(q.Packed, 0, 4));
    }

    [Fact]
    public void Quantize_TinyConstantGroup_HitsQ0ZeroAndStoresZeroBias()
    {
        // scale is clamped to 1e-7; edge/scale rounds to 0, so bias stays 0 and the scale is -1e-7.
        var weights = Enumerable.Repeat(3e-8f, 32).Concat(Enumerable.Repeat(0f, 32)).ToArray();

        var q = MlxAffine.Quantize(weights, 1, 64, 3, 32, ScalarType.F32);

        Assert.Equal(-1e-7f, StoredScale(q, 0, 0));
        Assert.Equal(0f, StoredBias(q, 0, 0));
        Assert.Equal(-1e-7f, StoredScale(q, 0, 1));
        Assert.Equal(0f, StoredBias(q, 0, 1));
        var row = new float[64];
        MlxAffine.DequantizeRow(q, 0, row);
        Assert.All(row, v => Assert.Equal(0f, v));
    }

    [Theory]
    [InlineData(0.75f, ScalarType.BF16)]
    [InlineData(-3.5f, ScalarType.F16)]
    [InlineData(1.2345f, ScalarType.F32)]
    public void Quantize_ConstantGroup_DequantizesExactly(float value, ScalarType scaleType)
    {
        var weights = Enumerable.Repeat(value, 128).ToArray();

        var q = MlxAffine.Quantize(weights, 1, 128, 2, 128, scaleType);

        var row = new float[128];
        MlxAffine.DequantizeRow(q, 0, row);
        Assert.All(row, v => Assert.Equal(value, v));
    }

    [Fact]
    public void Quantize_ScaleIsComputedInF32BeforeRounding()
    {
        // Values whose exact scale is not a bf16: the stored scale is the rounded f32 scale.
        var weights = Enumerable.Range(0, 64).Select(i => -1f + i * 0.01f).ToArray(); // -1 .. -0.37

        var f32 = MlxAffine.Quantize(weights, 1, 64, 3, 64, ScalarType.F32);
        var bf16 = MlxAffine.Quantize(weights, 1, 64, 3, 64, ScalarType.BF16);

        Assert.Equal(f32.Packed, bf16.Packed);
        float exact = StoredScale(f32, 0, 0);
        Assert.NotEqual(exact, Scalars.RoundToBf16(exact));
        Assert.Equal(Scalars.RoundToBf16(exact), StoredScale(bf16, 0, 0));
    }

    [Fact]
    public void QuantizeRows_ABlockOfRowsMatchesTheWholeMatrix()
    {
        int rows = 12, cols = 96, bits = 3, groupSize = 32;
        var weights = RandomNormal(rows * cols, seed: 11, std: 0.1f);
        var whole = MlxAffine.Quantize(weights, rows, cols, bits, groupSize, ScalarType.BF16);

        int first = 5, count = 4, words = cols * bits / 32, groupBytes = cols / groupSize * 2;
        var packed = new uint[count * words];
        var scales = new byte[count * groupBytes];
        var biases = new byte[count * groupBytes];
        MlxAffine.QuantizeRows(weights.AsSpan(first * cols, count * cols), cols, bits, groupSize,
            ScalarType.BF16, packed, scales, biases);

        Assert.Equal(whole.Packed.AsSpan(first * words, count * words).ToArray(), packed);
        Assert.Equal(whole.Scales.AsSpan(first * groupBytes, count * groupBytes).ToArray(), scales);
        Assert.Equal(whole.Biases.AsSpan(first * groupBytes, count * groupBytes).ToArray(), biases);
    }

    [Fact]
    public unsafe void DequantizeRow_OfAQuantizedWeightView_MatchesTheManagedTensor()
    {
        int rows = 6, cols = 192, bits = 5, groupSize = 64;
        var weights = RandomNormal(rows * cols, seed: 5, std: 0.3f);
        var q = MlxAffine.Quantize(weights, rows, cols, bits, groupSize, ScalarType.F16);

        fixed (uint* packed = q.Packed)
        fixed (byte* scales = q.Scales, biases = q.Biases)
        {
            var view = new QuantizedWeight((nint)packed, (nint)scales, (nint)biases, rows, cols, bits, groupSize, ScalarType.F16);
            var expected = new float[cols];
            var actual = new float[cols];
            for (int r = 0; r < rows; r++)
            {
                MlxAffine.DequantizeRow(q, r, expected);
                MlxAffine.DequantizeRow(view, r, actual);
                Assert.Equal(expected, actual);
            }
        }
    }

    [Theory]
    [InlineData(7, 64, 128, "bits 7 is not supported")]
    [InlineData(4, 48, 96, "group size 48 is not supported")]
    [InlineData(4, 64, 96, "cols 96 is not a positive multiple of group size 64")]
    public void Quantize_RejectsUnsupportedParameters(int bits, int groupSize, int cols, string message)
    {
        var ex = Assert.Throws<ArgumentException>(
            () => MlxAffine.Quantize(new float[2 * cols], 2, cols, bits, groupSize, ScalarType.BF16));
        Assert.Contains(message, ex.Message);
    }

    [Fact]
    public void Quantize_RejectsANonFiniteWeight()
    {
        var weights = new float[2 * 64];
        weights[64 + 9] = float.NaN;
        var ex = Assert.Throws<ArgumentException>(
            () => MlxAffine.Quantize(weights, 2, 64, 4, 64, ScalarType.BF16));
        Assert.Contains("row 1, column 9 is not finite", ex.Message);
    }

    internal static float StoredScale(QuantizedTensor q, int row, int group) => Stored(q.Scales, q, row, group);

    internal static float StoredBias(QuantizedTensor q, int row, int group) => Stored(q.Biases, q, row, group);

    private static float Stored(byte[] bytes, QuantizedTensor q, int row, int group)
    {
        int index = row * (q.Cols / q.GroupSize) + group;
        return q.ScaleType switch
        {
            ScalarType.F32 => BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(index * 4)),
            ScalarType.BF16 => Scalars.Bf16ToFloat(BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(index * 2))),
            _ => Scalars.F16ToFloat(BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(index * 2))),
        };
    }

    private static float[] RandomNormal(int count, int seed, float std)
    {
        var rng = new Random(seed);
        var values = new float[count];
        for (int i = 0; i < count; i++)
        {
            double u1 = 1 - rng.NextDouble(), u2 = rng.NextDouble();
            values[i] = (float)(std * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
        return values;
    }
}
