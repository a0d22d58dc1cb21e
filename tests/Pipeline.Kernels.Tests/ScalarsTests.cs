using Pipeline.Kernels;

namespace Pipeline.Kernels.Tests;

public class ScalarsTests
{
    [Theory]
    [InlineData(1.0f, 0x3F80)]
    [InlineData(73.5f, 0x4293)]
    [InlineData(1.00390625f, 0x3F80)] // exactly half-way between 1.0 and 1.0078125: ties to even
    [InlineData(1.01171875f, 0x3F82)] // half-way above an odd mantissa: rounds up to even
    [InlineData(-2.5f, 0xC020)]
    public void FloatToBf16_RoundsToNearestEven(float value, int expected)
    {
        Assert.Equal((ushort)expected, Scalars.FloatToBf16(value));
    }

    [Fact]
    public void Bf16_RoundTripsEveryFiniteValue()
    {
        for (int bits = 0; bits < 0x10000; bits++)
        {
            float f = Scalars.Bf16ToFloat((ushort)bits);
            if (float.IsNaN(f))
                Assert.True(float.IsNaN(Scalars.Bf16ToFloat(Scalars.FloatToBf16(f))));
            else
                Assert.Equal((ushort)bits, Scalars.FloatToBf16(f));
        }
    }
}
