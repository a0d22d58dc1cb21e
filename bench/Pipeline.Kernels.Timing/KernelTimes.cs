using System.Diagnostics;
using System.Runtime.InteropServices;
using Pipeline.Kernels.Cpu;

namespace Pipeline.Kernels.Timing;

/// <summary>
/// One thread, synthetic weights with 31B shapes: each Linear op's best time over N runs, by wall clock
/// and by process CPU time (which excludes time the thread spent preempted on a busy machine).
/// </summary>
internal static unsafe class KernelTimes
{
    public static void Run(int threads, int runs, int tokens)
    {
        using var backend = new CpuBackend(threads);
        Console.WriteLine($"backend: {backend.Name}, tokens {tokens}, best of {runs}");
        var cases = new (string Name, Func<LinearWeight> Make)[]
        {
            ("q2 gate/up 21504x5376", () => Quantized(21504, 5376, 2)),
            ("q3 down 5376x21504", () => Quantized(5376, 21504, 3)),
            ("q4 q_proj 8192x5376", () => Quantized(8192, 5376, 4)),
            ("q4 head 262144x5376", () => Quantized(262144, 5376, 4)),
            ("bf16 o_proj 5376x8192", () => Dense(5376, 8192)),
            ("q8 8192x5376", () => Quantized(8192, 5376, 8)),
        };
        foreach (var (name, make) in cases)
        {
            var weight = make();
            var x = backend.Allocate((long)tokens * weight.Cols);
            var y = backend.Allocate((long)tokens * weight.Rows);
            var values = new float[tokens * weight.Cols];
            var random = new Random(3);
            for (int i = 0; i < values.Length; i++)
                values[i] = (float)(random.NextDouble() * 2 - 1);
            backend.Write(x.Slice(0, values.Length), values);
            double bestWall = double.MaxValue, bestCpu = double.MaxValue;
            for (int run = 0; run < runs; run++)
            {
                var cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
                long t0 = Stopwatch.GetTimestamp();
                backend.Linear(weight, x.Slice(0, x.Length), y.Slice(0, y.Length), tokens);
                double wall = Stopwatch.GetElapsedTime(t0).TotalSeconds;
                double cpu = (Process.GetCurrentProcess().TotalProcessorTime - cpu0).TotalSeconds;
                bestWall = Math.Min(bestWall, wall);
                bestCpu = Math.Min(bestCpu, cpu);
            }
            double gb = weight.ByteSize / 1e9;
            double flops = 2.0 * weight.Rows * weight.Cols * tokens / 1e9;
            Console.WriteLine($"  {name,-24} {weight.ByteSize / 1e6,7:F1} MB  wall {bestWall * 1000,7:F2} ms {gb / bestWall,6:F1} GB/s {flops / bestWall,6:F1} GFLOP/s | cpu {bestCpu * 1000,7:F2} ms {gb / bestCpu,6:F1} GB/s");
            x.Dispose();
            y.Dispose();
        }
    }

    internal static nint Fill(long bytes, int seed)
    {
        byte* p = (byte*)NativeMemory.AlignedAlloc((nuint)bytes + 64, 64);
        new Random(seed).NextBytes(new Span<byte>(p, (int)Math.Min(bytes, 1 << 20)));
        for (long i = 1 << 20; i < bytes; i += 1 << 20)
            Buffer.MemoryCopy(p, p + i, Math.Min(1 << 20, bytes - i), Math.Min(1 << 20, bytes - i));
        return (nint)p;
    }

    /// <summary>A synthetic MLX weight (groups of 64, small finite bf16 scales and biases), native memory; shared with DecodeKernelTimes.</summary>
    internal static QuantizedWeight Quantized(int rows, int cols, int bits)
    {
        int groups = cols / 64;
        nint scales = Fill((long)rows * groups * 2, 2), biases = Fill((long)rows * groups * 2, 3);
        // Small finite bf16 scales and biases: 0x3Cxx.
        for (long i = 0; i < (long)rows * groups; i++)
        {
            ((ushort*)scales)[i] = (ushort)(0x3C00 | (((ushort*)scales)[i] & 0xFF));
            ((ushort*)biases)[i] = (ushort)(0xBC00 | (((ushort*)biases)[i] & 0xFF));
        }
        return new QuantizedWeight(Fill((long)rows * cols * bits / 8, 1), scales, biases, rows, cols, bits, 64, ScalarType.BF16);
    }

    internal static DenseWeight Dense(int rows, int cols)
    {
        nint data = Fill((long)rows * cols * 2, 4);
        for (long i = 0; i < (long)rows * cols; i++)
            ((ushort*)data)[i] = (ushort)(0x3C00 | (((ushort*)data)[i] & 0xFF));
        return new DenseWeight(data, rows, cols, ScalarType.BF16);
    }
}
