namespace Pipeline.Kernels.Reference;

/// <summary>Element-by-element reads of checkpoint weights, straight from the documented layouts.</summary>
public static class ReferenceWeights
{
    /// <summary>W[row, col] as f32: dense values converted, quantized ones as f32(q * scale) + bias.</summary>
    public static float At(LinearWeight weight, int row, int col)
    {
        if ((uint)row >= (uint)weight.Rows || (uint)col >= (uint)weight.Cols)
            throw new ArgumentOutOfRangeException(nameof(row), $"[{row}, {col}] outside [{weight.Rows}, {weight.Cols}]");
        switch (weight)
        {
            case DenseWeight dense:
                return Scalars.Load(dense.Data, (long)row * dense.Cols + col, dense.Type);
            case QuantizedWeight q:
                long group = (long)row * q.GroupsPerRow + col / q.GroupSize;
                float scale = Scalars.Load(q.Scales, group, q.ScaleType);
                float bias = Scalars.Load(q.Biases, group, q.ScaleType);
                return Code(q, row, col) * scale + bias;
            default:
                throw new ArgumentException($"unknown weight kind {weight.GetType().Name}", nameof(weight));
        }
    }

    /// <summary>
    /// The unsigned code of element [row, col]: bits [col*Bits, (col+1)*Bits) of the row's LSB-first
    /// bitstream, where bit b of word j is stream bit 32j + b. A code may straddle two words.
    /// </summary>
    public static unsafe uint Code(QuantizedWeight weight, int row, int col)
    {
        uint* words = (uint*)weight.Packed + (long)row * weight.WordsPerRow;
        uint code = 0;
        for (int bit = 0; bit < weight.Bits; bit++)
        {
            long stream = (long)col * weight.Bits + bit;
            uint value = (words[stream / 32] >> (int)(stream % 32)) & 1;
            code |= value << bit;
        }
        return code;
    }
}
