using Pipeline.Kernels.Cpu;
using Pipeline.Kernels.Reference;

using Pipeline.Kernels.Testing;

namespace Pipeline.Kernels.Tests;

/// <summary>
/// The default decode matvec on activations split into integer terms (<see cref="SplitActivationKernels"/>:
/// three int8 terms for 2, 3 and 4 bits) against its scalar twin (the same
/// integer math element by element from the MLX layout) and against the exact f32 reference at f32
/// accuracy. In the collection of the tests that switch kernel paths process-wide, since the path
/// exists only with AVX2 on.
/// </summary>
[Collection(nameof(ScalarKernelCollection))]
public sealed unsafe class SplitActivationTests : IDisposable
{
    private readonly CpuBackend _cpu = new(threads: 2, int8Activations: false);
    private readonly ReferenceBackend _reference = new();
    private readonly RandomWeights _weights = new(seed: 17, pageAligned: true);

    public void Dispose()
    {
        _cpu.Dispose();
        _weights.Dispose();
    }

    public static TheoryData<int, int, int, int> Cases()
    {
        var data = new TheoryData<int, int, int, int>();
        foreach (int bits in new[] { 2, 3, 4 })
        {
            data.Add(bits, 1, 128, 1);       // smallest 2-bit row: one pair of groups
            data.Add(bits, 300, 256, 1);     // multi-threaded matvec, 16-row blocks with a tail
            data.Add(bits, 7, 384, 3);       // 3 tokens: still the int16 path
            data.Add(bits, 33, 1152, 2);     // 18 groups: 2-bit pairs of pairs with a tail pair
        }
        foreach (int bits in new[] { 3, 4 })
        {
            data.Add(bits, 5, 64, 1);        // single-group rows
            data.Add(bits, 9, 192, 2);       // odd group count
            data.Add(bits, 17, 448, 1);      // 7 groups: 4-bit four-group step, a pair, a lone group
        }
        data.Add(3, 40, 320, 1);             // 3-bit chunks cross words and 128-bit halves
        data.Add(3, 21, 960, 2);             // 3-bit: 15 groups (four-group steps, a pair, a lone group), 2 tokens
        data.Add(3, 300, 704, 3);            // 3-bit: 11 groups, multi-threaded, 3 tokens
        data.Add(2, 6, 384, 2);              // 2-bit: one four-group step and a tail pair
        data.Add(2, 3, 5376, 1);             // 31B widths: gate/up and q/k/v (84 groups), down (336)
        data.Add(4, 3, 5376, 1);
        data.Add(3, 2, 21504, 1);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesScalarTwinAndReference(int bits, int rows, int cols, int tokens)
    {
        var weight = _weights.Quantized(rows, cols, bits, 64);
        var x = _weights.Floats(tokens * cols);
        // Outliers make one integer term alone visibly inexact (a step of 9/32767 in their group); an
        // all-zero group has no step at all.
        x[0] = 9f;
        x[^1] = -7.5f;
        if (cols >= 192)
            Array.Clear(x, 64, 64);
        var actual = BackendRuns.Linear(_cpu, weight, x, tokens);
        var exact = BackendRuns.Linear(_reference, weight, x, tokens);
        var direct = RunKernel(weight, x, tokens);
        for (int t = 0; t < tokens; t++)
        {
            for (int r = 0; r < rows; r++)
            {
                var (twin, magnitude) = Twin(weight, x.AsSpan(t * cols, cols), r);
                int i = t * rows + r;
                if (direct is not null && !(Math.Abs(direct[i] - twin) <= 1e-6 * magnitude + 1e-6))
                    Assert.Fail($"token {t} row {r}: twin {twin}, kernel {direct[i]}");
                if (!(Math.Abs(actual[i] - exact[i]) <= 2e-6 * magnitude + 1e-6))
                    Assert.Fail($"token {t} row {r}: reference {exact[i]}, cpu {actual[i]}, magnitude {magnitude}");
            }
        }
    }

    [Fact]
    public void AppliesWhereTheInt8KernelsDo()
    {
        Assert.Equal(CpuKernels.UseAvx2, SplitActivationKernels.Supports(_weights.Quantized(2, 128, 2, 64)));
        Assert.False(SplitActivationKernels.Supports(_weights.Quantized(2, 192, 2, 64)));   // 2-bit, odd group count
        Assert.False(SplitActivationKernels.Supports(_weights.Quantized(2, 128, 4, 32)));
        Assert.False(SplitActivationKernels.Supports(_weights.Quantized(2, 128, 8, 64)));
    }

    /// <summary>
    /// The kernel called directly (null where AVX2 is off): QuantizeInput per token, then MatVec over
    /// all rows as one range.
    /// </summary>
    private static float[]? RunKernel(QuantizedWeight weight, float[] x, int tokens)
    {
        if (!SplitActivationKernels.Supports(weight))
            return null;
        int cols = weight.Cols, groups = weight.GroupsPerRow, shorts = SplitActivationKernels.InputShorts(cols, weight.Bits);
        var xq = new short[tokens * shorts];
        var steps = new float[tokens * groups];
        var sums = new float[tokens * groups];
        var y = new float[tokens * weight.Rows];
        fixed (float* px = x, ps = steps, psum = sums, py = y)
        fixed (short* pq = xq)
        {
            for (int t = 0; t < tokens; t++)
                SplitActivationKernels.QuantizeInput(px + t * cols, cols, weight.Bits, pq + t * shorts, ps + t * groups, psum + t * groups);
            SplitActivationKernels.MatVec(weight, 0, weight.Rows, pq, ps, psum, py, weight.Rows, tokens);
        }
        return y;
    }

    /// <summary>
    /// The split math element by element, per group with t = x * 127 / max|x|, hi = round(t),
    /// mid = round((t - hi) * 181), lo = round(((t - hi) * 181 - mid) * 181),
    /// S = q.(32761 hi + 181 mid + lo), step = max|x| / 127 / 32761;
    /// y = sum_g scale * step * S + bias * sum(x); also sum|w x| for the tolerance.
    /// </summary>
    private static (float Value, double Magnitude) Twin(QuantizedWeight w, ReadOnlySpan<float> x, int row)
    {
        double value = 0, magnitude = 0;
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
            float step = max / 127f / (181 * 181);
            float inverse = max > 0 ? 127f / max : 0f;
            long dot = 0;
            for (int i = g * 64; i < (g + 1) * 64; i++)
            {
                uint q = ReferenceWeights.Code(w, row, i);
                float t = x[i] * inverse, hi = MathF.Round(t);
                float midScaled = (t - hi) * 181, mid = MathF.Round(midScaled);
                long term = 181 * 181 * (long)hi + 181 * (long)mid + (long)MathF.Round((midScaled - mid) * 181);
                dot += q * term;
                magnitude += Math.Abs(ReferenceWeights.At(w, row, i) * x[i]);
            }
            value += scale * step * (double)dot + bias * sum;
        }
        return ((float)value, magnitude);
    }
}
