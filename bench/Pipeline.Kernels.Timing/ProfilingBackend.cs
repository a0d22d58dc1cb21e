using System.Diagnostics;

namespace Pipeline.Kernels.Timing;

/// <summary>
/// Wraps a synchronous backend and adds each op's wall time (and, for Linear, the weight bytes it
/// streamed) to a per-category total, so a decode step can be broken down by op.
/// </summary>
internal sealed class ProfilingBackend(IBackend inner) : IBackend
{
    public sealed class Entry
    {
        public long Ticks, Calls, Bytes;
    }

    public Dictionary<string, Entry> Entries { get; } = [];
    public bool Enabled { get; set; }

    public string Name => inner.Name;

    public void Reset() => Entries.Clear();

    private long Start() => Enabled ? Stopwatch.GetTimestamp() : 0;

    private void Stop(long start, string category, long bytes = 0)
    {
        if (!Enabled)
            return;
        long elapsed = Stopwatch.GetTimestamp() - start;
        if (!Entries.TryGetValue(category, out var entry))
            Entries[category] = entry = new Entry();
        entry.Ticks += elapsed;
        entry.Calls++;
        entry.Bytes += bytes;
    }

    private static string Describe(LinearWeight weight, int rows) => weight switch
    {
        QuantizedWeight q => $"linear q{q.Bits} {q.Rows}x{q.Cols}{(rows > 1 ? " T>1" : "")}",
        DenseWeight d => $"linear {d.Type} {d.Rows}x{d.Cols}{(rows > 1 ? " T>1" : "")}",
        _ => "linear ?",
    };

    public DeviceBuffer Allocate(long elements) => inner.Allocate(elements);

    public void Write(BufferSlice destination, ReadOnlySpan<float> source) => inner.Write(destination, source);

    public void Read(BufferSlice source, Span<float> destination)
    {
        long s = Start();
        inner.Read(source, destination);
        Stop(s, "read");
    }

    public void Synchronize() => inner.Synchronize();

    public void Copy(BufferSlice source, BufferSlice destination)
    {
        long s = Start();
        inner.Copy(source, destination);
        Stop(s, "copy");
    }

    public void Linear(LinearWeight weight, BufferSlice input, BufferSlice output, int rows)
    {
        long s = Start();
        inner.Linear(weight, input, output, rows);
        Stop(s, Describe(weight, rows), weight.ByteSize);
    }

    public void Embed(LinearWeight table, ReadOnlySpan<int> ids, float scale, BufferSlice output)
    {
        long s = Start();
        inner.Embed(table, ids, scale, output);
        Stop(s, "embed");
    }

    public void RmsNorm(BufferSlice input, BufferSlice output, DenseWeight? weight, int rows, int dim, float eps)
    {
        long s = Start();
        inner.RmsNorm(input, output, weight, rows, dim, eps);
        Stop(s, "rmsnorm");
    }

    public void Rope(BufferSlice x, ReadOnlySpan<int> positions, int heads, int headDim, BufferSlice inverseFrequencies)
    {
        long s = Start();
        inner.Rope(x, positions, heads, headDim, inverseFrequencies);
        Stop(s, "rope");
    }

    public void Attention(BufferSlice queries, BufferSlice blockKeys, BufferSlice blockValues, KvStore cache, int startPosition, int tokens, AttentionShape shape, BufferSlice output, ReadOnlySpan<TokenRange> bidirectional)
    {
        long s = Start();
        inner.Attention(queries, blockKeys, blockValues, cache, startPosition, tokens, shape, output, bidirectional);
        Stop(s, $"attention d{shape.HeadDim}");
    }

    public void StoreKv(BufferSlice blockKeys, BufferSlice blockValues, KvStore cache, int startPosition, int tokens, int kvWidth)
    {
        long s = Start();
        inner.StoreKv(blockKeys, blockValues, cache, startPosition, tokens, kvWidth);
        Stop(s, "storekv");
    }

    public void GeGlu(BufferSlice gate, BufferSlice up, BufferSlice output)
    {
        long s = Start();
        inner.GeGlu(gate, up, output);
        Stop(s, "geglu");
    }

    public void Add(BufferSlice a, BufferSlice b, BufferSlice output)
    {
        long s = Start();
        inner.Add(a, b, output);
        Stop(s, "add");
    }

    public void Scale(BufferSlice x, float factor)
    {
        long s = Start();
        inner.Scale(x, factor);
        Stop(s, "scale");
    }

    public void Softcap(BufferSlice x, float cap)
    {
        long s = Start();
        inner.Softcap(x, cap);
        Stop(s, "softcap");
    }

    public void Dispose() => inner.Dispose();
}
