using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using Pipeline.Kernels.Cpu;

namespace Pipeline.Kernels.Bench;

/// <summary>
/// Short jobs (the kernels take milliseconds, the machine is noisy) and a GB/s column: the bytes a
/// benchmark streams (its <see cref="IStreams.BytesPerOp"/>) over the mean time.
/// </summary>
public sealed class KernelConfig : ManualConfig
{
    public KernelConfig()
    {
        AddJob(Job.Default.WithWarmupCount(3).WithIterationCount(10).WithId("short"));
        AddColumn(new StreamedColumn());
    }
}

/// <summary>A benchmark that knows how many bytes one invocation reads (weights, caches).</summary>
public interface IStreams
{
    long BytesPerOp { get; }
}

public sealed class StreamedColumn : IColumn
{
    public string Id => nameof(StreamedColumn);
    public string ColumnName => "GB/s";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => "bytes streamed per op / mean time (1e9 B/s)";
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public bool IsAvailable(Summary summary) => true;
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var report = summary[benchmarkCase];
        if (report?.ResultStatistics is not { } stats || Activator.CreateInstance(benchmarkCase.Descriptor.Type) is not IStreams streams)
            return "-";
        foreach (var parameter in benchmarkCase.Parameters.Items)
            benchmarkCase.Descriptor.Type.GetProperty(parameter.Name)?.SetValue(streams, parameter.Value);
        return (streams.BytesPerOp / (stats.Mean * 1e-9) / 1e9).ToString("F2", System.Globalization.CultureInfo.InvariantCulture);
    }
}

/// <summary>Random bytes in native memory, freed with the benchmark.</summary>
internal sealed unsafe class NativeBlock : IDisposable
{
    public NativeBlock(long bytes, int seed, Func<Random, ushort>? halfs = null)
    {
        Pointer = (nint)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        var random = new Random(seed);
        var span = new Span<byte>((void*)Pointer, checked((int)bytes));
        if (halfs is null)
        {
            random.NextBytes(span);
        }
        else
        {
            var values = MemoryMarshal.Cast<byte, ushort>(span);
            for (int i = 0; i < values.Length; i++)
                values[i] = halfs(random);
        }
    }

    public nint Pointer { get; }

    public void Dispose() => NativeMemory.AlignedFree((void*)Pointer);

    /// <summary>A finite bf16 of magnitude about 2^-7..2^-5 with a random sign.</summary>
    public static ushort SmallBf16(Random random) => Scalars.FloatToBf16((random.NextSingle() * 0.03f + 0.008f) * (random.Next(2) * 2 - 1));
}

/// <summary>Shapes of Gemma-4-31B's projections and the bit width each gets in UD-Q2_K_XL.</summary>
internal static class Shapes
{
    public const int Hidden = 5376;

    /// <summary>[rows, cols] of the matrix quantized at <paramref name="bits"/> in the 31B checkpoint (8-bit: no 31B tensor; hidden x hidden).</summary>
    public static (int Rows, int Cols, string Tensor) ForBits(int bits) => bits switch
    {
        2 => (21504, Hidden, "gate/up_proj"),
        3 => (Hidden, 21504, "down_proj"),
        4 => (8192, Hidden, "q_proj (sliding)"),
        8 => (Hidden, Hidden, "hidden x hidden"),
        _ => throw new ArgumentOutOfRangeException(nameof(bits), bits, "2, 3, 4 or 8"),
    };

    public static long QuantizedBytes(int bits)
    {
        var (rows, cols, _) = ForBits(bits);
        return (long)rows * cols * bits / 8 + 2L * 2 * rows * (cols / 64);
    }

    /// <summary>Random codes, small positive bf16 scales, small random biases: finite outputs of the real magnitude.</summary>
    public static QuantizedWeight Quantized(int bits, List<NativeBlock> keep)
    {
        var (rows, cols, _) = ForBits(bits);
        int groups = cols / 64;
        var packed = new NativeBlock((long)rows * cols * bits / 8, 1);
        var scales = new NativeBlock((long)rows * groups * 2, 2, r => Scalars.FloatToBf16(0.001f + r.NextSingle() * 0.001f));
        var biases = new NativeBlock((long)rows * groups * 2, 3, NativeBlock.SmallBf16);
        keep.AddRange([packed, scales, biases]);
        return new QuantizedWeight(packed.Pointer, scales.Pointer, biases.Pointer, rows, cols, bits, 64, ScalarType.BF16);
    }

    public static DenseWeight Bf16(int rows, int cols, List<NativeBlock> keep)
    {
        var data = new NativeBlock(2L * rows * cols, 4, NativeBlock.SmallBf16);
        keep.Add(data);
        return new DenseWeight(data.Pointer, rows, cols, ScalarType.BF16);
    }
}

/// <summary>Backend, native blocks and buffers of one benchmark, freed in cleanup.</summary>
public abstract class KernelBenchmark : IDisposable
{
    private protected readonly List<NativeBlock> Blocks = [];
    private protected readonly List<DeviceBuffer> Buffers = [];
    private protected CpuBackend Backend = null!;

    [Params(1, 2)]
    public int Threads { get; set; }

    private protected void Start() => Backend = new CpuBackend(Threads);

    /// <summary>A buffer of <paramref name="elements"/> values sin(i) (never all zero).</summary>
    private protected DeviceBuffer Filled(long elements)
    {
        var buffer = Backend.Allocate(elements);
        var values = new float[elements];
        for (long i = 0; i < elements; i++)
            values[i] = MathF.Sin(i * 0.37f);
        Backend.Write(buffer, values);
        Buffers.Add(buffer);
        return buffer;
    }

    [GlobalCleanup]
    public void Dispose()
    {
        foreach (var buffer in Buffers)
            buffer.Dispose();
        Buffers.Clear();
        Backend?.Dispose();
        foreach (var block in Blocks)
            block.Dispose();
        Blocks.Clear();
        GC.SuppressFinalize(this);
    }
}

/// <summary>Decode matvec (one token) over a 31B-shaped MLX affine matrix, per bit width.</summary>
[Config(typeof(KernelConfig))]
public class QuantizedMatVec : KernelBenchmark, IStreams
{
    private QuantizedWeight _weight = null!;
    private DeviceBuffer _x = null!, _y = null!;

    [Params(2, 3, 4, 8)]
    public int Bits { get; set; }

    public long BytesPerOp => Shapes.QuantizedBytes(Bits);

    [GlobalSetup]
    public void Setup()
    {
        Start();
        _weight = Shapes.Quantized(Bits, Blocks);
        _x = Filled(_weight.Cols);
        _y = Filled(_weight.Rows);
    }

    [Benchmark]
    public void MatVec() => Backend.Linear(_weight, _x, _y, 1);
}

/// <summary>Decode matvec over bf16 o_proj: [5376, 8192] on sliding layers, [5376, 16384] on full ones.</summary>
[Config(typeof(KernelConfig))]
public class Bf16MatVec : KernelBenchmark, IStreams
{
    private DenseWeight _weight = null!;
    private DeviceBuffer _x = null!, _y = null!;

    [Params(8192, 16384)]
    public int Cols { get; set; }

    public long BytesPerOp => 2L * Shapes.Hidden * Cols;

    [GlobalSetup]
    public void Setup()
    {
        Start();
        _weight = Shapes.Bf16(Shapes.Hidden, Cols, Blocks);
        _x = Filled(Cols);
        _y = Filled(Shapes.Hidden);
    }

    [Benchmark]
    public void MatVec() => Backend.Linear(_weight, _x, _y, 1);
}

/// <summary>Prefill matmul: a 128-token block through a 31B-shaped matrix (quantized per bit width; 16 = bf16 o_proj [5376, 8192]).</summary>
[Config(typeof(KernelConfig))]
public class PrefillMatMul : KernelBenchmark, IStreams
{
    private LinearWeight _weight = null!;
    private DeviceBuffer _x = null!, _y = null!;

    [Params(2, 3, 4, 16)]
    public int Bits { get; set; }

    [Params(128)]
    public int Tokens { get; set; }

    public long BytesPerOp => Bits == 16 ? 2L * Shapes.Hidden * 8192 : Shapes.QuantizedBytes(Bits);

    [GlobalSetup]
    public void Setup()
    {
        Start();
        _weight = Bits == 16 ? Shapes.Bf16(Shapes.Hidden, 8192, Blocks) : Shapes.Quantized(Bits, Blocks);
        _x = Filled((long)Tokens * _weight.Cols);
        _y = Filled((long)Tokens * _weight.Rows);
    }

    [Benchmark]
    public void MatMul() => Backend.Linear(_weight, _x, _y, Tokens);
}

/// <summary>
/// Attention of the 31B's layer kinds over a filled cache: sliding (32 heads, 16 KV heads of 256,
/// window 1024) and full (32 heads, 4 KV heads of 512), for one decode token or a 128-token prefill block.
/// </summary>
[Config(typeof(KernelConfig))]
public class Attention : KernelBenchmark, IStreams
{
    private DeviceBuffer _q = null!, _k = null!, _v = null!, _out = null!, _cacheK = null!, _cacheV = null!;
    private AttentionShape _shape;

    [Params(256, 512)]
    public int HeadDim { get; set; }

    [Params(1, 128)]
    public int Tokens { get; set; }

    /// <summary>Positions already cached.</summary>
    [Params(1024, 4096)]
    public int Context { get; set; }

    private int Capacity => HeadDim == 256 ? 1024 + 64 : Context + Tokens;

    public long BytesPerOp
    {
        get
        {
            int kvWidth = HeadDim == 256 ? 16 * 256 : 4 * 512;
            int seen = HeadDim == 256 ? Math.Min(Context + Tokens, 1024) : Context + Tokens;
            return 2L * 4 * seen * kvWidth;
        }
    }

    [GlobalSetup]
    public void Setup()
    {
        Start();
        _shape = HeadDim == 256 ? new AttentionShape(32, 16, 256, 1024, 1f) : new AttentionShape(32, 4, 512, 0, 1f);
        _q = Filled((long)Tokens * _shape.QueryWidth);
        _k = Filled((long)Tokens * _shape.KvWidth);
        _v = Filled((long)Tokens * _shape.KvWidth);
        _out = Filled((long)Tokens * _shape.QueryWidth);
        _cacheK = Filled((long)Capacity * _shape.KvWidth);
        _cacheV = Filled((long)Capacity * _shape.KvWidth);
    }

    [Benchmark]
    public void Attend() =>
        Backend.Attention(_q, _k, _v, new KvStore(_cacheK, _cacheV, Capacity), Context, Tokens, _shape, _out, []);
}
