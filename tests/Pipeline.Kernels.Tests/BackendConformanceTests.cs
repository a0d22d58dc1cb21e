using System.Runtime.Intrinsics;
using Pipeline.Kernels.Cpu;
using Pipeline.Kernels.Reference;

using Pipeline.Kernels.Testing;

namespace Pipeline.Kernels.Tests;

/// <summary>
/// Every CPU backend op against its reference twin on random shapes, including awkward ones:
/// dense rows that are not a multiple of the vector width, single-group quantized rows, 3-, 5- and
/// 6-bit codes straddling words, T = 1 (matvec path), T = 2-3 (int16 path where it applies) and
/// T &gt;= 4 (the <see cref="GemmKernels"/> GEMM, token and panel tails, more than one column block),
/// shapes below and above the threshold where work is split over threads.
/// Tolerances are stated per op next to each assertion.
/// </summary>
public abstract class BackendConformanceTests : IDisposable
{
    private readonly CpuBackend _cpu = new(threads: 2);
    private readonly ReferenceBackend _reference = new();
    private readonly RandomWeights _weights = new(seed: 1234, pageAligned: true);

    public virtual void Dispose()
    {
        _cpu.Dispose();
        _weights.Dispose();
        GC.SuppressFinalize(this);
    }

    public static TheoryData<int, int, int, int, int> QuantizedCases()
    {
        var data = new TheoryData<int, int, int, int, int>();
        foreach (int bits in new[] { 2, 3, 4, 5, 6, 8 })
        {
            data.Add(bits, 64, 1, 64, 1);      // one group per row, one row
            data.Add(bits, 32, 7, 96, 3);      // odd group count, small group
            data.Add(bits, 64, 300, 320, 1);   // multi-threaded matvec, 5 groups
            data.Add(bits, 128, 45, 256, 37);  // two token tiles, tail tile
        }
        data.Add(3, 64, 129, 192, 2);          // 3-bit rows of 18 words: codes cross words
        data.Add(4, 64, 2048, 64, 1);          // head-like: many short rows
        data.Add(2, 64, 300, 128, 8);          // GEMM: 8 decode rows of batched sessions, panels split over workers
        data.Add(3, 64, 50, 320, 70);          // GEMM: prefill, two column blocks, token and panel tails
        data.Add(3, 32, 133, 2112, 9);         // small-M: tiles of 5 + 4 tokens, several column blocks, rows past one row block
        data.Add(8, 128, 70, 1024, 16);        // small-M: two tiles of 8
        data.Add(2, 64, 40, 2176, 2);          // small-M (or split activations): 2 tokens
        return data;
    }

    [Theory]
    [MemberData(nameof(QuantizedCases))]
    public void Linear_Quantized(int bits, int groupSize, int rows, int cols, int tokens)
    {
        var weight = _weights.Quantized(rows, cols, bits, groupSize);
        CompareLinear(weight, tokens);
    }

    [Theory]
    [InlineData(ScalarType.BF16, 5, 37, 1)]
    [InlineData(ScalarType.BF16, 64, 100, 3)]
    [InlineData(ScalarType.BF16, 300, 129, 1)]
    [InlineData(ScalarType.BF16, 7, 83, 1)]      // decode bf16 dot: 32-wide steps, two 8-wide steps, scalar tail
    [InlineData(ScalarType.BF16, 40, 64, 35)]
    [InlineData(ScalarType.F16, 9, 23, 1)]
    [InlineData(ScalarType.F16, 260, 130, 4)]
    [InlineData(ScalarType.F32, 3, 1, 1)]
    [InlineData(ScalarType.F32, 257, 131, 1)]
    [InlineData(ScalarType.F32, 17, 45, 33)]
    [InlineData(ScalarType.BF16, 300, 1000, 8)]   // GEMM: several column blocks, cols not a multiple of 256
    [InlineData(ScalarType.F16, 23, 300, 13)]
    [InlineData(ScalarType.BF16, 131, 2053, 6)]   // small-M: column blocks, row tail of 5 columns
    [InlineData(ScalarType.F16, 50, 300, 27)]     // small-M for dense weights up to 32 tokens: four tiles
    [InlineData(ScalarType.BF16, 40, 8195, 8)]    // small-M: 3-row register tiles, two passes of 4 tokens, row blocks of 9 rows
    [InlineData(ScalarType.BF16, 20, 4099, 33)]   // past small-M (GEMM)
    public void Linear_Dense(ScalarType type, int rows, int cols, int tokens)
    {
        var weight = _weights.Dense(rows, cols, type, spread: 1f / MathF.Sqrt(cols));
        CompareLinear(weight, tokens);
    }

    [Fact]
    public void Linear_QuantizedWithF32AndF16Scales()
    {
        CompareLinear(_weights.Quantized(40, 128, 4, 64, ScalarType.F32), 1);
        CompareLinear(_weights.Quantized(40, 128, 8, 64, ScalarType.F32), 6);
        CompareLinear(_weights.Quantized(40, 128, 3, 32, ScalarType.F16), 2);
        CompareLinear(_weights.Quantized(40, 128, 2, 32, ScalarType.F16), 5);
    }

    private void CompareLinear(LinearWeight weight, int tokens)
    {
        var x = _weights.Floats(tokens * weight.Cols);
        var expected = BackendRuns.Linear(_reference, weight, x, tokens);
        var actual = BackendRuns.Linear(_cpu, weight, x, tokens);

        // Tolerance: f32 summation order only, so relative to sum |w||x| of each output.
        var dense = new float[weight.Rows * weight.Cols];
        for (int r = 0; r < weight.Rows; r++)
        {
            for (int c = 0; c < weight.Cols; c++)
                dense[r * weight.Cols + c] = ReferenceWeights.At(weight, r, c);
        }
        for (int t = 0; t < tokens; t++)
        {
            for (int r = 0; r < weight.Rows; r++)
            {
                double magnitude = 0;
                for (int c = 0; c < weight.Cols; c++)
                    magnitude += Math.Abs(dense[r * weight.Cols + c] * x[t * weight.Cols + c]);
                int i = t * weight.Rows + r;
                if (!(Math.Abs(expected[i] - actual[i]) <= 1e-5 * magnitude + 1e-6))
                    Assert.Fail($"token {t} row {r}: reference {expected[i]}, cpu {actual[i]} (sum|wx| {magnitude})");
            }
        }
    }

    [Theory]
    [InlineData(4, 64, 64, 1f)]
    [InlineData(3, 64, 192, 73.5f)]
    [InlineData(2, 32, 96, 0.5f)]
    [InlineData(8, 128, 128, 2f)]
    public void Embed_Quantized(int bits, int groupSize, int cols, float scale)
    {
        var table = _weights.Quantized(50, cols, bits, groupSize);
        CompareEmbed(table, [0, 49, 7, 7, 23], scale);
    }

    [Theory]
    [InlineData(ScalarType.BF16)]
    [InlineData(ScalarType.F16)]
    [InlineData(ScalarType.F32)]
    public void Embed_Dense(ScalarType type)
    {
        CompareEmbed(_weights.Dense(20, 37, type), [19, 0, 5], 8f);
    }

    private void CompareEmbed(LinearWeight table, int[] ids, float scale)
    {
        float[] Run(IBackend backend)
        {
            using var output = backend.Allocate((long)ids.Length * table.Cols);
            backend.Embed(table, ids, scale, output);
            return ReadAll(backend, output);
        }

        // Tolerance: q*scale is exact in f32 for bf16/f16 scales, so only the last rounding may differ.
        AssertClose(Run(_reference), Run(_cpu), (e, _) => 2e-7 * Math.Abs(e), "embed");
    }

    [Theory]
    [InlineData(1, 64, true)]
    [InlineData(3, 37, true)]
    [InlineData(96, 256, true)]
    [InlineData(12, 32, false)]
    [InlineData(700, 64, false)]
    public void RmsNorm(int rows, int dim, bool weighted)
    {
        var weight = weighted ? _weights.Dense(1, dim, ScalarType.BF16) : null;
        var x = _weights.Floats(rows * dim, spread: 3f);

        float[] Run(IBackend backend)
        {
            using var input = Upload(backend, x);
            using var output = backend.Allocate(x.Length);
            backend.RmsNorm(input, output, weight, rows, dim, 1e-6f);
            // In place must give the same.
            backend.RmsNorm(input, input, weight, rows, dim, 1e-6f);
            var inPlace = ReadAll(backend, input);
            var result = ReadAll(backend, output);
            Assert.Equal(result, inPlace);
            return result;
        }

        // Tolerance: one rsqrt and a sum of squares in f32.
        AssertClose(Run(_reference), Run(_cpu), (e, _) => 2e-6 * Math.Abs(e) + 1e-7, "rmsnorm");
    }

    [Theory]
    [InlineData(1, 4, 32, 0.0, 7)]
    [InlineData(5, 2, 64, 0.25, 100000)]
    [InlineData(70, 8, 256, 0.0, 3)]
    [InlineData(3, 1, 6, 0.0, 1)]
    public void Rope(int tokens, int heads, int headDim, double partial, int firstPosition)
    {
        int half = headDim / 2;
        var inverse = new float[half];
        int rotated = partial == 0 ? half : (int)(partial * headDim / 2);
        for (int i = 0; i < half; i++)
            inverse[i] = i < rotated ? (float)Math.Pow(10000.0, -2.0 * i / headDim) : 0f;
        var x = _weights.Floats(tokens * heads * headDim);
        var positions = Enumerable.Range(0, tokens).Select(t => firstPosition + 3 * t).ToArray();

        float[] Run(IBackend backend)
        {
            using var data = Upload(backend, x);
            using var frequencies = Upload(backend, inverse);
            backend.Rope(data, positions, heads, headDim, frequencies);
            return ReadAll(backend, data);
        }

        var expected = Run(_reference);
        // Tolerance: angles are computed in double by both; the rotation itself is f32.
        AssertClose(expected, Run(_cpu), (_, _) => 1e-6, "rope");
        // Dims with a zero frequency pass unchanged.
        for (int t = 0; t < tokens; t++)
        {
            for (int h = 0; h < heads; h++)
            {
                for (int j = rotated; j < half; j++)
                {
                    int i = (t * heads + h) * headDim + j;
                    Assert.Equal(x[i], expected[i]);
                    Assert.Equal(x[i + half], expected[i + half]);
                }
            }
        }
    }

    public static TheoryData<int, int, int, int, int, int, int> AttentionCases() => new()
    {
        // heads, kvHeads, headDim, window, capacity, start, tokens
        { 4, 2, 32, 0, 64, 0, 1 },     // first token
        { 4, 2, 32, 0, 64, 40, 1 },    // decode, full layer
        { 8, 1, 64, 0, 64, 20, 9 },    // prefill block on a partly filled cache, GQA 8
        { 4, 2, 32, 16, 16, 53, 1 },   // decode on a wrapped ring
        { 4, 2, 32, 16, 16, 37, 5 },   // block on a wrapped ring
        { 4, 2, 32, 16, 16, 30, 40 },  // block longer than the window and the ring
        { 4, 4, 24, 16, 20, 70, 3 },   // ring larger than the window (truncation reserve)
        { 32, 16, 256, 0, 8, 0, 7 },   // 31B sliding shape, empty cache
        { 2, 2, 40, 5, 5, 0, 12 },     // window larger than nothing cached
    };

    [Theory]
    [MemberData(nameof(AttentionCases))]
    public void Attention(int heads, int kvHeads, int headDim, int window, int capacity, int start, int tokens)
    {
        CompareAttention(new AttentionShape(heads, kvHeads, headDim, window, 1f), capacity, start, tokens, []);
    }

    [Fact]
    public void Attention_BidirectionalRanges()
    {
        var shape = new AttentionShape(4, 2, 16, 0, 1f);
        CompareAttention(shape, 64, 10, 12, [new TokenRange(2, 6), new TokenRange(8, 12)]);
        CompareAttention(shape with { Window = 8 }, 8, 30, 12, [new TokenRange(0, 12)]);
    }

    private void CompareAttention(AttentionShape shape, int capacity, int start, int tokens, TokenRange[] ranges)
    {
        int kvWidth = shape.KvWidth;
        var q = _weights.Floats(tokens * shape.QueryWidth);
        var blockK = _weights.Floats(tokens * kvWidth);
        var blockV = _weights.Floats(tokens * kvWidth);
        var cacheK = _weights.Floats(capacity * kvWidth);
        var cacheV = _weights.Floats(capacity * kvWidth);

        float[] Run(IBackend backend)
        {
            using var queries = Upload(backend, q);
            using var keys = Upload(backend, blockK);
            using var values = Upload(backend, blockV);
            using var ck = Upload(backend, cacheK);
            using var cv = Upload(backend, cacheV);
            using var output = backend.Allocate(q.Length);
            var cache = new KvStore(ck, cv, capacity);
            backend.Attention(queries, keys, values, cache, start, tokens, shape, output, ranges);
            backend.StoreKv(keys, values, cache, start, tokens, kvWidth);
            return [.. ReadAll(backend, output), .. ReadAll(backend, ck), .. ReadAll(backend, cv)];
        }

        // Tolerance: f32 dot products of length headDim and an f32 softmax; outputs are O(1).
        AssertClose(Run(_reference), Run(_cpu), (_, _) => 2e-5, "attention (then cache contents)");
    }

    /// <summary>The ring protocol itself: attention over a window-sized ring equals attention over the whole history.</summary>
    [Fact]
    public void Attention_RingOfWindowEqualsLinearHistory()
    {
        var shape = new AttentionShape(4, 2, 8, Window: 6, Scale: 1f);
        int total = 40, kvWidth = shape.KvWidth;
        var keys = _weights.Floats(total * kvWidth);
        var values = _weights.Floats(total * kvWidth);
        var queries = _weights.Floats(total * shape.QueryWidth);

        float[] Run(IBackend backend, int capacity, int[] blocks)
        {
            using var k = Upload(backend, keys);
            using var v = Upload(backend, values);
            using var q = Upload(backend, queries);
            using var ck = backend.Allocate((long)capacity * kvWidth);
            using var cv = backend.Allocate((long)capacity * kvWidth);
            using var output = backend.Allocate(queries.Length);
            var cache = new KvStore(ck, cv, capacity);
            int start = 0;
            foreach (int n in blocks)
            {
                backend.Attention(q.Slice(start * shape.QueryWidth, n * shape.QueryWidth), k.Slice(start * kvWidth, n * kvWidth),
                    v.Slice(start * kvWidth, n * kvWidth), cache, start, n, shape, output.Slice(start * shape.QueryWidth, n * shape.QueryWidth), []);
                backend.StoreKv(k.Slice(start * kvWidth, n * kvWidth), v.Slice(start * kvWidth, n * kvWidth), cache, start, n, kvWidth);
                start += n;
            }
            return ReadAll(backend, output);
        }

        var linear = Run(_reference, total, [total]);
        AssertClose(linear, Run(_reference, 6, [3, 1, 10, 1, 1, 24]), (_, _) => 1e-6, "reference ring");
        AssertClose(linear, Run(_cpu, 6, [3, 1, 10, 1, 1, 24]), (_, _) => 2e-5, "cpu ring");
        AssertClose(linear, Run(_cpu, 9, Enumerable.Repeat(1, total).ToArray()), (_, _) => 2e-5, "cpu ring token by token");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(13)]
    [InlineData(100_003)]
    public void Elementwise(int n)
    {
        var a = _weights.Floats(n, spread: 8f);
        var b = _weights.Floats(n, spread: 2f);
        a[0] = 40f;   // saturated tanh / large GELU inputs
        if (n > 1)
            a[1] = -40f;

        float[] Run(IBackend backend, Action<IBackend, DeviceBuffer, DeviceBuffer, DeviceBuffer> op)
        {
            using var x = Upload(backend, a);
            using var y = Upload(backend, b);
            using var output = backend.Allocate(n);
            op(backend, x, y, output);
            return ReadAll(backend, output);
        }

        // GeGLU: exp-based tanh, relative 1e-5.
        Action<IBackend, DeviceBuffer, DeviceBuffer, DeviceBuffer> geglu = (k, x, y, o) => k.GeGlu(x, y, o);
        AssertClose(Run(_reference, geglu), Run(_cpu, geglu), (e, _) => 1e-5 * Math.Abs(e) + 1e-6, "geglu");
        // Add: exact.
        Action<IBackend, DeviceBuffer, DeviceBuffer, DeviceBuffer> add = (k, x, y, o) => k.Add(x, y, o);
        AssertClose(Run(_reference, add), Run(_cpu, add), (_, _) => 0, "add");
        // Scale: exact.
        Action<IBackend, DeviceBuffer, DeviceBuffer, DeviceBuffer> scale = (k, x, y, o) => { k.Copy(x, o); k.Scale(o, 0.7f); };
        AssertClose(Run(_reference, scale), Run(_cpu, scale), (_, _) => 0, "scale");
        // Softcap 30: absolute 1e-5 * cap (1 - 2/(e^2z + 1) loses relative precision near 0).
        Action<IBackend, DeviceBuffer, DeviceBuffer, DeviceBuffer> softcap = (k, x, y, o) => { k.Copy(x, o); k.Softcap(o, 30f); };
        AssertClose(Run(_reference, softcap), Run(_cpu, softcap), (_, _) => 3e-4, "softcap");
    }

    [Fact]
    public void BadShapes_AreRejectedWithClearMessages()
    {
        var weight = _weights.Dense(4, 8, ScalarType.F32);
        using var x = _cpu.Allocate(8);
        using var y = _cpu.Allocate(3);
        var e = Assert.Throws<ArgumentException>(() => _cpu.Linear(weight, x, y, 1));
        Assert.Contains("output has 3 elements, expected 4", e.Message);
        using var foreign = _reference.Allocate(4);
        Assert.Throws<ArgumentException>(() => _cpu.Linear(weight, x, foreign, 1));
        var table = _weights.Dense(10, 8, ScalarType.BF16);
        var idError = Assert.Throws<ArgumentOutOfRangeException>(() => _cpu.Embed(table, [3, 10], 1f, x.Slice(0, 8)));
        Assert.Contains("token id 10", idError.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => x.Slice(4, 5));
        // Groups of 16 are not an MLX group size; the kernels refuse them rather than misread them.
        var oddGroups = _weights.Quantized(4, 32, 4, 16);
        using var wide = _cpu.Allocate(32);
        Assert.Contains("unsupported quantized geometry: 4-bit, group 16", Assert.Throws<ArgumentException>(() => _cpu.Linear(oddGroups, wide, x.Slice(0, 4), 1)).Message);
        Assert.Contains("group 16", Assert.Throws<ArgumentException>(() => _cpu.Embed(oddGroups, [1], 1f, wide)).Message);
    }

    private static DeviceBuffer Upload(IBackend backend, float[] values)
    {
        var buffer = backend.Allocate(values.Length);
        backend.Write(buffer, values);
        return buffer;
    }

    private static float[] ReadAll(IBackend backend, BufferSlice slice)
    {
        var result = new float[slice.Length];
        backend.Read(slice, result);
        return result;
    }

    private static void AssertClose(float[] expected, float[] actual, Func<double, double, double> tolerance, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            double allowed = tolerance(expected[i], actual[i]);
            if (!(Math.Abs(expected[i] - actual[i]) <= allowed))
                Assert.Fail($"{what}[{i}]: reference {expected[i]}, cpu {actual[i]}, allowed {allowed}");
        }
    }
}

/// <summary>The CPU backend on the path it picks at startup (AVX2 here); not while another test switches paths.</summary>
[Collection(nameof(ScalarKernelCollection))]
public sealed class CpuVectorConformanceTests : BackendConformanceTests
{
    [Fact]
    public void FastestPathIsTheDefault()
    {
        var expected = System.Runtime.Intrinsics.X86.Avx2.IsSupported ? CpuIsa.Avx2
            : Vector512.IsHardwareAccelerated ? CpuIsa.Vector512
            : Vector256.IsHardwareAccelerated ? CpuIsa.Vector256
            : Vector128.IsHardwareAccelerated ? CpuIsa.Vector128
            : CpuIsa.Scalar;
        Assert.Equal(expected, CpuKernels.DefaultIsa);
        Assert.Equal(CpuKernels.ParseIsa(Environment.GetEnvironmentVariable(CpuKernels.IsaVariable)), CpuKernels.Isa);
    }
}

[CollectionDefinition(nameof(ScalarKernelCollection), DisableParallelization = true)]
public sealed class ScalarKernelCollection;

/// <summary>
/// The conformance cases with one path forced process-wide (so run alone, in the non-parallel
/// collection), then the startup path restored.
/// </summary>
[Collection(nameof(ScalarKernelCollection))]
public abstract class ForcedIsaConformanceTests : BackendConformanceTests
{
    private readonly CpuIsa _previous = CpuKernels.Isa;

    protected ForcedIsaConformanceTests(CpuIsa isa, int vectorBits)
    {
        CpuKernels.Isa = isa;
        Assert.Equal(vectorBits, CpuKernels.VectorBits);
    }

    public override void Dispose()
    {
        CpuKernels.Isa = _previous;
        base.Dispose();
    }
}

/// <summary>Portable Vector512: accelerated on AVX-512 machines, and on others run through .NET's software Vector512 so its code is tested everywhere.</summary>
public sealed class CpuVector512ConformanceTests() : ForcedIsaConformanceTests(CpuIsa.Vector512, 512);

/// <summary>Portable Vector256, including its decoding of 2/3/4-bit codes, which AVX2 machines otherwise skip.</summary>
public sealed class CpuVector256ConformanceTests() : ForcedIsaConformanceTests(CpuIsa.Vector256, 256);

/// <summary>Portable Vector128 (SSE here, AdvSimd on Arm64).</summary>
public sealed class CpuVector128ConformanceTests() : ForcedIsaConformanceTests(CpuIsa.Vector128, 128);

/// <summary>The scalar loops.</summary>
public sealed class CpuScalarConformanceTests() : ForcedIsaConformanceTests(CpuIsa.Scalar, 0);
