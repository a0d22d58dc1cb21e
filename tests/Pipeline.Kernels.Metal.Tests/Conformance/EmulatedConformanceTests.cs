using Pipeline.Kernels.Metal.Tests.Emulation;

using Pipeline.Kernels.Testing;

namespace Pipeline.Kernels.Metal.Tests.Conformance;

/// <summary>
/// <see cref="MetalBackend"/> with every dispatch executed by the emulator (the .metal kernels
/// compiled as C++ and run with Metal's threadgroup/simdgroup semantics), against the reference
/// backend on random shapes with awkward tails and every bit width.
/// </summary>
public sealed class EmulatedConformanceTests : IDisposable
{
    private readonly EmulatedGpu _gpu = new();
    private readonly MetalBackend _metal;
    private readonly RandomWeights _weights = new(seed: 4321);

    public EmulatedConformanceTests() => _metal = new MetalBackend(_gpu);

    public void Dispose()
    {
        _metal.Dispose();
        _weights.Dispose();
    }

    public static TheoryData<int, int, int, int, int> QuantizedCases()
    {
        var data = new TheoryData<int, int, int, int, int>();
        foreach (int bits in new[] { 2, 3, 4, 5, 6, 8 })
        {
            data.Add(bits, 64, 1, 64, 1);       // one group, one row: 4 of 32 lanes busy
            data.Add(bits, 32, 7, 96, 3);       // odd group count, row tail, 3 tokens on qmv
            data.Add(bits, 64, 19, 1088, 1);    // two full 512-value blocks and a tail block
            data.Add(bits, 128, 45, 256, 37);   // simdgroup-matrix path: token and row tails
        }
        data.Add(3, 64, 129, 192, 2);           // 3-bit rows of 18 words: codes cross words
        data.Add(5, 32, 33, 160, 4);            // 5-bit on the matmul path, 1 token past a tile
        data.Add(6, 64, 8, 384, 1);             // exactly one qmv threadgroup
        return data;
    }

    [Theory]
    [MemberData(nameof(QuantizedCases))]
    public void Linear_Quantized(int bits, int groupSize, int rows, int cols, int tokens) =>
        ConformanceChecks.Linear(_metal, _weights, _weights.Quantized(rows, cols, bits, groupSize), tokens);

    [Theory]
    [InlineData(ScalarType.F32, 4, 128, 1)]
    [InlineData(ScalarType.F16, 2, 64, 5)]
    public void Linear_QuantizedScaleTypes(ScalarType scaleType, int bits, int cols, int tokens) =>
        ConformanceChecks.Linear(_metal, _weights, _weights.Quantized(40, cols, bits, 64, scaleType), tokens);

    [Theory]
    [InlineData(ScalarType.BF16, 5, 37, 1)]
    [InlineData(ScalarType.BF16, 64, 100, 3)]
    [InlineData(ScalarType.BF16, 40, 64, 35)]
    [InlineData(ScalarType.F16, 9, 23, 1)]
    [InlineData(ScalarType.F16, 33, 130, 4)]
    [InlineData(ScalarType.F32, 3, 1, 1)]
    [InlineData(ScalarType.F32, 57, 131, 1)]
    [InlineData(ScalarType.F32, 17, 45, 33)]
    public void Linear_Dense(ScalarType type, int rows, int cols, int tokens) =>
        ConformanceChecks.Linear(_metal, _weights, _weights.Dense(rows, cols, type, spread: 1f / MathF.Sqrt(cols)), tokens);

    [Theory]
    [InlineData(2, 32, 96, 0.5f)]
    [InlineData(3, 64, 192, 73.5f)]
    [InlineData(4, 64, 64, 1f)]
    [InlineData(5, 32, 160, 1f)]
    [InlineData(6, 64, 128, 2f)]
    [InlineData(8, 128, 128, 2f)]
    public void Embed_Quantized(int bits, int groupSize, int cols, float scale) =>
        ConformanceChecks.Embed(_metal, _weights.Quantized(50, cols, bits, groupSize), [0, 49, 7, 7, 23], scale);

    [Theory]
    [InlineData(ScalarType.BF16)]
    [InlineData(ScalarType.F16)]
    [InlineData(ScalarType.F32)]
    public void Embed_Dense(ScalarType type) =>
        ConformanceChecks.Embed(_metal, _weights.Dense(20, 37, type), [19, 0, 5], 8f);

    [Theory]
    [InlineData(1, 64, ScalarType.BF16)]
    [InlineData(3, 37, ScalarType.F16)]
    [InlineData(24, 256, ScalarType.BF16)]
    [InlineData(2, 5376, ScalarType.BF16)]   // 31B hidden: 1024 threads, 5.25 values each
    [InlineData(12, 32, null)]
    [InlineData(40, 512, null)]              // per-head no-scale norm of 512-dim heads
    [InlineData(5, 100, ScalarType.F32)]
    public void RmsNorm(int rows, int dim, ScalarType? weightType) =>
        ConformanceChecks.RmsNorm(_metal, _weights, rows, dim, weightType);

    [Theory]
    [InlineData(1, 4, 32, 0.0, 7)]
    [InlineData(5, 2, 64, 0.25, 100000)]
    [InlineData(9, 8, 256, 0.0, 3)]
    [InlineData(2, 4, 512, 0.25, 262000)]   // proportional RoPE of the 31B's full layers, far position
    [InlineData(3, 1, 6, 0.0, 1)]
    public void Rope(int tokens, int heads, int headDim, double partial, int firstPosition) =>
        ConformanceChecks.Rope(_metal, _weights, tokens, heads, headDim, partial, firstPosition);

    public static TheoryData<int, int, int, int, int, int, int> AttentionCases() => new()
    {
        // heads, kvHeads, headDim, window, capacity, start, tokens
        { 4, 2, 32, 0, 64, 0, 1 },       // first token
        { 4, 2, 32, 0, 64, 40, 1 },      // decode, full layer
        { 8, 1, 64, 0, 64, 20, 9 },      // prefill block on a partly filled cache, GQA 8
        { 4, 2, 32, 16, 16, 53, 1 },     // decode on a wrapped ring
        { 4, 2, 32, 16, 16, 37, 5 },     // block on a wrapped ring
        { 4, 2, 32, 16, 16, 30, 40 },    // block longer than the window and the ring
        { 4, 4, 24, 16, 20, 70, 3 },     // ring larger than the window; head dim not a multiple of 32
        { 16, 8, 256, 8, 8, 21, 2 },     // sliding layer shape: head dim 256, GQA 2, wrapped ring
        { 32, 4, 512, 0, 24, 17, 3 },    // full layer shape: head dim 512, GQA 8
        { 2, 2, 40, 5, 5, 0, 12 },       // window larger than anything cached
    };

    [Theory]
    [MemberData(nameof(AttentionCases))]
    public void Attention(int heads, int kvHeads, int headDim, int window, int capacity, int start, int tokens) =>
        ConformanceChecks.Attention(_metal, _weights, new AttentionShape(heads, kvHeads, headDim, window, 1f), capacity, start, tokens, []);

    [Fact]
    public void Attention_BidirectionalRanges()
    {
        var shape = new AttentionShape(4, 2, 16, 0, 1f);
        ConformanceChecks.Attention(_metal, _weights, shape, 64, 10, 12, [new TokenRange(2, 6), new TokenRange(8, 12)]);
        ConformanceChecks.Attention(_metal, _weights, shape with { Window = 8, Scale = 0.25f }, 8, 30, 12, [new TokenRange(0, 12)]);
    }

    [Fact]
    public void Attention_RingOfWindowEqualsLinearHistory() => ConformanceChecks.AttentionRing(_metal, _weights);

    [Theory]
    [InlineData(1)]
    [InlineData(13)]
    [InlineData(100_003)]
    public void Elementwise(int n) => ConformanceChecks.Elementwise(_metal, _weights, n);
}
