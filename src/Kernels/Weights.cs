namespace Pipeline.Kernels;

/// <summary>Element type of dense weights, scales and biases as stored in a checkpoint.</summary>
public enum ScalarType
{
    F32,
    F16,
    BF16,
}

/// <summary>
/// A matrix W [Rows, Cols] used as y[Rows] = W x[Cols]. The memory behind it (usually a
/// memory-mapped checkpoint) belongs to whoever created the view and must outlive it.
/// </summary>
public abstract class LinearWeight(int rows, int cols)
{
    public int Rows { get; } = rows;
    public int Cols { get; } = cols;

    /// <summary>Bytes this matrix occupies in memory (what one matvec streams).</summary>
    public abstract long ByteSize { get; }
}

/// <summary>Dense row-major matrix in F32, F16 or BF16: Data points at Rows*Cols elements.</summary>
public sealed class DenseWeight(nint data, int rows, int cols, ScalarType type) : LinearWeight(rows, cols)
{
    public nint Data { get; } = data;
    public ScalarType Type { get; } = type;
    public override long ByteSize => (long)Rows * Cols * Scalars.SizeOf(Type);
}

/// <summary>
/// MLX affine-quantized matrix. Packed: uint32 [Rows, Cols*Bits/32], each row an LSB-first
/// bitstream (element i at stream bits [i*Bits, (i+1)*Bits), word j bit b = stream bit 32j+b).
/// Scales and Biases: [Rows, Cols/GroupSize] in ScaleType. w = scale*q + bias.
/// </summary>
public sealed class QuantizedWeight(
    nint packed, nint scales, nint biases, int rows, int cols, int bits, int groupSize, ScalarType scaleType)
    : LinearWeight(rows, cols)
{
    public nint Packed { get; } = packed;
    public nint Scales { get; } = scales;
    public nint Biases { get; } = biases;
    public int Bits { get; } = bits;
    public int GroupSize { get; } = groupSize;
    public ScalarType ScaleType { get; } = scaleType;
    public int WordsPerRow => Cols * Bits / 32;
    public int GroupsPerRow => Cols / GroupSize;

    public override long ByteSize =>
        (long)Rows * WordsPerRow * 4 + 2L * Rows * GroupsPerRow * Scalars.SizeOf(ScaleType);
}

/// <summary>Conversions between f32 and the 16-bit checkpoint types.</summary>
public static class Scalars
{
    public static int SizeOf(ScalarType type) => type == ScalarType.F32 ? 4 : 2;

    public static float Bf16ToFloat(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>Round to nearest even, as MLX and PyTorch do; NaN stays NaN.</summary>
    public static ushort FloatToBf16(float value)
    {
        uint u = BitConverter.SingleToUInt32Bits(value);
        if ((u & 0x7FFFFFFF) > 0x7F800000)
            return (ushort)((u >> 16) | 0x40);
        uint rounding = 0x7FFF + ((u >> 16) & 1);
        return (ushort)((u + rounding) >> 16);
    }

    public static float RoundToBf16(float value) => Bf16ToFloat(FloatToBf16(value));

    public static float F16ToFloat(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    public static ushort FloatToF16(float value) => BitConverter.HalfToUInt16Bits((Half)value);

    /// <summary>Reads element <paramref name="index"/> of a buffer of <paramref name="type"/> as f32.</summary>
    public static unsafe float Load(nint data, long index, ScalarType type) => type switch
    {
        ScalarType.F32 => ((float*)data)[index],
        ScalarType.BF16 => Bf16ToFloat(((ushort*)data)[index]),
        _ => F16ToFloat(((ushort*)data)[index]),
    };
}
