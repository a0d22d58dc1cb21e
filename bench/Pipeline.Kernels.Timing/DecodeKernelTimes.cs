using System.Diagnostics;
using System.Runtime.InteropServices;
using Pipeline.Kernels.Cpu;

namespace Pipeline.Kernels.Timing;

/// <summary>
/// The int16 decode kernels called directly on one thread, one token: each weight once small enough
/// to stay in L2 (compute-bound) and once streamed from memory (about 200 MB), best of N by thread
/// CPU time. Reports ns and TSC cycles per 128 codes (the TSC ticks at the nominal clock, not the
/// boost clock) and GB/s of weight bytes (codes, scales and biases).
/// </summary>
internal static unsafe class DecodeKernelTimes
{
    public static void Run(int runs)
    {
        double tscHz = TscHz();
        Console.WriteLine($"int16 kernels, one thread, one token, best of {runs} by thread CPU time; TSC {tscHz / 1e9:F2} GHz");
        foreach (var (bits, cols) in new[] { (2, 5376), (3, 21504), (4, 5376) })
        {
            long rowBytes = (long)cols * bits / 8 + cols / 64 * 4;
            foreach (var (label, rows, repeats) in new[] { ("L2", (int)(256 * 1024 / rowBytes), 400), ("stream", (int)(200_000_000 / rowBytes), 1) })
            {
                var w = KernelTimes.Quantized(rows, cols, bits);
                var x = new float[cols];
                var random = new Random(5);
                for (int i = 0; i < cols; i++)
                    x[i] = (float)(random.NextDouble() * 2 - 1);
                int groups = cols / 64;
                var xq = (short*)NativeMemory.AlignedAlloc((nuint)SplitActivationKernels.InputShorts(cols, bits) * 2, 64);
                var steps = (float*)NativeMemory.AlignedAlloc((nuint)groups * 4, 64);
                var sums = (float*)NativeMemory.AlignedAlloc((nuint)groups * 4, 64);
                var y = (float*)NativeMemory.AlignedAlloc((nuint)rows * 4, 64);
                double prepare = double.MaxValue;
                fixed (float* px = x)
                {
                    for (int run = 0; run < runs; run++)
                    {
                        double cpu0 = ThreadCpuSeconds();
                        SplitActivationKernels.QuantizeInput(px, cols, bits, xq, steps, sums);
                        prepare = Math.Min(prepare, ThreadCpuSeconds() - cpu0);
                    }
                }
                double best = double.MaxValue;
                for (int run = 0; run < runs; run++)
                {
                    double cpu0 = ThreadCpuSeconds();
                    for (int k = 0; k < repeats; k++)
                        SplitActivationKernels.MatVec(w, 0, rows, xq, steps, sums, y, rows, 1);
                    best = Math.Min(best, (ThreadCpuSeconds() - cpu0) / repeats);
                }
                double codes = (double)rows * cols;
                double ns = best * 1e9 / (codes / 128);
                Console.WriteLine($"  q{bits} {rows,6}x{cols} {label,-6} {rowBytes * rows / 1e6,7:F1} MB  {best * 1e3,8:F3} ms  {rowBytes * rows / best / 1e9,5:F2} GB/s  {ns,6:F2} ns = {ns * tscHz / 1e9,5:F1} TSC cycles per 128 codes; x split in {prepare * 1e6:F0} us");
                NativeMemory.AlignedFree(xq);
                NativeMemory.AlignedFree(steps);
                NativeMemory.AlignedFree(sums);
                NativeMemory.AlignedFree(y);
                NativeMemory.AlignedFree((void*)w.Packed);
                NativeMemory.AlignedFree((void*)w.Scales);
                NativeMemory.AlignedFree((void*)w.Biases);
            }
        }
    }

    // CLOCK_THREAD_CPUTIME_ID = 3: CPU time of this thread only.
    [DllImport("libc", EntryPoint = "clock_gettime")]
    private static extern int ClockGetTime(int clock, out TimeSpec time);

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds, Nanoseconds;
    }

    internal static double ThreadCpuSeconds()
    {
        ClockGetTime(3, out var t);
        return t.Seconds + t.Nanoseconds * 1e-9;
    }

    internal static double TscHz()
    {
        foreach (var line in File.ReadLines("/proc/cpuinfo"))
        {
            if (line.StartsWith("bogomips", StringComparison.Ordinal))
                return double.Parse(line[(line.IndexOf(':') + 1)..], System.Globalization.CultureInfo.InvariantCulture) / 2 * 1e6;
        }
        return 1e9;
    }
}
