using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Pipeline.Kernels.Cpu;

namespace Pipeline.Kernels.Timing;

/// <summary>
/// Where the int8 kernel's multi-token loop is bound (one thread, Linux thread CPU time, min of N):
/// first the clock and the rates of the instructions the loop is made of, then
/// <see cref="Int8Kernels.MatMul"/> in ns and cycles per pair of groups and token, on weights of
/// 16 rows (codes in L1/L2), a few thousand rows (L3) and full 31B shapes (DRAM).
/// </summary>
internal static unsafe class Int8LoopTimes
{
    private const int ProbeOps = 24_000_000;

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds, Nanoseconds;
    }

    [DllImport("libc", EntryPoint = "clock_gettime")]
    private static extern int ClockGetTime(int clock, out TimeSpec time);

    /// <summary>This thread's CPU time (CLOCK_THREAD_CPUTIME_ID): the machine is shared, wall time counts the neighbours.</summary>
    private static double ThreadSeconds()
    {
        ClockGetTime(3, out var time);
        return time.Seconds + time.Nanoseconds * 1e-9;
    }

    private static double Best(int runs, Action action)
    {
        double best = double.MaxValue;
        for (int run = 0; run < runs; run++)
        {
            double t0 = ThreadSeconds();
            action();
            best = Math.Min(best, ThreadSeconds() - t0);
        }
        return best;
    }

    public static void Run(int runs, int[] tokenCounts, (int Rows, int Cols)[] shapes, int[] bitWidths)
    {
        if (!Avx2.IsSupported)
        {
            Console.WriteLine("int8loop needs AVX2");
            return;
        }
        sbyte* x = (sbyte*)NativeMemory.AlignedAlloc(4096, 64);
        for (int i = 0; i < 4096; i++)
            x[i] = (sbyte)(i % 5);
        // Four dependent one-cycle integer ops per iteration: their rate is the clock.
        double ghz = 4.0 * ProbeOps / Best(runs, () => DependentChain(1, ProbeOps)) / 1e9;
        Console.WriteLine($"clock ~{ghz:F2} GHz (dependent add/xor chain)");
        void Rate(string name, Action probe, double opsPerIteration)
        {
            double rate = opsPerIteration * ProbeOps / Best(runs, probe) / 1e9;
            Console.WriteLine($"  {name,-44} {rate,5:F2} G/s  {rate / ghz,4:F2} per cycle");
        }
        Rate("vpmaddubsw, register x (12 chains)", () => MaddubsChains(x), 1);
        Rate("vpmaddubsw, x from L1 (12 chains)", () => MaddubsChainsFromMemory(x), 1);
        Rate("8 vpmaddubsw + 4 vpmaddwd (all ops)", () => MaddubsWithMaddwd(x), 1);
        Rate("8 vpmaddubsw + 4 vfmadd231ps (all ops)", () => MaddubsWithFma(x), 1);
        Rate("8 vpmaddubsw + 4 vcvtdq2ps (all ops)", () => MaddubsWithConvert(x), 1);
        NativeMemory.AlignedFree(x);

        foreach (int bits in bitWidths)
        {
            foreach (var (rows, cols) in shapes)
                TimeMatMul(runs, tokenCounts, rows, cols, bits, ghz);
        }
    }

    private static void TimeMatMul(int runs, int[] tokenCounts, int rows, int cols, int bits, double ghz)
    {
        var weight = KernelTimes.Quantized(rows, cols, bits);
        int maxTokens = tokenCounts.Max();
        int preparedBytes = Int8Kernels.PreparedBytes(cols);
        float* x = (float*)NativeMemory.AlignedAlloc((nuint)((long)maxTokens * cols * 4), 64);
        byte* prepared = (byte*)NativeMemory.AlignedAlloc((nuint)((long)maxTokens * preparedBytes), 64);
        float* y = (float*)NativeMemory.AlignedAlloc((nuint)((long)maxTokens * rows * 4), 64);
        var random = new Random(5);
        for (long i = 0; i < (long)maxTokens * cols; i++)
            x[i] = (float)(random.NextDouble() * 2 - 1);
        for (int t = 0; t < maxTokens; t++)
            Int8Kernels.Prepare(x + (long)t * cols, cols, bits, prepared + (long)t * preparedBytes);
        long pairs = (long)rows * ((cols / Int8Kernels.GroupSize + 1) / 2);
        var line = $"  q{bits} {rows,6}x{cols,-6}";
        foreach (int tokens in tokenCounts)
        {
            // Repeat small weights so one timing is at least ~1 ms.
            int repeats = (int)Math.Max(1, 2_000_000 / (pairs * tokens));
            double seconds = Best(runs, () =>
            {
                for (int k = 0; k < repeats; k++)
                    Int8Kernels.MatMul(weight, 0, rows, prepared, preparedBytes, tokens, y, rows);
            }) / repeats;
            double ns = seconds * 1e9 / (pairs * tokens);
            line += $" | {tokens}t {ns,4:F2} ns {ns * ghz,4:F1} cyc";
        }
        Console.WriteLine(line);
        NativeMemory.AlignedFree(x);
        NativeMemory.AlignedFree(prepared);
        NativeMemory.AlignedFree(y);
        NativeMemory.AlignedFree((void*)weight.Packed);
        NativeMemory.AlignedFree((void*)weight.Scales);
        NativeMemory.AlignedFree((void*)weight.Biases);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static long DependentChain(long a, int iterations)
    {
        for (int i = 0; i < iterations; i++)
        {
            a += i;
            a ^= 3;
            a += 1;
            a ^= 5;
        }
        return a;
    }

    /// <summary>12 independent vpmaddubsw chains on a register x (latency 3-4, so the rate is the throughput).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector256<short> MaddubsChains(sbyte* x)
    {
        var xs = Vector256.Load(x);
        var one = Vector256.Create((short)1);
        Vector256<short> a0 = one, a1 = a0 + one, a2 = a1 + one, a3 = a2 + one, a4 = a3 + one, a5 = a4 + one;
        Vector256<short> a6 = a5 + one, a7 = a6 + one, a8 = a7 + one, a9 = a8 + one, a10 = a9 + one, a11 = a10 + one;
        for (int i = 0; i < ProbeOps / 12; i++)
        {
            a0 = Avx2.MultiplyAddAdjacent(a0.AsByte(), xs);
            a1 = Avx2.MultiplyAddAdjacent(a1.AsByte(), xs);
            a2 = Avx2.MultiplyAddAdjacent(a2.AsByte(), xs);
            a3 = Avx2.MultiplyAddAdjacent(a3.AsByte(), xs);
            a4 = Avx2.MultiplyAddAdjacent(a4.AsByte(), xs);
            a5 = Avx2.MultiplyAddAdjacent(a5.AsByte(), xs);
            a6 = Avx2.MultiplyAddAdjacent(a6.AsByte(), xs);
            a7 = Avx2.MultiplyAddAdjacent(a7.AsByte(), xs);
            a8 = Avx2.MultiplyAddAdjacent(a8.AsByte(), xs);
            a9 = Avx2.MultiplyAddAdjacent(a9.AsByte(), xs);
            a10 = Avx2.MultiplyAddAdjacent(a10.AsByte(), xs);
            a11 = Avx2.MultiplyAddAdjacent(a11.AsByte(), xs);
        }
        return a0 ^ a1 ^ a2 ^ a3 ^ a4 ^ a5 ^ a6 ^ a7 ^ a8 ^ a9 ^ a10 ^ a11;
    }

    /// <summary>The same with x as a memory operand (12 L1 addresses), as the kernel takes it.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector256<short> MaddubsChainsFromMemory(sbyte* x)
    {
        var one = Vector256.Create((short)1);
        Vector256<short> a0 = one, a1 = a0 + one, a2 = a1 + one, a3 = a2 + one, a4 = a3 + one, a5 = a4 + one;
        Vector256<short> a6 = a5 + one, a7 = a6 + one, a8 = a7 + one, a9 = a8 + one, a10 = a9 + one, a11 = a10 + one;
        for (int i = 0; i < ProbeOps / 12; i++)
        {
            a0 = Avx2.MultiplyAddAdjacent(a0.AsByte(), Vector256.Load(x));
            a1 = Avx2.MultiplyAddAdjacent(a1.AsByte(), Vector256.Load(x + 32));
            a2 = Avx2.MultiplyAddAdjacent(a2.AsByte(), Vector256.Load(x + 64));
            a3 = Avx2.MultiplyAddAdjacent(a3.AsByte(), Vector256.Load(x + 96));
            a4 = Avx2.MultiplyAddAdjacent(a4.AsByte(), Vector256.Load(x + 128));
            a5 = Avx2.MultiplyAddAdjacent(a5.AsByte(), Vector256.Load(x + 160));
            a6 = Avx2.MultiplyAddAdjacent(a6.AsByte(), Vector256.Load(x + 192));
            a7 = Avx2.MultiplyAddAdjacent(a7.AsByte(), Vector256.Load(x + 224));
            a8 = Avx2.MultiplyAddAdjacent(a8.AsByte(), Vector256.Load(x + 256));
            a9 = Avx2.MultiplyAddAdjacent(a9.AsByte(), Vector256.Load(x + 288));
            a10 = Avx2.MultiplyAddAdjacent(a10.AsByte(), Vector256.Load(x + 320));
            a11 = Avx2.MultiplyAddAdjacent(a11.AsByte(), Vector256.Load(x + 352));
        }
        return a0 ^ a1 ^ a2 ^ a3 ^ a4 ^ a5 ^ a6 ^ a7 ^ a8 ^ a9 ^ a10 ^ a11;
    }

    /// <summary>8 vpmaddubsw chains beside 4 vpmaddwd chains: whether they share pipes.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector256<short> MaddubsWithMaddwd(sbyte* x)
    {
        var xs = Vector256.Load(x);
        var one = Vector256.Create((short)1);
        Vector256<short> a0 = one, a1 = a0 + one, a2 = a1 + one, a3 = a2 + one, a4 = a3 + one, a5 = a4 + one, a6 = a5 + one, a7 = a6 + one;
        Vector256<short> b0 = a7 + one, b1 = b0 + one, b2 = b1 + one, b3 = b2 + one;
        for (int i = 0; i < ProbeOps / 12; i++)
        {
            a0 = Avx2.MultiplyAddAdjacent(a0.AsByte(), xs);
            a1 = Avx2.MultiplyAddAdjacent(a1.AsByte(), xs);
            a2 = Avx2.MultiplyAddAdjacent(a2.AsByte(), xs);
            a3 = Avx2.MultiplyAddAdjacent(a3.AsByte(), xs);
            a4 = Avx2.MultiplyAddAdjacent(a4.AsByte(), xs);
            a5 = Avx2.MultiplyAddAdjacent(a5.AsByte(), xs);
            a6 = Avx2.MultiplyAddAdjacent(a6.AsByte(), xs);
            a7 = Avx2.MultiplyAddAdjacent(a7.AsByte(), xs);
            b0 = Avx2.MultiplyAddAdjacent(b0, one).AsInt16();
            b1 = Avx2.MultiplyAddAdjacent(b1, one).AsInt16();
            b2 = Avx2.MultiplyAddAdjacent(b2, one).AsInt16();
            b3 = Avx2.MultiplyAddAdjacent(b3, one).AsInt16();
        }
        return a0 ^ a1 ^ a2 ^ a3 ^ a4 ^ a5 ^ a6 ^ a7 ^ b0 ^ b1 ^ b2 ^ b3;
    }

    /// <summary>8 vpmaddubsw chains beside 4 FMA chains.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector256<float> MaddubsWithFma(sbyte* x)
    {
        var xs = Vector256.Load(x);
        var one = Vector256.Create((short)1);
        var half = Vector256.Create(0.5f);
        Vector256<short> a0 = one, a1 = a0 + one, a2 = a1 + one, a3 = a2 + one, a4 = a3 + one, a5 = a4 + one, a6 = a5 + one, a7 = a6 + one;
        Vector256<float> b0 = half, b1 = half + half, b2 = b1 + half, b3 = b2 + half;
        for (int i = 0; i < ProbeOps / 12; i++)
        {
            a0 = Avx2.MultiplyAddAdjacent(a0.AsByte(), xs);
            a1 = Avx2.MultiplyAddAdjacent(a1.AsByte(), xs);
            a2 = Avx2.MultiplyAddAdjacent(a2.AsByte(), xs);
            a3 = Avx2.MultiplyAddAdjacent(a3.AsByte(), xs);
            a4 = Avx2.MultiplyAddAdjacent(a4.AsByte(), xs);
            a5 = Avx2.MultiplyAddAdjacent(a5.AsByte(), xs);
            a6 = Avx2.MultiplyAddAdjacent(a6.AsByte(), xs);
            a7 = Avx2.MultiplyAddAdjacent(a7.AsByte(), xs);
            b0 = Fma.MultiplyAdd(b0, half, half);
            b1 = Fma.MultiplyAdd(b1, half, half);
            b2 = Fma.MultiplyAdd(b2, half, half);
            b3 = Fma.MultiplyAdd(b3, half, half);
        }
        return (a0 ^ a1 ^ a2 ^ a3 ^ a4 ^ a5 ^ a6 ^ a7).AsSingle() + b0 + b1 + b2 + b3;
    }

    /// <summary>8 vpmaddubsw chains beside 4 int-to-float conversion chains.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector256<float> MaddubsWithConvert(sbyte* x)
    {
        var xs = Vector256.Load(x);
        var one = Vector256.Create((short)1);
        Vector256<short> a0 = one, a1 = a0 + one, a2 = a1 + one, a3 = a2 + one, a4 = a3 + one, a5 = a4 + one, a6 = a5 + one, a7 = a6 + one;
        Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default;
        for (int i = 0; i < ProbeOps / 12; i++)
        {
            a0 = Avx2.MultiplyAddAdjacent(a0.AsByte(), xs);
            a1 = Avx2.MultiplyAddAdjacent(a1.AsByte(), xs);
            a2 = Avx2.MultiplyAddAdjacent(a2.AsByte(), xs);
            a3 = Avx2.MultiplyAddAdjacent(a3.AsByte(), xs);
            a4 = Avx2.MultiplyAddAdjacent(a4.AsByte(), xs);
            a5 = Avx2.MultiplyAddAdjacent(a5.AsByte(), xs);
            a6 = Avx2.MultiplyAddAdjacent(a6.AsByte(), xs);
            a7 = Avx2.MultiplyAddAdjacent(a7.AsByte(), xs);
            b0 = Avx.ConvertToVector256Single(b0.AsInt32());
            b1 = Avx.ConvertToVector256Single(b1.AsInt32());
            b2 = Avx.ConvertToVector256Single(b2.AsInt32());
            b3 = Avx.ConvertToVector256Single(b3.AsInt32());
        }
        return (a0 ^ a1 ^ a2 ^ a3 ^ a4 ^ a5 ^ a6 ^ a7).AsSingle() + b0 + b1 + b2 + b3;
    }
}
