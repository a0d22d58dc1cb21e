using System.Diagnostics;
using Pipeline.Kernels;

namespace Pipeline.Host.Benchmarks;

/// <summary>Totals of one op kind over a timed pass: calls, seconds, bytes moved and floating-point operations.</summary>
public sealed class OpTotals(string op)
{
    public string Op { get; } = op;
    public long Calls { get; set; }
    public double Seconds { get; set; }
    public double Bytes { get; set; }
    public double Flops { get; set; }
    public double GBs => Seconds > 0 ? Bytes / Seconds / 1e9 : 0;
    public double GFlops => Seconds > 0 ? Flops / Seconds / 1e9 : 0;
}

/// <summary>
/// A pass-through <see cref="IBackend"/> that, while <see cref="Timing"/> is on, synchronizes after
/// every op and adds its wall time, bytes (weights plus activations read and written) and flops to
/// a per-op-kind total. Off, it only forwards (one flag test per op), so the headline runs go
/// through the same object without paying for the per-op synchronization.
/// Linear ops are keyed by weight format ("linear q4", "linear bf16", ...); the tied head, recognized
/// by its row count, gets its own key ("head q4").
/// </summary>
public sealed class TimingBackend(IBackend inner) : IBackend
{
    private readonly Dictionary<string, OpTotals> _totals = [];
    private readonly Stopwatch _clock = new();

    public bool Timing { get; set; }

    /// <summary>Rows of the tied output head (the vocabulary size): Linear ops over such a weight are keyed "head".</summary>
    public int HeadRows { get; set; } = -1;

    public IBackend Inner => inner;

    public string Name => inner.Name;

    /// <summary>Totals per op kind since the last <see cref="Reset"/>, slowest first.</summary>
    public IReadOnlyList<OpTotals> Totals => [.. _totals.Values.OrderByDescending(t => t.Seconds)];

    public void Reset() => _totals.Clear();

    public DeviceBuffer Allocate(long elements) => inner.Allocate(elements);

    public void Write(BufferSlice destination, ReadOnlySpan<float> source) => inner.Write(destination, source);

    public void Read(BufferSlice source, Span<float> destination) => inner.Read(source, destination);

    public void Synchronize() => inner.Synchronize();

    public void Copy(BufferSlice source, BufferSlice destination)
    {
        Begin();
        inner.Copy(source, destination);
        End("copy", 8.0 * source.Length, 0);
    }

    public void Linear(LinearWeight weight, BufferSlice input, BufferSlice output, int rows)
    {
        Begin();
        inner.Linear(weight, input, output, rows);
        if (Timing)
        {
            string kind = weight is QuantizedWeight q ? $"q{q.Bits}" : ((DenseWeight)weight).Type.ToString().ToLowerInvariant();
            End((weight.Rows == HeadRows ? "head " : "linear ") + kind,
                weight.ByteSize + 4.0 * (input.Length + output.Length), 2.0 * rows * weight.Rows * weight.Cols);
        }
    }

    public void Embed(LinearWeight table, ReadOnlySpan<int> ids, float scale, BufferSlice output)
    {
        Begin();
        inner.Embed(table, ids, scale, output);
        End("embed", (double)table.ByteSize / table.Rows * ids.Length + 4.0 * output.Length, output.Length);
    }

    public void RmsNorm(BufferSlice input, BufferSlice output, DenseWeight? weight, int rows, int dim, float eps)
    {
        Begin();
        inner.RmsNorm(input, output, weight, rows, dim, eps);
        End("rmsnorm", 8.0 * input.Length + (weight?.ByteSize ?? 0), 4.0 * input.Length);
    }

    public void Rope(BufferSlice x, ReadOnlySpan<int> positions, int heads, int headDim, BufferSlice inverseFrequencies)
    {
        Begin();
        inner.Rope(x, positions, heads, headDim, inverseFrequencies);
        End("rope", 8.0 * x.Length, 3.0 * x.Length);
    }

    public void Attention(
        BufferSlice queries, BufferSlice blockKeys, BufferSlice blockValues, KvStore cache, int startPosition, int tokens,
        AttentionShape shape, BufferSlice output, ReadOnlySpan<TokenRange> bidirectional)
    {
        Begin();
        inner.Attention(queries, blockKeys, blockValues, cache, startPosition, tokens, shape, output, bidirectional);
        if (Timing)
        {
            // Keys seen by the last query: the cached ones (window permitting) plus the block's own.
            long seen = Math.Min(startPosition + tokens, shape.Window > 0 ? shape.Window : int.MaxValue);
            double kvBytes = 2.0 * 4 * seen * shape.KvWidth;
            double flops = 4.0 * tokens * shape.Heads * shape.HeadDim * seen;
            End($"attention d{shape.HeadDim}", kvBytes + 8.0 * queries.Length, flops);
        }
    }

    public void StoreKv(BufferSlice blockKeys, BufferSlice blockValues, KvStore cache, int startPosition, int tokens, int kvWidth)
    {
        Begin();
        inner.StoreKv(blockKeys, blockValues, cache, startPosition, tokens, kvWidth);
        End("store-kv", 16.0 * tokens * kvWidth, 0);
    }

    public void GeGlu(BufferSlice gate, BufferSlice up, BufferSlice output)
    {
        Begin();
        inner.GeGlu(gate, up, output);
        End("geglu", 12.0 * output.Length, 12.0 * output.Length);
    }

    public void Add(BufferSlice a, BufferSlice b, BufferSlice output)
    {
        Begin();
        inner.Add(a, b, output);
        End("add", 12.0 * output.Length, output.Length);
    }

    public void Scale(BufferSlice x, float factor)
    {
        Begin();
        inner.Scale(x, factor);
        End("scale", 8.0 * x.Length, x.Length);
    }

    public void Softcap(BufferSlice x, float cap)
    {
        Begin();
        inner.Softcap(x, cap);
        End("softcap", 8.0 * x.Length, 3.0 * x.Length);
    }

    public void Dispose() => inner.Dispose();

    private void Begin()
    {
        if (Timing)
        {
            // Work enqueued before this op is not charged to it.
            inner.Synchronize();
            _clock.Restart();
        }
    }

    private void End(string op, double bytes, double flops)
    {
        if (!Timing)
            return;
        inner.Synchronize();
        double seconds = _clock.Elapsed.TotalSeconds;
        if (!_totals.TryGetValue(op, out var totals))
            _totals[op] = totals = new OpTotals(op);
        totals.Calls++;
        totals.Seconds += seconds;
        totals.Bytes += bytes;
        totals.Flops += flops;
    }
}
