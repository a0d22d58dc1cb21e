using System.Runtime.InteropServices;

namespace Pipeline.Kernels.Tests;

/// <summary>Random weights in native memory, in the checkpoint layouts; freed on Dispose.</summary>
internal sealed unsafe class TestWeights : IDisposable
{
    private readonly List<nint> _blocks = [];
    private readonly Random _random;

    public TestWeights(int seed) => _random = new Random(seed);

    public Random Random => _random;

    public QuantizedWeight Quantized(int rows, int cols, int bits, int groupSize, ScalarType scaleType = ScalarType.BF16)
    {
        int words = cols * bits / 32;
        int groups = cols / groupSize;
        nint packed = Alloc((long)rows * words * 4);
        _random.NextBytes(new Span<byte>((void*)packed, rows * words * 4));
        nint scales = Alloc((long)rows * groups * Scalars.SizeOf(scaleType));
        nint biases = Alloc((long)rows * groups * Scalars.SizeOf(scaleType));
        // Keep w = q*scale + bias roughly zero-mean with unit-ish spread.
        float spread = 2f / ((1 << bits) - 1);
        for (long i = 0; i < (long)rows * groups; i++)
        {
            float scale = spread * (0.5f + (float)_random.NextDouble());
            Store(scales, i, scaleType, scale);
            Store(biases, i, scaleType, -scale * ((1 << bits) - 1) / 2 + 0.1f * (float)(_random.NextDouble() - 0.5));
        }
        return new QuantizedWeight(packed, scales, biases, rows, cols, bits, groupSize, scaleType);
    }

    public DenseWeight Dense(int rows, int cols, ScalarType type, float spread = 1f)
    {
        nint data = Alloc((long)rows * cols * Scalars.SizeOf(type));
        for (long i = 0; i < (long)rows * cols; i++)
            Store(data, i, type, spread * (float)(_random.NextDouble() * 2 - 1));
        return new DenseWeight(data, rows, cols, type);
    }

    public float[] Floats(int n, float spread = 1f)
    {
        var values = new float[n];
        for (int i = 0; i < n; i++)
            values[i] = spread * (float)(_random.NextDouble() * 2 - 1);
        return values;
    }

    private static void Store(nint data, long index, ScalarType type, float value)
    {
        switch (type)
        {
            case ScalarType.F32:
                ((float*)data)[index] = value;
                break;
            case ScalarType.BF16:
                ((ushort*)data)[index] = Scalars.FloatToBf16(value);
                break;
            default:
                ((ushort*)data)[index] = Scalars.FloatToF16(value);
                break;
        }
    }

    private nint Alloc(long bytes)
    {
        nint block = (nint)NativeMemory.AllocZeroed((nuint)Math.Max(1, bytes));
        _blocks.Add(block);
        return block;
    }

    public void Dispose()
    {
        foreach (var block in _blocks)
            NativeMemory.Free((void*)block);
        _blocks.Clear();
    }
}
