using Pipeline.Kernels;
using Pipeline.Model.Checkpoint;

namespace Pipeline.Actors.Execution;

/// <summary>
/// Pulls a layer's memory-mapped weights into memory on a background thread while the layer before
/// it computes, so the executor does not stall on page faults (reads one byte per 4 KiB page; pages
/// already resident cost a load each). Requests for layers already queued or done are ignored
/// until the layer comes round again.
/// </summary>
public sealed class LayerPrefetcher : IDisposable
{
    private const int PageSize = 4096;
    private readonly (nint Address, long Bytes)[][] _regions;   // [layer] -> weight memory ranges
    private readonly Queue<int> _queue = new();
    private readonly Thread _thread;
    private bool _stopping;

    public LayerPrefetcher(Gemma4Checkpoint checkpoint)
    {
        int layers = checkpoint.Text.NumHiddenLayers;
        _regions = new (nint, long)[layers][];
        for (int layer = 0; layer < layers; layer++)
            _regions[layer] = Regions(checkpoint.Layer(layer)).ToArray();
        _thread = new Thread(Run) { IsBackground = true, Name = "pipeline-prefetch", Priority = ThreadPriority.BelowNormal };
        _thread.Start();
    }

    /// <summary>Layers whose pages were touched (for tests).</summary>
    public long Prefetched => Interlocked.Read(ref _prefetched);

    private long _prefetched;

    /// <summary>Queues <paramref name="layer"/>'s weights to be paged in; returns at once.</summary>
    public void Request(int layer)
    {
        if ((uint)layer >= (uint)_regions.Length)
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
            Touch(_regions[layer]);
            Interlocked.Increment(ref _prefetched);
        }
    }

    private static unsafe void Touch((nint Address, long Bytes)[] regions)
    {
        int sum = 0;
        foreach (var (address, bytes) in regions)
        {
            byte* p = (byte*)address;
            for (long offset = 0; offset < bytes; offset += PageSize)
                sum += Volatile.Read(ref p[offset]);
        }
        GC.KeepAlive(sum);
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
