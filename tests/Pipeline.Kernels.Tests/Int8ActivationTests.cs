using Pipeline.Kernels.Cpu;
using Pipeline.Kernels.Reference;

using Pipeline.Kernels.Testing;

namespace Pipeline.Kernels.Tests;

/// <summary>
/// The int8-activation matvec/matmul of <see cref="CpuBackend"/> against its scalar twin (the same
/// int8 math written element by element from the MLX layout), and against the exact f32 reference
/// within the bound that rounding x to int8 allows. In the collection of the tests that switch
/// kernel paths process-wide, since the int8 path exists only with AVX2 on.
/// </summary>
[Collection(nameof(ScalarKernelCollection))]
public sealed class Int8ActivationTests : IDisposable
{
    private readonly CpuBackend _cpu = new(threads: 2, int8Activations: true);
    private readonly ReferenceBackend _reference = new();
    private readonly RandomWeights _weights = new(seed: 99, pageAligned: true);

    public void Dispose()
    {
        _cpu.Dispose();
        _weights.Dispose();
    }

    public static TheoryData<int, int, int, int> Cases()
    {
        var data = new TheoryData<int, int, int, int>();
        foreach (int bits in new[] { 2, 4 })
        {
            data.Add(bits, 1, 128, 1);       // smallest row: two groups (2-bit pairs them)
            data.Add(bits, 7, 384, 3);       // tokens below a tile of 4
            data.Add(bits, 300, 256, 1);     // multi-threaded matvec
            data.Add(bits, 45, 640, 37);     // several token tiles, tail of 1 after tiles of 4
            data.Add(bits, 33, 1152, 4);     // one full tile of 4, 18 groups
        }
        foreach (int bits in new[] { 3, 4 })
        {
            data.Add(bits, 5, 64, 6);        // single-group rows
            data.Add(bits, 9, 192, 2);       // odd group count
        }
        data.Add(3, 300, 320, 1);            // 3-bit multi-threaded matvec: chunks cross words and 128-bit halves
        data.Add(3, 40, 1152, 37);           // 3-bit token tiles
        data.Add(4, 70, 5376, 9);            // 31B hidden width (84 groups: a bias tail of 4), a tile of 8 and a tile of 1
        data.Add(3, 17, 2112, 8);            // 33 groups: a lone last group after 16 pairs, one full tile
        data.Add(3, 19, 21504, 13);          // down_proj's width (336 groups): a tile of 8 and one of 5, both with the chained (lean) step
        data.Add(2, 21, 5376, 8);            // gate/up at 31B's hidden width, 8 tokens (the batched decode of 8 sessions): two tiles of 4
        return data;
    }

    /// <summary>
    /// Every token count of a register tile and past it (1..17: tiles of 8, then the rest), on rows that
    /// are no multiple of the row block (19) and, for 3 and 4 bits, an odd group count (a lone last group;
    /// 2-bit rows need whole pairs of groups).
    /// </summary>
    public static TheoryData<int, int, int, int> TileCases()
    {
        var data = new TheoryData<int, int, int, int>();
        for (int tokens = 1; tokens <= 17; tokens++)
        {
            data.Add(2, 19, 640, tokens);
            data.Add(3, 19, 704, tokens);
            data.Add(4, 19, 704, tokens);
        }
        return data;
    }

    /// <summary>
    /// Rows of 8 or more groups whose count is no multiple of 8 end the bias term of multi-token tiles with
    /// the last 8 groups again, the lanes already counted masked off: every tail length 1-7, none (8 and
    /// 16 groups), and rows of fewer than 8 groups (the scalar tail), for 2-, 5- and 8-token tiles.
    /// </summary>
    public static TheoryData<int, int, int, int> BiasTailCases()
    {
        var data = new TheoryData<int, int, int, int>();
        foreach (int tokens in new[] { 2, 5, 8 })
        {
            foreach (int groups in new[] { 9, 11, 13, 15, 8, 16, 7 })
            {
                data.Add(3, 13, groups * 64, tokens);
                data.Add(4, 13, groups * 64, tokens);
            }
            foreach (int groups in new[] { 10, 12, 14, 6 })
                data.Add(2, 13, groups * 64, tokens);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(BiasTailCases))]
    public void EveryBiasTailMatchesScalarTwin(int bits, int rows, int cols, int tokens) =>
        MatchesScalarTwinAndReferenceBound(bits, rows, cols, tokens);

    [Theory]
    [MemberData(nameof(TileCases))]
    public void EveryTileWidthMatchesScalarTwin(int bits, int rows, int cols, int tokens) =>
        MatchesScalarTwinAndReferenceBound(bits, rows, cols, tokens);

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesScalarTwinAndReferenceBound(int bits, int rows, int cols, int tokens)
    {
        var weight = _weights.Quantized(rows, cols, bits, 64);
        var x = _weights.Floats(tokens * cols);
        // Outliers, as real activations have, make the per-group int8 scales uneven.
        x[0] = 9f;
        x[^1] = -7.5f;
        var actual = BackendRuns.Linear(_cpu, weight, x, tokens);
        var exact = BackendRuns.Linear(_reference, weight, x, tokens);
        for (int t = 0; t < tokens; t++)
        {
            for (int r = 0; r < rows; r++)
            {
                var (twin, magnitude, bound) = Twin(weight, x.AsSpan(t * cols, cols), r);
                float y = actual[t * rows + r];
                // Against the twin: f32 summation order only.
                if (!(Math.Abs(y - twin) <= 1e-5 * magnitude + 1e-5))
                    Assert.Fail($"token {t} row {r}: int8 twin {twin}, cpu {y}");
                // Against the exact f32 reference: each x moves by at most half an int8 step.
                if (!(Math.Abs(y - exact[t * rows + r]) <= bound + 1e-5 * magnitude + 1e-5))
                    Assert.Fail($"token {t} row {r}: reference {exact[t * rows + r]}, cpu {y}, bound {bound}");
            }
        }
    }

    [Fact]
    public void IntegerPathIsUsedWhereItApplies()
    {
        // With x far from int8 steps the int8 result must differ from f32: proves the path ran.
        var weight = _weights.Quantized(16, 256, 4, 64);
        var x = _weights.Floats(256);
        x[3] = 50f;
        var int8 = BackendRuns.Linear(_cpu, weight, x, 1);
        var exact = BackendRuns.Linear(_reference, weight, x, 1);
        Assert.Equal(CpuKernels.UseAvx2, int8.Where((v, i) => v != exact[i]).Any());
    }

    [Theory]
    [InlineData(3, 32, 192, 2)]    // 3-bit groups of 32: f32 path
    [InlineData(8, 64, 128, 1)]    // 8-bit: f32 path
    [InlineData(4, 32, 96, 5)]     // groups of 32: f32 path
    [InlineData(2, 64, 192, 1)]    // 2-bit with an odd group count: f32 path
    public void OtherGeometriesStayExact(int bits, int groupSize, int cols, int tokens)
    {
        var weight = _weights.Quantized(11, cols, bits, groupSize);
        var x = _weights.Floats(tokens * cols);
        var actual = BackendRuns.Linear(_cpu, weight, x, tokens);
        var exact = BackendRuns.Linear(_reference, weight, x, tokens);
        for (int i = 0; i < actual.Length; i++)
            Assert.True(Math.Abs(actual[i] - exact[i]) <= 1e-4 * (1 + Math.Abs(exact[i])), $"[{i}]: reference {exact[i]}, cpu {actual[i]}");
    }

    /// <summary>
    /// The int8 math element by element: per group s = max|x| / 127, xq = round(x / s), and
    /// y = sum_g scale*s*(q . xq) + bias*sum(x). Also sum|w x| and the bound of |int8 - exact|:
    /// sum_g |scale| * sum_i q_i * s/2.
    /// </summary>
    private static (float Value, double Magnitude, double Bound) Twin(QuantizedWeight w, ReadOnlySpan<float> x, int row)
    {
        double value = 0, magnitude = 0, bound = 0;
        for (int g = 0; g < w.GroupsPerRow; g++)
        {
            long slot = (long)row * w.GroupsPerRow + g;
            float scale = Scalars.Load(w.Scales, slot, w.ScaleType), bias = Scalars.Load(w.Biases, slot, w.ScaleType);
            float max = 0, sum = 0;
            for (int i = g * 64; i < (g + 1) * 64; i++)
            {
                max = MathF.Max(max, MathF.Abs(x[i]));
                sum += x[i];
            }
            float step = max / 127f, inverse = max > 0 ? 127f / max : 0f;
            long dot = 0, codes = 0;
            for (int i = g * 64; i < (g + 1) * 64; i++)
            {
                uint q = ReferenceWeights.Code(w, row, i);
                dot += q * (long)MathF.Round(x[i] * inverse);
                codes += q;
                magnitude += Math.Abs(ReferenceWeights.At(w, row, i) * x[i]);
            }
            value += scale * step * dot + bias * sum;
            bound += Math.Abs(scale) * codes * step / 2;
        }
        return ((float)value, magnitude, bound);
    }
}
