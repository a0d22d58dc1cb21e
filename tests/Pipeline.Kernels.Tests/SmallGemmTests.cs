using System.Runtime.InteropServices;
using Pipeline.Kernels.Cpu;
using Pipeline.Kernels.Reference;
using Pipeline.Kernels.Testing;

namespace Pipeline.Kernels.Tests;

/// <summary>
/// The small-M Linear (<see cref="SmallGemmKernels"/>, batched decode) against the reference weights summed
/// in double: token counts 1-17 for quantized weights, 1-32 for dense (one to four tiles, every accumulator layout), row counts around the row
/// block, each range split in two calls as workers split it; quantized rows of 1 to 17 groups of 32/64/128
/// (several column blocks at every token count), 2/3/4/8 bits (3-bit codes crossing words and bytes),
/// bf16/f16/f32 scales; dense rows with tails (cols not a multiple of 8), and rows wide enough for several
/// dense row blocks in one call (3-row register tiles, 1-row tails, the next block's prefetch). Tolerance: f32 summation order
/// only, 1e-5 of sum_k |w x| of each output. Calls the kernel directly (it reads no process-wide path), so
/// it runs in parallel with the rest.
/// </summary>
public sealed unsafe class SmallGemmTests : IDisposable
{
    private static readonly int[] OutRows = [1, 7, 130];

    private readonly RandomWeights _weights = new(seed: 77, pageAligned: true);
    private readonly float* _scratch = (float*)NativeMemory.AlignedAlloc((nuint)SmallGemmKernels.ScratchFloats * 4, 64);

    public void Dispose()
    {
        NativeMemory.AlignedFree(_scratch);
        _weights.Dispose();
    }

    public static TheoryData<int, int, ScalarType> QuantizedCases()
    {
        var data = new TheoryData<int, int, ScalarType>();
        var scaleTypes = new[] { ScalarType.BF16, ScalarType.F16, ScalarType.F32 };
        int i = 0;
        foreach (int bits in new[] { 2, 3, 4, 8 })
        {
            foreach (int groupSize in new[] { 32, 64, 128 })
                data.Add(bits, groupSize, scaleTypes[i++ % 3]);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(QuantizedCases))]
    public void Quantized_MatchesReference(int bits, int groupSize, ScalarType scaleType)
    {
        if (!SupportedHere())
            return;
        foreach (int groups in new[] { 1, 3, 17 })
        {
            // 17 groups of 128: 2176 columns, more than one column block even at 2 tokens.
            if (groups == 17 && groupSize != 128)
                continue;
            foreach (int rows in OutRows)
                Check(_weights.Quantized(rows, groupSize * groups, bits, groupSize, scaleType), 17, $"{bits}-bit group {groupSize} x{groups} {scaleType} scales");
        }
    }

    [Theory]
    [InlineData(ScalarType.BF16)]
    [InlineData(ScalarType.F16)]
    [InlineData(ScalarType.F32)]
    public void Dense_MatchesReference(ScalarType type)
    {
        if (!SupportedHere())
            return;
        foreach (int cols in new[] { 1, 7, 37, 1000, 2053 })
        {
            foreach (int rows in OutRows)
                Check(_weights.Dense(rows, cols, type, spread: 1f / MathF.Sqrt(cols)), SmallGemmKernels.MostKernelTokens, $"{type} cols {cols}");
        }
    }

    /// <summary>
    /// Dense rows wide enough that a row block holds few rows (bf16: 9 rows of 16390 bytes, f32: 3), so the
    /// range [13, 40) crosses row blocks (and prefetches the next one) and [0, 13) ends in a 1-row tail after
    /// four 3-row tiles; 8195 columns end in a 3-column step. Every token count up to 32: one or two
    /// passes per tile (1-4 and 5-8 tokens) in one to four tiles of tokens.
    /// </summary>
    [Theory]
    [InlineData(ScalarType.BF16)]
    [InlineData(ScalarType.F32)]
    public void Dense_WideRows_RegisterTilesAcrossRowBlocks(ScalarType type)
    {
        if (!SupportedHere())
            return;
        Check(_weights.Dense(40, 8195, type, spread: 1f / MathF.Sqrt(8195)), SmallGemmKernels.MostKernelTokens, $"{type} 40 x 8195");
    }

    /// <summary>The kernel needs AVX2 and FMA; a CPU without them never dispatches to it (asserted).</summary>
    private static bool SupportedHere()
    {
        bool hardware = System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported;
        if (!hardware)
            Assert.False(SmallGemmKernels.Supports(new DenseWeight(0, 1, 1, ScalarType.F32)));
        return hardware;
    }

    /// <summary>Every token count from 1 to <paramref name="mostTokens"/> against the double-precision sums.</summary>
    private void Check(LinearWeight weight, int mostTokens, string what)
    {
        var x = _weights.Floats(mostTokens * weight.Cols);
        // Reference sums for every token row once: they do not depend on how many rows a call takes.
        var reference = new LinearReferenceSums(weight, x, mostTokens);
        for (int tokens = 1; tokens <= mostTokens; tokens++)
            reference.AssertClose(Run(weight, x, tokens), tokens, what, "small-M");
    }

    /// <summary>Y for the first <paramref name="tokens"/> rows of x, in two calls split a third of the way down (as workers split it).</summary>
    private float[] Run(LinearWeight weight, float[] x, int tokens)
    {
        var y = new float[tokens * weight.Rows];
        y.AsSpan().Fill(float.NaN);   // every output must be written, not accumulated into
        var packed = (float*)NativeMemory.AlignedAlloc((nuint)SmallGemmKernels.PackedInputFloats(tokens, weight.Cols) * 4, 64);
        try
        {
            int split = weight.Rows / 3;
            fixed (float* xp = x, yp = y)
            {
                SmallGemmKernels.PackInput(xp, tokens, weight.Cols, packed);
                SmallGemmKernels.Multiply(weight, 0, split, packed, tokens, yp, _scratch);
                SmallGemmKernels.Multiply(weight, split, weight.Rows, packed, tokens, yp, _scratch);
            }
        }
        finally
        {
            NativeMemory.AlignedFree(packed);
        }
        return y;
    }
}

/// <summary>Which weights and paths dispatch to the small-M kernel; switches paths process-wide, so in the non-parallel collection.</summary>
[Collection(nameof(ScalarKernelCollection))]
public sealed class SmallGemmDispatchTests : IDisposable
{
    private readonly CpuIsa _previous = CpuKernels.Isa;
    private readonly RandomWeights _weights = new(seed: 78);

    public void Dispose()
    {
        CpuKernels.Isa = _previous;
        _weights.Dispose();
    }

    [Fact]
    public void Supports_TwoThreeFourEightBitsAndDense_OnTheAvx2PathOnly()
    {
        LinearWeight[] decoded = [_weights.Quantized(1, 64, 2, 64), _weights.Quantized(1, 64, 3, 64), _weights.Quantized(1, 64, 4, 64),
                                  _weights.Quantized(1, 64, 8, 64), _weights.Dense(1, 3, ScalarType.BF16), _weights.Dense(1, 3, ScalarType.F16), _weights.Dense(1, 3, ScalarType.F32)];
        LinearWeight[] others = [_weights.Quantized(1, 64, 5, 64), _weights.Quantized(1, 64, 6, 64)];
        bool hardware = System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported;
        if (hardware)
        {
            CpuKernels.Isa = CpuIsa.Avx2;
            Assert.All(decoded, w => Assert.True(SmallGemmKernels.Supports(w)));
            Assert.All(others, w => Assert.False(SmallGemmKernels.Supports(w)));
        }
        foreach (var isa in new[] { CpuIsa.Vector128, CpuIsa.Scalar })
        {
            CpuKernels.Isa = isa;
            Assert.All(decoded, w => Assert.False(SmallGemmKernels.Supports(w)));
        }
    }
}
