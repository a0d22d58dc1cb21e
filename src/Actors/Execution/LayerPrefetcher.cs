using System.Buffers;
using System.Diagnostics;
using System.Runtime.InteropServices;
using Pipeline.Kernels;
using Pipeline.Model.Checkpoint;

namespace Pipeline.Actors.Execution;

/// <summary>
/// Pulls a layer's memory-mapped weights into memory on a background thread while the layer before
/// it computes, so the executor does not stall on page faults (reads one byte per 4 KiB page).
/// A region the page cache already holds whole (asked with mincore) is not touched: on a warm model
/// the touching thread would only take CPU time and memory bandwidth from the kernels (on 2 cores that
/// cost the actors ~4% of decode speed). A layer found resident is not asked about again for
/// <see cref="ResidentRecheck"/>: mincore over ~100k pages per layer and step still took ~0.5% of a core.
/// Requests for layers already queued are ignored.
/// </summary>
public sealed partial class LayerPrefetcher : IDisposable
{
    private const int PageSize = 4096;
    private static readonly TimeSpan ResidentRecheck = TimeSpan.FromSeconds(1);
    private readonly (nint Address, long Bytes)[][] _regions;   // [layer] -> weight memory ranges
    private readonly long[] _residentAt;   // [layer] -> Stopwatch timestamp when last found wholly resident (0 = never)
    private readonly Queue<int> _queue = new();
    private readonly Thread _thread;
    private bool _stopping;

    public LayerPrefetcher(Gemma4Checkpoint checkpoint)
    {
        int layers = checkpoint.Text.NumHiddenLayers;
        _regions = new (nint, long)[layers][];
        _residentAt = new long[layers];
        for (int layer = 0; layer < layers; layer++)
            _regions[layer] = Regions(checkpoint.Layer(layer)).ToArray();
        _thread = new Thread(Run) { IsBackground = true, Name = "pipeline-prefetch", Priority = ThreadPriority.BelowNormal };
        _thread.Start();
    }

    /// <summary>Layers made resident: checked, and touched where the page cache lacked pages (for tests).</summary>
    public long Prefetched => Interlocked.Read(ref _prefetched);

    private long _prefetched;

    /// <summary>Weight regions left alone because the page cache held all of them (for tests).</summary>
    internal long RegionsAlreadyResident => Interlocked.Read(ref _regionsAlreadyResident);

    private long _regionsAlreadyResident;

    /// <summary>Number of weight regions (packed codes, scales, biases, dense data) of a layer.</summary>
    internal int RegionCount(int layer) => _regions[layer].Length;

    /// <summary>Queues <paramref name="layer"/>'s weights to be paged in; returns at once.</summary>
    public void Request(int layer)
    {
        if ((uint)layer >= (uint)_regions.Length)
            return;
        long residentAt = Volatile.Read(ref _residentAt[layer]);
        if (residentAt != 0 && Stopwatch.GetElapsedTime(residentAt) < ResidentRecheck)
            return;
        lock (_queue)
        {
            if (_queue.Contains(layer))
                return;
            _queue.Enqueue(layer);
            Monitor.Pulse(_queue);
        }
    }

    private void Run()
    {
        while (true)
        {
            int layer;
            lock (_queue)
            {
                while (_queue.Count == 0 && !_stopping)
                    Monitor.Wait(_queue);
                if (_stopping)
                    return;
                layer = _queue.Dequeue();
            }
            if (Touch(_regions[layer]))
                Volatile.Write(ref _residentAt[layer], Stopwatch.GetTimestamp());
            Interlocked.Increment(ref _prefetched);
        }
    }

    /// <summary>Pages in every region the page cache lacks; true when all were resident already.</summary>
    private unsafe bool Touch((nint Address, long Bytes)[] regions)
    {
        int sum = 0;
        bool allResident = true;
        foreach (var (address, bytes) in regions)
        {
            if (Resident(address, bytes))
            {
                Interlocked.Increment(ref _regionsAlreadyResident);
                continue;
            }
            allResident = false;
            byte* p = (byte*)address;
            for (long offset = 0; offset < bytes; offset += PageSize)
                sum += Volatile.Read(ref p[offset]);
        }
        GC.KeepAlive(sum);
        return allResident;
    }

    /// <summary>Whether every page of the range is in memory; false where mincore is unavailable or fails.</summary>
    private static unsafe bool Resident(nint address, long bytes)
    {
        if (!(OperatingSystem.IsLinux() || OperatingSystem.IsMacOS()) || bytes <= 0)
            return false;
        nint start = address & ~(nint)(PageSize - 1);
        long length = address + bytes - start;
        long pages = (length + PageSize - 1) / PageSize;
        byte[] states = ArrayPool<byte>.Shared.Rent((int)Math.Min(pages, int.MaxValue));
        try
        {
            if (pages > states.Length)
                return false;
            try
            {
                fixed (byte* vector = states)
                {
                    if (Native.mincore(start, (nuint)length, vector) != 0)
                        return false;
                }
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
            {
                return false;   // no libc mincore: touch every page as before
            }
            for (long i = 0; i < pages; i++)
            {
                if ((states[i] & 1) == 0)
                    return false;
            }
            return true;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(states);
        }
    }

    private static unsafe partial class Native
    {
        [LibraryImport("libc", SetLastError = true)]
        internal static partial int mincore(nint address, nuint length, byte* vector);
    }

    private static IEnumerable<(nint, long)> Regions(Gemma4LayerWeights w)
    {
        LinearWeight?[] linear = [w.QProj, w.KProj, w.VProj, w.OProj, w.Gate, w.Up, w.Down];
        foreach (var weight in linear)
        {
            switch (weight)
            {
                case QuantizedWeight q:
                    long groups = (long)q.Rows * q.GroupsPerRow * Scalars.SizeOf(q.ScaleType);
                    yield return (q.Packed, (long)q.Rows * q.WordsPerRow * 4);
                    yield return (q.Scales, groups);
                    yield return (q.Biases, groups);
                    break;
                case DenseWeight d:
                    yield return (d.Data, d.ByteSize);
                    break;
            }
        }
    }

    public void Dispose()
    {
        lock (_queue)
        {
            _stopping = true;
            Monitor.PulseAll(_queue);
        }
        _thread.Join();
    }
}
