using System.Buffers;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Pipeline.Kernels.Quantization;

/// <summary>
/// Vectorized twin of <see cref="MlxAffine.QuantizeRows"/> with identical output: the same f32
/// operations (min, max, division, round half to even, clamp) per lane, and one 64-bit accumulator
/// for packing. Used where many gigabytes are quantized (the test-model generator).
/// </summary>
public static class MlxAffineFast
{
    /// <summary>Same contract and bytes as <see cref="MlxAffine.QuantizeRows"/>.</summary>
    public static void QuantizeRows(
        ReadOnlySpan<float> weights, int cols, int bits, int groupSize, ScalarType scaleType,
        Span<uint> packed, Span<byte> scales, Span<byte> biases)
    {
        int rows = MlxAffine.ValidateRows(weights.Length, cols, bits, groupSize, scaleType, packed.Length, scales.Length, biases.Length);
        if (groupSize % Vector<float>.Count != 0)
        {
            MlxAffine.QuantizeRows(weights, cols, bits, groupSize, scaleType, packed, scales, biases);
            return;
        }
        int[] codes = ArrayPool<int>.Shared.Rent(cols); // one row of codes; pooled, as rows reach 86 KB
        try
        {
            QuantizeRows(weights, rows, cols, bits, groupSize, scaleType, packed, scales, biases, codes);
        }
        finally
        {
            ArrayPool<int>.Shared.Return(codes);
        }
    }

    private static void QuantizeRows(
        ReadOnlySpan<float> weights, int rows, int cols, int bits, int groupSize, ScalarType scaleType,
        Span<uint> packed, Span<byte> scales, Span<byte> biases, int[] codes)
    {
        int wordsPerRow = MlxQuantFormat.WordsPerRow(cols, bits);
        int groupsPerRow = cols / groupSize;
        float levels = (1 << bits) - 1;
        for (int r = 0; r < rows; r++)
        {
            var row = weights.Slice(r * cols, cols);
            for (int g = 0; g < groupsPerRow; g++)
            {
                var group = row.Slice(g * groupSize, groupSize);
                var (scale, bias) = GroupParameters(group, levels, r, g * groupSize);
                Quantize(group, scale, bias, levels, codes.AsSpan(g * groupSize, groupSize));
                long slot = (long)r * groupsPerRow + g;
                MlxAffine.StoreScalar(scales, slot, scale, scaleType);
                MlxAffine.StoreScalar(biases, slot, bias, scaleType);
            }
            Pack(codes.AsSpan(0, cols), bits, packed.Slice(r * wordsPerRow, wordsPerRow));
        }
    }

    private static (float Scale, float Bias) GroupParameters(ReadOnlySpan<float> group, float levels, int row, int firstColumn)
    {
        var values = MemoryMarshal.Cast<float, Vector<float>>(group);
        var min = new Vector<float>(float.PositiveInfinity);
        var max = new Vector<float>(float.NegativeInfinity);
        var nonFinite = Vector<float>.Zero; // v - v is 0 for finite v and NaN otherwise
        foreach (var v in values)
        {
            min = Vector.Min(min, v);
            max = Vector.Max(max, v);
            nonFinite += v - v;
        }
        if (!Vector.EqualsAll(nonFinite, Vector<float>.Zero))
        {
            for (int j = 0; j < group.Length; j++)
            {
                if (!float.IsFinite(group[j]))
                    throw MlxAffine.NonFinite(group[j], row, firstColumn + j);
            }
        }

        float lo = float.PositiveInfinity, hi = float.NegativeInfinity;
        for (int lane = 0; lane < Vector<float>.Count; lane++)
        {
            lo = MathF.Min(lo, min[lane]);
            hi = MathF.Max(hi, max[lane]);
        }
        return MlxAffine.GroupScaleAndBias(lo, hi, levels);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Quantize(ReadOnlySpan<float> group, float scale, float bias, float levels, Span<int> codes)
    {
        var values = MemoryMarshal.Cast<float, Vector<float>>(group);
        var output = MemoryMarshal.Cast<int, Vector<int>>(codes);
        var vScale = new Vector<float>(scale);
        var vBias = new Vector<float>(bias);
        var vLevels = new Vector<float>(levels);
        for (int i = 0; i < values.Length; i++)
        {
            var q = Vector.Round((values[i] - vBias) / vScale); // round half to even, like rint
            q = Vector.Min(Vector.Max(q, Vector<float>.Zero), vLevels);
            output[i] = Vector.ConvertToInt32(q);
        }
    }

    /// <summary>LSB-first bitstream: codes fill a 64-bit accumulator that spills whole 32-bit words.</summary>
    private static void Pack(ReadOnlySpan<int> codes, int bits, Span<uint> packedRow)
    {
        ulong pending = 0;
        int pendingBits = 0, word = 0;
        foreach (int code in codes)
        {
            pending |= (ulong)(uint)code << pendingBits;
            pendingBits += bits;
            if (pendingBits >= 32)
            {
                packedRow[word++] = (uint)pending;
                pending >>= 32;
                pendingBits -= 32;
            }
        }
    }
}
