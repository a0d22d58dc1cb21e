using System.Runtime.InteropServices;

namespace Pipeline.Kernels.Testing;

/// <summary>
/// Shared by the kernel test projects (linked into each csproj).
/// Random weights in native memory in the checkpoint layouts, freed on Dispose. Tensors start
/// 2 bytes past a page boundary by default (like tensors inside a safetensors file, which forces
/// the copy fallback of the weight wrapper), or page-aligned (zero-copy path).
/// </summary>
internal sealed unsafe class RandomWeights(int seed, bool pageAligned = false) : IDisposable
{
    private readonly List<(nint Block, nuint Bytes)> _blocks = [];

    public Random Random { get; } = new(seed);

    public QuantizedWeight Quantized(int rows, int cols, int bits, int groupSize, ScalarType scaleType = ScalarType.BF16)
    {
        int words = cols * bits / 32, groups = cols / groupSize;
        nint packed = Alloc((long)rows * words * 4);
        Random.NextBytes(new Span<byte>((void*)packed, rows * words * 4));
        nint scales = Alloc((long)rows * groups * Scalars.SizeOf(scaleType));
        nint biases = Alloc((long)rows * groups * Scalars.SizeOf(scaleType));
        // w = q*scale + bias roughly zero-mean with unit-ish spread.
        float spread = 2f / ((1 << bits) - 1);
        for (long i = 0; i < (long)rows * groups; i++)
        {
            float scale = spread * (0.5f + (float)Random.NextDouble());
            Store(scales, i, scaleType, scale);
            Store(biases, i, scaleType, -scale * ((1 << bits) - 1) / 2 + 0.1f * (float)(Random.NextDouble() - 0.5));
        }
        return new QuantizedWeight(packed, scales, biases, rows, cols, bits, groupSize, scaleType);
    }

    public DenseWeight Dense(int rows, int cols, ScalarType type, float spread = 1f)
    {
        nint data = Alloc((long)rows * cols * Scalars.SizeOf(type));
        for (long i = 0; i < (long)rows * cols; i++)
            Store(data, i, type, spread * (float)(Random.NextDouble() * 2 - 1));
        return new DenseWeight(data, rows, cols, type);
    }

    public float[] Floats(int n, float spread = 1f)
    {
        var values = new float[n];
        for (int i = 0; i < n; i++)
            values[i] = spread * (float)(Random.NextDouble() * 2 - 1);
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
        nuint page = (nuint)Environment.SystemPageSize;
        nuint total = (nuint)Math.Max(1, bytes) + page;
        nint block = (nint)NativeMemory.AlignedAlloc(total, page);
        NativeMemory.Clear((void*)block, total);
        _blocks.Add((block, total));
        return pageAligned ? block : block + 2;
    }

    public void Dispose()
    {
        foreach (var (block, _) in _blocks)
            NativeMemory.AlignedFree((void*)block);
        _blocks.Clear();
    }
}
