using System.Runtime.InteropServices;
using Pipeline.Kernels.Cpu;

namespace Pipeline.Kernels.Timing;

/// <summary>
/// The small-M Linear kernel (<see cref="SmallGemmKernels"/>) and the blocked GEMM (<see cref="GemmKernels"/>)
/// called directly on one thread, 2-16 tokens, each weight once small enough to stay in L2 (compute-bound)
/// and once streamed from memory (about 100 MB), alternated, best of N by thread CPU time. Reports TSC
/// cycles per 8 weights per token (the FMA floor of an f32-exact kernel is 0.5: two 8-lane FMAs per cycle).
/// </summary>
internal static unsafe class SmallGemmTimes
{
    public static void Run(int runs, string kinds, int[] tokenCounts)
    {
        double tscHz = DecodeKernelTimes.TscHz();
        Console.WriteLine($"small-M vs GEMM, one thread, best of {runs} by thread CPU time; TSC {tscHz / 1e9:F2} GHz; TSC cycles per 8 weights per token");
        foreach (string kind in kinds.Split(','))
        {
            int fullCols = kind switch { "q3" => 21504, "bf16" => 8192, _ => 5376 };
            int bits = kind switch { "q2" => 2, "q3" => 3, "q4" => 4, "q8" => 8, _ => 16 };
            long rowBytes = (long)fullCols * bits / 8 + (bits < 16 ? fullCols / 64 * 4 : 0);
            int cols;
            foreach (var (label, rows, width) in new[] { ("L1", 64, 512), ("L2", (int)(256 * 1024 / rowBytes), fullCols), ("stream", (int)(100_000_000 / rowBytes), fullCols) })
            {
                cols = width;
                LinearWeight w = bits < 16 ? KernelTimes.Quantized(rows, cols, bits) : KernelTimes.Dense(rows, cols);
                int most = tokenCounts.Max();
                var x = (float*)NativeMemory.AlignedAlloc((nuint)most * (nuint)cols * 4, 64);
                var random = new Random(5);
                for (long i = 0; i < (long)most * cols; i++)
                    x[i] = (float)(random.NextDouble() * 2 - 1);
                var packed = (float*)NativeMemory.AlignedAlloc((nuint)SmallGemmKernels.PackedInputFloats(most, cols) * 4, 64);
                var y = (float*)NativeMemory.AlignedAlloc((nuint)most * (nuint)rows * 4, 64);
                var scratch = (float*)NativeMemory.AlignedAlloc((nuint)Math.Max(SmallGemmKernels.ScratchFloats, GemmKernels.ScratchFloats) * 4, 64);
                int repeats = label == "stream" ? 1 : 50;
                foreach (int tokens in tokenCounts)
                {
                    double small = double.MaxValue, gemm = double.MaxValue;
                    for (int run = 0; run < runs; run++)
                    {
                        double t0 = DecodeKernelTimes.ThreadCpuSeconds();
                        for (int k = 0; k < repeats; k++)
                        {
                            SmallGemmKernels.PackInput(x, tokens, cols, packed);
                            SmallGemmKernels.Multiply(w, 0, rows, packed, tokens, y, scratch);
                        }
                        double t1 = DecodeKernelTimes.ThreadCpuSeconds();
                        for (int k = 0; k < repeats; k++)
                            GemmKernels.Multiply(w, 0, rows, x, tokens, y, scratch);
                        double t2 = DecodeKernelTimes.ThreadCpuSeconds();
                        small = Math.Min(small, (t1 - t0) / repeats);
                        gemm = Math.Min(gemm, (t2 - t1) / repeats);
                    }
                    // The split-activation matvec (the 1-3 token path before), where it applies.
                    double split = double.NaN;
                    if (w is QuantizedWeight q && SplitActivationKernels.Supports(q) && tokens <= 3)
                    {
                        int groups = cols / 64, shorts = SplitActivationKernels.InputShorts(cols, bits);
                        var xq = (short*)NativeMemory.AlignedAlloc((nuint)(tokens * shorts) * 2, 64);
                        var xSteps = (float*)NativeMemory.AlignedAlloc((nuint)(tokens * groups) * 4, 64);
                        var xSums = (float*)NativeMemory.AlignedAlloc((nuint)(tokens * groups) * 4, 64);
                        split = double.MaxValue;
                        for (int run = 0; run < runs; run++)
                        {
                            double t0 = DecodeKernelTimes.ThreadCpuSeconds();
                            for (int k = 0; k < repeats; k++)
                            {
                                for (int t = 0; t < tokens; t++)
                                    SplitActivationKernels.QuantizeInput(x + (long)t * cols, cols, bits, xq + (long)t * shorts, xSteps + t * groups, xSums + t * groups);
                                for (int r = 0; r < rows; r += 16)
                                    SplitActivationKernels.MatVec(q, r, Math.Min(rows, r + 16), xq, xSteps, xSums, y, rows, tokens);
                            }
                            split = Math.Min(split, (DecodeKernelTimes.ThreadCpuSeconds() - t0) / repeats);
                        }
                        NativeMemory.AlignedFree(xq);
                        NativeMemory.AlignedFree(xSteps);
                        NativeMemory.AlignedFree(xSums);
                    }
                    double steps = (double)rows * cols / 8 * tokens;
                    Console.WriteLine($"  {kind,-4} {rows,6}x{cols} {label,-6} T={tokens,2}  small {small * 1e3,8:F3} ms {small * tscHz / steps,5:F2} cyc | gemm {gemm * 1e3,8:F3} ms {gemm * tscHz / steps,5:F2} cyc" + (double.IsNaN(split) ? "" : $" | split {split * 1e3,8:F3} ms {split * tscHz / steps,5:F2} cyc"));
                }
                NativeMemory.AlignedFree(x);
                NativeMemory.AlignedFree(packed);
                NativeMemory.AlignedFree(y);
                NativeMemory.AlignedFree(scratch);
            }
        }
    }
}
