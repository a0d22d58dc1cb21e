using System.Runtime.Intrinsics;
using Pipeline.Kernels.Cpu;

namespace Pipeline.Kernels.Tests;

/// <summary>
/// The width-generic f32 kernels of <see cref="CpuKernels"/> called directly at every width (1 =
/// scalar, 128, 256, 512; Vector512 runs in software where the CPU lacks AVX-512), each against a
/// plain scalar twin, over lengths around every multiple of the vector widths (empty, tails,
/// one vector, one vector plus a tail, the two-accumulator steps). No process-wide switch is
/// touched, so these run in parallel with everything else.
/// </summary>
public sealed class VectorWidthTests
{
    private static readonly int[] Lengths = [0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 47, 48, 63, 64, 65, 100, 257];

    public static TheoryData<int> Widths => [1, 128, 256, 512];

    private static IWidthChecks At(int width) => width switch
    {
        1 => new WidthChecks<Width1, float>(),
        128 => new WidthChecks<Width128, Vector128<float>>(),
        256 => new WidthChecks<Width256, Vector256<float>>(),
        512 => new WidthChecks<Width512, Vector512<float>>(),
        _ => throw new ArgumentOutOfRangeException(nameof(width), width, "no such vector width"),
    };

    [Theory]
    [MemberData(nameof(Widths))]
    public void Dot(int width) => At(width).Dot(Lengths);

    [Theory]
    [MemberData(nameof(Widths))]
    public void Bf16ToFloat(int width) => At(width).Bf16ToFloat(Lengths);

    [Theory]
    [MemberData(nameof(Widths))]
    public void RmsNormRow(int width) => At(width).RmsNormRow(Lengths);

    [Theory]
    [MemberData(nameof(Widths))]
    public void RopeHead(int width) => At(width).RopeHead(Lengths);

    [Theory]
    [MemberData(nameof(Widths))]
    public void ElementwiseAndSoftmaxParts(int width) => At(width).Elementwise(Lengths);

    [Fact]
    public void Vector512RunsHere()
    {
        // The Vector512 instantiation is tested on every machine: in hardware or in .NET's software fallback.
        var v = Vector512.Create(1.5f);
        Assert.Equal(16 * 4f, Vector512.Sum(Vector512.MultiplyAddEstimate(v, Vector512.Create(2f), Vector512<float>.One)));
    }
}

/// <summary>Checks of one width, behind a non-generic face so the public test class needs no internal type in its signature.</summary>
internal interface IWidthChecks
{
    void Dot(int[] lengths);

    void Bf16ToFloat(int[] lengths);

    void RmsNormRow(int[] lengths);

    void RopeHead(int[] lengths);

    void Elementwise(int[] lengths);
}

internal sealed unsafe class WidthChecks<TWidth, TVector> : IWidthChecks
    where TWidth : struct, IVectorWidth<TVector>
    where TVector : struct
{
    private readonly Random _random = new(77);

    private float[] Floats(int n, float spread = 1f)
    {
        var values = new float[n];
        for (int i = 0; i < n; i++)
            values[i] = spread * (float)(_random.NextDouble() * 2 - 1);
        return values;
    }

    private static void Close(double expected, double actual, double tolerance, string what)
    {
        if (!(Math.Abs(expected - actual) <= tolerance))
            Assert.Fail($"{TWidth.Count} lanes: {what}: expected {expected}, got {actual} (allowed {tolerance})");
    }

    public void Dot(int[] lengths)
    {
        foreach (int n in lengths)
        {
            var a = Floats(n);
            var b = Floats(n);
            double exact = 0, magnitude = 0;
            for (int i = 0; i < n; i++)
            {
                exact += (double)a[i] * b[i];
                magnitude += Math.Abs((double)a[i] * b[i]);
            }
            fixed (float* pa = a, pb = b)
            {
                // Tolerance: f32 summation of n products, relative to sum |a b|.
                Close(exact, CpuKernels.Dot<TWidth, TVector>(pa, pb, n), 1e-6 * magnitude * (1 + n / 16.0), $"dot n={n}");
            }
        }
    }

    public void Bf16ToFloat(int[] lengths)
    {
        foreach (int n in lengths)
        {
            var source = new ushort[n];
            for (int i = 0; i < n; i++)
                source[i] = (ushort)_random.Next(65536);
            var destination = new float[n + 1];
            destination[n] = 123f;
            fixed (ushort* ps = source)
            fixed (float* pd = destination)
                CpuKernels.Bf16ToFloat<TWidth, TVector>(ps, pd, n);
            // Exact, bit for bit (NaNs included), and nothing written past n.
            for (int i = 0; i < n; i++)
                Assert.Equal(BitConverter.SingleToInt32Bits(Scalars.Bf16ToFloat(source[i])), BitConverter.SingleToInt32Bits(destination[i]));
            Assert.Equal(123f, destination[n]);
        }
    }

    public void RmsNormRow(int[] lengths)
    {
        foreach (int n in lengths)
        {
            if (n == 0)
                continue;
            var x = Floats(n, spread: 3f);
            var weight = Floats(n);
            foreach (bool weighted in new[] { false, true })
            {
                var y = new float[n];
                fixed (float* px = x, pw = weight, py = y)
                    CpuKernels.RmsNormRow<TWidth, TVector>(px, py, weighted ? pw : null, n, 1e-6f);
                double squares = 0;
                foreach (float v in x)
                    squares += (double)v * v;
                double inv = 1 / Math.Sqrt(squares / n + 1e-6);
                for (int i = 0; i < n; i++)
                {
                    double expected = x[i] * inv * (weighted ? weight[i] : 1);
                    // Tolerance: one f32 sum of squares and rsqrt.
                    Close(expected, y[i], 2e-6 * Math.Abs(expected) + 1e-7, $"rmsnorm n={n} [{i}]");
                }
            }
        }
    }

    public void RopeHead(int[] lengths)
    {
        foreach (int half in lengths)
        {
            var x = Floats(2 * half);
            var cos = Floats(half);
            var sin = Floats(half);
            var y = (float[])x.Clone();
            fixed (float* py = y, pc = cos, ps = sin)
                CpuKernels.RopeHead<TWidth, TVector>(py, pc, ps, half);
            for (int j = 0; j < half; j++)
            {
                // The same f32 operations in the same order: exact.
                Assert.Equal(x[j] * cos[j] - x[j + half] * sin[j], y[j]);
                Assert.Equal(x[j + half] * cos[j] + x[j] * sin[j], y[j + half]);
            }
        }
    }

    public void Elementwise(int[] lengths)
    {
        foreach (int n in lengths)
        {
            var a = Floats(n, spread: 8f);
            var b = Floats(n, spread: 2f);
            if (n > 1)
            {
                a[0] = 40f;   // saturated tanh, large GELU inputs
                a[1] = -40f;
            }
            var y = new float[n];
            fixed (float* pa = a, pb = b, py = y)
            {
                CpuKernels.GeGlu<TWidth, TVector>(pa, pb, py, n);
                for (int i = 0; i < n; i++)
                {
                    double g = a[i];
                    double expected = 0.5 * g * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (g + 0.044715 * g * g * g))) * b[i];
                    // Tolerance: exp-based tanh in f32, relative 1e-5.
                    Close(expected, y[i], 1e-5 * Math.Abs(expected) + 1e-6, $"geglu n={n} [{i}]");
                }

                CpuKernels.Add<TWidth, TVector>(pa, pb, py, n);
                for (int i = 0; i < n; i++)
                    Assert.Equal(a[i] + b[i], y[i]);

                Array.Copy(a, y, n);
                CpuKernels.Scale<TWidth, TVector>(py, n, 0.7f);
                for (int i = 0; i < n; i++)
                    Assert.Equal(a[i] * 0.7f, y[i]);

                Array.Copy(a, y, n);
                CpuKernels.Softcap<TWidth, TVector>(py, n, 30f);
                for (int i = 0; i < n; i++)
                {
                    // Tolerance: absolute 1e-5 of the cap (1 - 2/(e^2z + 1) loses relative precision near 0).
                    Close(30 * Math.Tanh(a[i] / 30.0), y[i], 3e-4, $"softcap n={n} [{i}]");
                }

                Array.Copy(b, y, n);
                CpuKernels.AddScaled<TWidth, TVector>(py, pa, -0.3f, n);
                for (int i = 0; i < n; i++)
                {
                    double expected = b[i] + -0.3 * a[i];
                    // Tolerance: one fused or unfused multiply-add in f32.
                    Close(expected, y[i], 2e-7 * (Math.Abs(b[i]) + Math.Abs(0.3 * a[i])), $"addscaled n={n} [{i}]");
                }

                Array.Copy(a, y, n);
                float max = n == 0 ? 0 : a.Max();
                float sum = CpuKernels.ExpShifted<TWidth, TVector>(py, n, max);
                double exactSum = 0;
                for (int i = 0; i < n; i++)
                {
                    double expected = Math.Exp(a[i] - max);
                    exactSum += expected;
                    // Tolerance: f32 exp, relative 1e-6 (values in (0, 1]).
                    Close(expected, y[i], 1e-6 * expected + 1e-30, $"exp n={n} [{i}]");
                }
                Close(exactSum, sum, 1e-6 * exactSum * (1 + n / 16.0), $"exp sum n={n}");
            }
        }
    }
}
