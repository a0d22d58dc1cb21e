using System.Text;

namespace Pipeline.Model.TestModels;

/// <summary>How a generated weight is drawn (the same for both layouts).</summary>
public enum WeightInit
{
    /// <summary>Approximately N(0, 9/in): embeddings are scaled by sqrt(hidden) in the forward, as in tiny-a.</summary>
    Embedding,

    /// <summary>Approximately N(0, 1/in).</summary>
    Projection,

    /// <summary>U(0.5, 1.5): RMSNorm weights.</summary>
    Norm,

    /// <summary>U(0.3, 1.0): q_norm and k_norm weights.</summary>
    QkNorm,

    /// <summary>U(0.5, 1.5): the per-layer output scalar.</summary>
    LayerScalar,
}

/// <summary>
/// Deterministic random weights. Every row has its own SplitMix64 stream seeded from (seed, tensor
/// path, row), so the values do not depend on block size, thread count or checkpoint layout.
/// Normal values are Irwin-Hall sums of four uniforms (unit variance, bounded by ±3.46 sigma):
/// cheap, and the shape of the tails does not matter for a test model.
/// </summary>
public static class WeightRandom
{
    /// <summary>Fills one row with f32 values already rounded to bf16 (the checkpoint's source precision).</summary>
    public static void FillRow(Span<float> row, ulong seed, string path, long rowIndex, WeightInit init, int cols)
    {
        ulong state = RowSeed(seed, path, rowIndex);
        switch (init)
        {
            case WeightInit.Embedding:
            case WeightInit.Projection:
                float std = (init == WeightInit.Embedding ? 3f : 1f) / MathF.Sqrt(cols);
                float unit = std * MathF.Sqrt(3f) / 65536f; // four 16-bit uniforms summed, centred, scaled
                for (int i = 0; i < row.Length; i++)
                {
                    ulong r = Next(ref state);
                    int sum = (int)(r & 0xFFFF) + (int)((r >> 16) & 0xFFFF) + (int)((r >> 32) & 0xFFFF) + (int)(r >> 48);
                    row[i] = RoundToBf16((sum - 131070) * unit);
                }
                break;
            default:
                var (low, high) = init == WeightInit.QkNorm ? (0.3f, 1.0f) : (0.5f, 1.5f);
                for (int i = 0; i < row.Length; i++)
                    row[i] = RoundToBf16(low + (high - low) * ((Next(ref state) >> 40) * (1f / (1 << 24))));
                break;
        }
    }

    /// <summary>Round to nearest even bf16, as <see cref="Kernels.Scalars.FloatToBf16"/> does for finite values (all of ours).</summary>
    private static float RoundToBf16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        bits += 0x7FFF + ((bits >> 16) & 1);
        return BitConverter.UInt32BitsToSingle(bits & 0xFFFF0000);
    }

    private static ulong RowSeed(ulong seed, string path, long row)
    {
        ulong state = seed ^ Fnv1a(path);
        ulong mixed = Next(ref state) ^ (ulong)row * 0xD1B54A32D192ED03UL;
        return Next(ref mixed);
    }

    private static ulong Next(ref ulong state)
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    private static ulong Fnv1a(string text)
    {
        ulong hash = 0xCBF29CE484222325UL;
        foreach (byte b in Encoding.UTF8.GetBytes(text))
            hash = (hash ^ b) * 0x100000001B3UL;
        return hash;
    }
}
