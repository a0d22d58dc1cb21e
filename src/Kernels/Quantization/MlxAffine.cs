using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace Pipeline.Kernels.Quantization;

/// <summary>
/// MLX "affine" quantization, reference implementation: packing, quantize and dequantize written
/// plainly so that fast kernels can be checked against it.
/// <para>
/// Quantize follows MLX's CPU quantizer exactly: each group is read as f32 (bf16/f16 inputs widen
/// exactly), n = 2^bits-1, scale = max((max-min)/n, 1e-7); the edge with the larger magnitude is
/// made exactly representable (q0 = rint(edge/scale), scale = edge/q0, bias = edge, or bias 0 when
/// q0 is 0), codes use the f32 scale and bias, and only the stored scale and bias are rounded to the
/// checkpoint type. Dequantize uses the stored values: w = f32(q*scale) + bias.
/// </para>
/// </summary>
public static class MlxAffine
{
    /// <summary>Code <paramref name="index"/> of an LSB-first packed row (may span two words).</summary>
    public static uint GetCode(ReadOnlySpan<uint> packedRow, int index, int bits)
    {
        long bit = (long)index * bits;
        int word = (int)(bit >> 5);
        int shift = (int)(bit & 31);
        ulong window = packedRow[word];
        if (shift + bits > 32)
            window |= (ulong)packedRow[word + 1] << 32;
        return (uint)(window >> shift) & Mask(bits);
    }

    /// <summary>Packs <paramref name="codes"/> (each &lt; 2^bits) into an LSB-first bitstream of whole words.</summary>
    public static void PackRow(ReadOnlySpan<uint> codes, int bits, Span<uint> packedRow)
    {
        RequireBits(bits);
        RequirePackedLength(codes.Length, bits, packedRow.Length);
        packedRow.Clear();
        uint mask = Mask(bits);
        for (int i = 0; i < codes.Length; i++)
        {
            uint code = codes[i];
            if (code > mask)
                throw new ArgumentOutOfRangeException(
                    nameof(codes), $"code {code} at index {i} does not fit in {bits} bits");
            long bit = (long)i * bits;
            int word = (int)(bit >> 5);
            int shift = (int)(bit & 31);
            packedRow[word] |= code << shift;
            if (shift + bits > 32)
                packedRow[word + 1] |= code >> (32 - shift);
        }
    }

    /// <summary>Unpacks every code of a packed row; <paramref name="codes"/>.Length is the row length.</summary>
    public static void UnpackRow(ReadOnlySpan<uint> packedRow, int bits, Span<uint> codes)
    {
        RequireBits(bits);
        RequirePackedLength(codes.Length, bits, packedRow.Length);
        for (int i = 0; i < codes.Length; i++)
            codes[i] = GetCode(packedRow, i, bits);
    }

    /// <summary>Quantizes a row-major matrix [rows, cols] into newly allocated arrays.</summary>
    public static QuantizedTensor Quantize(
        ReadOnlySpan<float> weights, int rows, int cols, int bits, int groupSize, ScalarType scaleType)
    {
        RequireShape(rows, cols, bits, groupSize);
        if (weights.Length != (long)rows * cols)
            throw new ArgumentException(
                $"weights hold {weights.Length} values, expected rows {rows} x cols {cols}", nameof(weights));
        var packed = new uint[(long)rows * MlxQuantFormat.WordsPerRow(cols, bits)];
        long groups = (long)rows * (cols / groupSize);
        var scales = new byte[groups * Scalars.SizeOf(scaleType)];
        var biases = new byte[groups * Scalars.SizeOf(scaleType)];
        QuantizeRows(weights, cols, bits, groupSize, scaleType, packed, scales, biases);
        return new QuantizedTensor(packed, scales, biases, rows, cols, bits, groupSize, scaleType);
    }

    /// <summary>
    /// Quantizes whole rows of <paramref name="weights"/> ([rows, cols], rows = Length/cols) into the
    /// caller's buffers: packed [rows, cols*bits/32], scales and biases [rows, cols/groupSize] as
    /// little-endian <paramref name="scaleType"/> bytes. Lets a writer stream a block of rows at a time.
    /// </summary>
    public static void QuantizeRows(
        ReadOnlySpan<float> weights, int cols, int bits, int groupSize, ScalarType scaleType,
        Span<uint> packed, Span<byte> scales, Span<byte> biases)
    {
        int rows = ValidateRows(weights.Length, cols, bits, groupSize, scaleType, packed.Length, scales.Length, biases.Length);
        int wordsPerRow = MlxQuantFormat.WordsPerRow(cols, bits);
        int groupsPerRow = cols / groupSize;

        Span<uint> codes = cols <= 4096 ? stackalloc uint[cols] : new uint[cols];
        for (int r = 0; r < rows; r++)
        {
            var row = weights.Slice(r * cols, cols);
            for (int g = 0; g < groupsPerRow; g++)
            {
                var (scale, bias) = QuantizeGroup(
                    row.Slice(g * groupSize, groupSize), bits, codes.Slice(g * groupSize, groupSize), r, g);
                long slot = (long)r * groupsPerRow + g;
                StoreScalar(scales, slot, scale, scaleType);
                StoreScalar(biases, slot, bias, scaleType);
            }
            PackRow(codes, bits, packed.Slice(r * wordsPerRow, wordsPerRow));
        }
    }

    /// <summary>Reference dequantization of one row: w = f32(q*scale) + bias with the stored scale and bias.</summary>
    public static unsafe void DequantizeRow(QuantizedWeight w, int row, Span<float> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(row);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(row, w.Rows);
        int scaleSize = Scalars.SizeOf(w.ScaleType);
        var packedRow = new ReadOnlySpan<uint>((uint*)w.Packed + (long)row * w.WordsPerRow, w.WordsPerRow);
        long groupOffset = (long)row * w.GroupsPerRow * scaleSize;
        var scales = new ReadOnlySpan<byte>((byte*)w.Scales + groupOffset, w.GroupsPerRow * scaleSize);
        var biases = new ReadOnlySpan<byte>((byte*)w.Biases + groupOffset, w.GroupsPerRow * scaleSize);
        DequantizeRow(packedRow, scales, biases, w.Cols, w.Bits, w.GroupSize, w.ScaleType, destination);
    }

    /// <summary>Reference dequantization of row <paramref name="row"/> of a quantized tensor.</summary>
    public static void DequantizeRow(QuantizedTensor t, int row, Span<float> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(row);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(row, t.Rows);
        int words = MlxQuantFormat.WordsPerRow(t.Cols, t.Bits);
        int groupBytes = t.Cols / t.GroupSize * Scalars.SizeOf(t.ScaleType);
        DequantizeRow(
            t.Packed.AsSpan(row * words, words),
            t.Scales.AsSpan(row * groupBytes, groupBytes),
            t.Biases.AsSpan(row * groupBytes, groupBytes),
            t.Cols, t.Bits, t.GroupSize, t.ScaleType, destination);
    }

    /// <summary>Reference dequantization of one row given its packed words and its scales and biases bytes.</summary>
    public static void DequantizeRow(
        ReadOnlySpan<uint> packedRow, ReadOnlySpan<byte> scalesRow, ReadOnlySpan<byte> biasesRow,
        int cols, int bits, int groupSize, ScalarType scaleType, Span<float> destination)
    {
        RequireShape(1, cols, bits, groupSize);
        RequireLength(nameof(packedRow), packedRow.Length, MlxQuantFormat.WordsPerRow(cols, bits));
        long groupBytes = (long)(cols / groupSize) * Scalars.SizeOf(scaleType);
        RequireLength(nameof(scalesRow), scalesRow.Length, groupBytes);
        RequireLength(nameof(biasesRow), biasesRow.Length, groupBytes);
        RequireLength(nameof(destination), destination.Length, cols);
        for (int g = 0; g < cols / groupSize; g++)
        {
            float scale = LoadScalar(scalesRow, g, scaleType);
            float bias = LoadScalar(biasesRow, g, scaleType);
            for (int i = g * groupSize; i < (g + 1) * groupSize; i++)
            {
                float scaled = GetCode(packedRow, i, bits) * scale; // rounded to f32 before the bias is added
                destination[i] = scaled + bias;
            }
        }
    }

    /// <summary>
    /// One group: writes its codes and returns the f32 scale and bias (before rounding to the
    /// checkpoint type). <paramref name="row"/> and <paramref name="group"/> only name bad input.
    /// </summary>
    private static (float Scale, float Bias) QuantizeGroup(
        ReadOnlySpan<float> values, int bits, Span<uint> codes, int row, int group)
    {
        float levels = (1 << bits) - 1;
        float min = float.PositiveInfinity, max = float.NegativeInfinity;
        for (int j = 0; j < values.Length; j++)
        {
            float v = values[j];
            if (!float.IsFinite(v))
                throw NonFinite(v, row, group * values.Length + j);
            min = MathF.Min(min, v);
            max = MathF.Max(max, v);
        }

        var (scale, bias) = GroupScaleAndBias(min, max, levels);
        for (int j = 0; j < values.Length; j++)
        {
            float q = MathF.Round((values[j] - bias) / scale);
            codes[j] = (uint)Math.Clamp(q, 0f, levels);
        }
        return (scale, bias);
    }

    /// <summary>
    /// MLX's group parameters from the group's min and max (f32 throughout): the edge with the larger
    /// magnitude becomes exactly representable as code 0 (bias = edge) unless it rounds to code 0
    /// itself, in which case the bias is 0.
    /// </summary>
    internal static (float Scale, float Bias) GroupScaleAndBias(float min, float max, float levels)
    {
        float scale = MathF.Max((max - min) / levels, 1e-7f);
        bool minIsEdge = MathF.Abs(min) > MathF.Abs(max);
        if (!minIsEdge)
            scale = -scale;
        float edge = minIsEdge ? min : max;
        float q0 = MathF.Round(edge / scale); // round half to even, like rint
        if (q0 == 0)
            return (scale, 0f);
        return (edge / q0, edge);
    }

    internal static ArgumentException NonFinite(float value, int row, int column) =>
        new($"weight {value} at row {row}, column {column} is not finite", "weights");

    /// <summary>Checks QuantizeRows' arguments; returns the row count.</summary>
    internal static int ValidateRows(
        int weights, int cols, int bits, int groupSize, ScalarType scaleType, int packed, int scales, int biases)
    {
        if (cols <= 0 || weights % cols != 0)
            throw new ArgumentException(
                $"weights hold {weights} values, not a whole number of rows of cols {cols}", nameof(weights));
        int rows = weights / cols;
        RequireShape(rows == 0 ? 1 : rows, cols, bits, groupSize);
        long groups = (long)rows * (cols / groupSize) * Scalars.SizeOf(scaleType);
        RequireLength(nameof(packed), packed, (long)rows * MlxQuantFormat.WordsPerRow(cols, bits));
        RequireLength(nameof(scales), scales, groups);
        RequireLength(nameof(biases), biases, groups);
        return rows;
    }

    private static uint Mask(int bits) => (1u << bits) - 1;

    internal static void StoreScalar(Span<byte> destination, long index, float value, ScalarType type)
    {
        switch (type)
        {
            case ScalarType.F32:
                BinaryPrimitives.WriteSingleLittleEndian(destination[(int)(index * 4)..], value);
                break;
            case ScalarType.BF16:
                BinaryPrimitives.WriteUInt16LittleEndian(destination[(int)(index * 2)..], Scalars.FloatToBf16(value));
                break;
            default:
                BinaryPrimitives.WriteUInt16LittleEndian(destination[(int)(index * 2)..], Scalars.FloatToF16(value));
                break;
        }
    }

    private static float LoadScalar(ReadOnlySpan<byte> source, int index, ScalarType type) => type switch
    {
        ScalarType.F32 => BinaryPrimitives.ReadSingleLittleEndian(source[(index * 4)..]),
        ScalarType.BF16 => Scalars.Bf16ToFloat(BinaryPrimitives.ReadUInt16LittleEndian(source[(index * 2)..])),
        _ => Scalars.F16ToFloat(BinaryPrimitives.ReadUInt16LittleEndian(source[(index * 2)..])),
    };

    private static void RequireBits(int bits)
    {
        if (!MlxQuantFormat.IsSupportedBits(bits))
            throw new ArgumentException(
                $"bits {bits} is not supported by MLX affine quantization (supported: {string.Join(", ", MlxQuantFormat.SupportedBits)})",
                nameof(bits));
    }

    private static void RequireShape(int rows, int cols, int bits, int groupSize)
    {
        RequireBits(bits);
        if (!MlxQuantFormat.IsSupportedGroupSize(groupSize))
            throw new ArgumentException(
                $"group size {groupSize} is not supported by MLX affine quantization (supported: {string.Join(", ", MlxQuantFormat.SupportedGroupSizes)})",
                nameof(groupSize));
        if (rows <= 0)
            throw new ArgumentException($"rows {rows} must be positive", nameof(rows));
        if (!MlxQuantFormat.RowFits(cols, bits, groupSize))
            throw new ArgumentException(
                $"cols {cols} is not a positive multiple of group size {groupSize} packing into whole 32-bit words at {bits} bits",
                nameof(cols));
    }

    private static void RequirePackedLength(int codes, int bits, int packedWords)
    {
        if ((long)codes * bits % 32 != 0)
            throw new ArgumentException($"{codes} codes of {bits} bits do not fill whole 32-bit words", nameof(codes));
        RequireLength("packedRow", packedWords, (long)codes * bits / 32);
    }

    private static void RequireLength(string name, long actual, long expected)
    {
        if (actual != expected)
            throw new ArgumentException($"{name} has length {actual}, expected {expected}", name);
    }
}

/// <summary>
/// A quantized matrix held in managed arrays (the quantizer's output). Packed: uint32 [Rows,
/// Cols*Bits/32]; Scales, Biases: little-endian ScaleType bytes [Rows, Cols/GroupSize].
/// </summary>
public sealed record QuantizedTensor(
    uint[] Packed, byte[] Scales, byte[] Biases, int Rows, int Cols, int Bits, int GroupSize, ScalarType ScaleType)
{
    /// <summary>The packed words as little-endian bytes, as a safetensors U32 tensor stores them.</summary>
    public ReadOnlySpan<byte> PackedBytes() => MemoryMarshal.AsBytes(Packed.AsSpan());
}
