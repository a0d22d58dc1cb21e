using Pipeline.Kernels.Quantization;

namespace Pipeline.Kernels.Tests.Quantization;

public class MlxAffinePackingTests
{
    public static TheoryData<int, int> BitsAndGroupSizes()
    {
        var data = new TheoryData<int, int>();
        foreach (int bits in MlxQuantFormat.SupportedBits)
            foreach (int groupSize in MlxQuantFormat.SupportedGroupSizes)
                data.Add(bits, groupSize);
        return data;
    }

    [Theory]
    [MemberData(nameof(BitsAndGroupSizes))]
    public void PackThenUnpack_RoundTrips_AndMatchesTheBitstreamLayout(int bits, int groupSize)
    {
        var rng = new Random(bits * 1000 + groupSize);
        int cols = groupSize * 3; // an odd number of groups
        var codes = new uint[cols];
        for (int i = 0; i < cols; i++)
            codes[i] = (uint)rng.Next(1 << bits);
        codes[^1] = (1u << bits) - 1; // the largest code in the last slot
        var packed = new uint[cols * bits / 32];

        MlxAffine.PackRow(codes, bits, packed);

        var unpacked = new uint[cols];
        MlxAffine.UnpackRow(packed, bits, unpacked);
        Assert.Equal(codes, unpacked);
        Assert.Equal(BuildBitstream(codes, bits), packed);
        for (int i = 0; i < cols; i++)
            Assert.Equal(codes[i], MlxAffine.GetCode(packed, i, bits));
    }

    [Fact]
    public void PackRow_ThreeBitCodeStraddlesTwoWords()
    {
        // Element 10 occupies stream bits 30..32: its low two bits end word 0, its high bit starts word 1.
        var codes = new uint[32];
        codes[10] = 0b101;
        var packed = new uint[3];

        MlxAffine.PackRow(codes, 3, packed);

        Assert.Equal(1u << 30, packed[0]);
        Assert.Equal(1u, packed[1]);
        Assert.Equal(0u, packed[2]);
        Assert.Equal(0b101u, MlxAffine.GetCode(packed, 10, 3));
    }

    [Theory]
    [InlineData(5, 6, 0b11011u)]  // bits 30..34
    [InlineData(6, 5, 0b100111u)] // bits 30..35
    public void GetCode_ReadsValuesThatCrossAWord(int bits, int index, uint code)
    {
        int cols = 64;
        var codes = new uint[cols];
        codes[index] = code;
        var packed = new uint[cols * bits / 32];
        MlxAffine.PackRow(codes, bits, packed);

        Assert.Equal(code & 0b11, packed[0] >> 30);
        Assert.Equal(code >> 2, packed[1]);
        Assert.Equal(code, MlxAffine.GetCode(packed, index, bits));
    }

    [Fact]
    public void PackRow_RejectsACodeWiderThanBits()
    {
        var codes = new uint[32];
        codes[7] = 4;
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => MlxAffine.PackRow(codes, 2, new uint[2]));
        Assert.Contains("code 4 at index 7 does not fit in 2 bits", ex.Message);
    }

    [Fact]
    public void PackRow_RejectsUnsupportedBits()
    {
        var ex = Assert.Throws<ArgumentException>(() => MlxAffine.PackRow(new uint[32], 7, new uint[7]));
        Assert.Contains("bits 7 is not supported", ex.Message);
    }

    [Fact]
    public void PackRow_RejectsAWrongSizedDestination()
    {
        var ex = Assert.Throws<ArgumentException>(() => MlxAffine.PackRow(new uint[64], 3, new uint[5]));
        Assert.Contains("packedRow has length 5, expected 6", ex.Message);
    }

    /// <summary>Independent construction: word j bit b holds stream bit 32j+b; code i fills bits [i*bits, (i+1)*bits).</summary>
    private static uint[] BuildBitstream(uint[] codes, int bits)
    {
        var stream = new bool[codes.Length * bits];
        for (int i = 0; i < codes.Length; i++)
            for (int b = 0; b < bits; b++)
                stream[i * bits + b] = ((codes[i] >> b) & 1) != 0;
        var words = new uint[stream.Length / 32];
        for (int s = 0; s < stream.Length; s++)
            if (stream[s])
                words[s / 32] |= 1u << (s % 32);
        return words;
    }
}
