using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Pipeline.Kernels.Cpu;
using Pipeline.Kernels.Reference;
using Pipeline.Kernels.Testing;

namespace Pipeline.Kernels.Tests;

/// <summary>
/// The multi-row Linear (<see cref="GemmKernels"/>) against the reference weights, summed in double,
/// on every kernel path (AVX2, portable Vector256, scalar): token counts around the 6-token register
/// tile, output rows around the 16-row panel, quantized rows of 1, 3 and 5 groups (odd group counts,
/// more than one 256-column block, 3/5/6-bit codes crossing words) and dense rows that are not a
/// multiple of the vector width. In the collection of the tests that switch kernel paths process-wide.
/// Tolerance: f32 summation order only, 1e-5 of sum_k |w x| of each output.
/// </summary>
[Collection(nameof(ScalarKernelCollection))]
public sealed unsafe class GemmTests : IDisposable
{
    private static readonly int[] TokenCounts = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 17, 33, 70];
    private static readonly int[] OutRows = [1, 7, 16, 23, 50];

    private readonly CpuIsa _previousIsa = CpuKernels.Isa;
    private readonly RandomWeights _weights = new(seed: 99, pageAligned: true);
    private readonly float* _scratch = (float*)NativeMemory.AlignedAlloc((nuint)GemmKernels.ScratchFloats * 4, 64);

    public void Dispose()
    {
        NativeMemory.AlignedFree(_scratch);
        _weights.Dispose();
        CpuKernels.Isa = _previousIsa;
    }

    public static TheoryData<string, int, int> QuantizedCases()
    {
        var data = new TheoryData<string, int, int>();
        foreach (string isa in new[] { "avx2", "vector256", "scalar" })
        {
            foreach (int bits in new[] { 2, 3, 4, 5, 6, 8 })
            {
                data.Add(isa, bits, 32);
                data.Add(isa, bits, 64);
            }
            data.Add(isa, 3, 128);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(QuantizedCases))]
    public void Quantized_MatchesReference(string isa, int bits, int groupSize)
    {
        UseIsa(isa);
        foreach (int groups in new[] { 1, 3, 5 })
        {
            foreach (int rows in OutRows)
                Check(_weights.Quantized(rows, groupSize * groups, bits, groupSize), $"{bits}-bit group {groupSize} x{groups}");
        }
    }

    [Theory]
    [InlineData("avx2", ScalarType.BF16)]
    [InlineData("avx2", ScalarType.F16)]
    [InlineData("avx2", ScalarType.F32)]
    [InlineData("vector256", ScalarType.BF16)]
    [InlineData("vector256", ScalarType.F16)]
    [InlineData("vector256", ScalarType.F32)]
    [InlineData("scalar", ScalarType.BF16)]
    [InlineData("scalar", ScalarType.F16)]
    [InlineData("scalar", ScalarType.F32)]
    public void Dense_MatchesReference(string isa, ScalarType type)
    {
        UseIsa(isa);
        foreach (int cols in new[] { 1, 37, 1000 })
        {
            foreach (int rows in OutRows)
                Check(_weights.Dense(rows, cols, type, spread: 1f / MathF.Sqrt(cols)), $"{type} cols {cols}");
        }
    }

    /// <summary>f16 subnormals, zeros and extremes widen exactly (the vector conversion's 2^112 trick).</summary>
    [Theory]
    [InlineData("avx2")]
    [InlineData("vector256")]
    public void Dense_F16SubnormalsWidenExactly(string isa)
    {
        UseIsa(isa);
        ushort[] halves = [0x0001, 0x03FF, 0x8001, 0x0400, 0x3C00, 0xFBFF, 0x7BFE, 0x0000, 0x8000, 0x7BFF, 0x0200, 0x8200, 0x3555, 0xC000, 0x0010, 0x1234];
        nint data = (nint)NativeMemory.AlignedAlloc((nuint)(halves.Length * 2), 64);
        try
        {
            halves.CopyTo(new Span<ushort>((void*)data, halves.Length));
            // One row of 16 columns against unit vectors: y[t] = w[t].
            var weight = new DenseWeight(data, 1, halves.Length, ScalarType.F16);
            var x = new float[halves.Length * halves.Length];
            for (int t = 0; t < halves.Length; t++)
                x[t * halves.Length + t] = 1f;
            var y = Run(weight, x, halves.Length);
            for (int t = 0; t < halves.Length; t++)
                Assert.Equal(Scalars.F16ToFloat(halves[t]), y[t]);
        }
        finally
        {
            NativeMemory.AlignedFree((void*)data);
        }
    }

    private void Check(LinearWeight weight, string what)
    {
        int most = TokenCounts[^1];
        var x = _weights.Floats(most * weight.Cols);
        var reference = new LinearReferenceSums(weight, x, most);
        foreach (int tokens in TokenCounts)
            reference.AssertClose(Run(weight, x, tokens), tokens, what, "gemm");
    }

    /// <summary>Y for the first <paramref name="tokens"/> rows of x, in two calls split at the first panel (as workers split it).</summary>
    private float[] Run(LinearWeight weight, float[] x, int tokens)
    {
        var y = new float[tokens * weight.Rows];
        y.AsSpan().Fill(float.NaN);   // every output must be written, not accumulated into
        int split = Math.Min(weight.Rows, GemmKernels.PanelRows);
        fixed (float* xp = x, yp = y)
        {
            GemmKernels.Multiply(weight, 0, split, xp, tokens, yp, _scratch);
            GemmKernels.Multiply(weight, split, weight.Rows, xp, tokens, yp, _scratch);
        }
        return y;
    }

    private static void UseIsa(string isa)
    {
        // A machine without AVX2 (or without accelerated Vector256) runs the next path down instead.
        CpuKernels.Isa = isa switch
        {
            "avx2" when System.Runtime.Intrinsics.X86.Avx2.IsSupported => CpuIsa.Avx2,
            "scalar" => CpuIsa.Scalar,
            _ when Vector256.IsHardwareAccelerated => CpuIsa.Vector256,
            _ => CpuIsa.Scalar,
        };
    }
}
