using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Pipeline.Host.Benchmarks;

/// <summary>
/// The machine's memory read bandwidth, measured as llama.cpp's bandwidth.c does: threads sum
/// contiguous slices of one buffer (first touched by the thread that later reads it), best of
/// several passes, GB/s = 1e9 B/s. The buffer is native memory and is freed before returning.
/// </summary>
public static unsafe class ReadBandwidthProbe
{
    public const long DefaultBytes = 2L << 30;

    /// <summary>Best-of-<paramref name="passes"/> GB/s for 1..<paramref name="maxThreads"/> threads (index 0 = 1 thread).</summary>
    public static double[] Measure(long bytes, int maxThreads, int passes = 5)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(bytes, 1L << 20);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxThreads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(passes);
        long vectors = bytes / 64 / maxThreads * maxThreads;   // [vectors] of 64 bytes, split evenly
        var buffer = (Vector512<ulong>*)NativeMemory.AlignedAlloc((nuint)(vectors * 64), 64);
        try
        {
            RunThreads(maxThreads, (thread, count) =>
            {
                var (first, end) = Slice(vectors, thread, count);
                for (long i = first; i < end; i++)
                    buffer[i] = Vector512.Create((ulong)i);
            });
            var best = new double[maxThreads];
            ulong checksum = 0;
            for (int threads = 1; threads <= maxThreads; threads++)
            {
                var sums = new ulong[threads];
                for (int pass = 0; pass < passes; pass++)
                {
                    double seconds = RunThreads(threads, (thread, count) =>
                    {
                        var (first, end) = Slice(vectors, thread, count);
                        sums[thread] = Sum(buffer + first, end - first);
                    });
                    best[threads - 1] = Math.Max(best[threads - 1], vectors * 64.0 / seconds / 1e9);
                    foreach (ulong s in sums)
                        checksum += s;
                }
            }
            GC.KeepAlive(checksum);
            return best;
        }
        finally
        {
            NativeMemory.AlignedFree(buffer);
        }
    }

    private static (long First, long End) Slice(long vectors, int thread, int count) =>
        (vectors * thread / count, vectors * (thread + 1) / count);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static ulong Sum(Vector512<ulong>* data, long count)
    {
        // Four independent accumulators keep several loads in flight.
        Vector512<ulong> a = default, b = default, c = default, d = default;
        long i = 0;
        for (; i + 4 <= count; i += 4)
        {
            a += data[i];
            b += data[i + 1];
            c += data[i + 2];
            d += data[i + 3];
        }
        for (; i < count; i++)
            a += data[i];
        return Vector512.Sum(a + b + c + d);
    }

    /// <summary>Runs <paramref name="body"/> on <paramref name="count"/> started threads released together; returns the seconds until all finished.</summary>
    private static double RunThreads(int count, Action<int, int> body)
    {
        using var ready = new CountdownEvent(count);
        using var go = new ManualResetEventSlim();
        var threads = new Thread[count];
        for (int t = 0; t < count; t++)
        {
            int index = t;
            threads[t] = new Thread(() =>
            {
                ready.Signal();
                go.Wait();
                body(index, count);
            });
            threads[t].IsBackground = true;
            threads[t].Start();
        }
        ready.Wait();
        long start = Stopwatch.GetTimestamp();
        go.Set();
        foreach (var thread in threads)
            thread.Join();
        return Stopwatch.GetElapsedTime(start).TotalSeconds;
    }
}
