namespace Pipeline.Kernels.Reference;

/// <summary>
/// The reference twin of every backend op: plain scalar loops, double accumulation, element-by-element
/// dequantization straight from the packed layout documented on <see cref="QuantizedWeight"/>.
/// Slow by design; the conformance tests hold the fast backends to it, and it can run a whole
/// (tiny) model. Executes immediately.
/// </summary>
public sealed class ReferenceBackend : IBackend
{
    public string Name => "reference";

    public DeviceBuffer Allocate(long elements)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(elements);
        return new ReferenceBuffer(this, elements);
    }

    public void Write(BufferSlice destination, ReadOnlySpan<float> source)
    {
        OpChecks.Length(destination, source.Length, nameof(destination));
        source.CopyTo(Span(destination));
    }

    public void Read(BufferSlice source, Span<float> destination)
    {
        OpChecks.Length(source, destination.Length, nameof(source));
        Span(source).CopyTo(destination);
    }

    public void Synchronize()
    {
    }

    public void Copy(BufferSlice source, BufferSlice destination)
    {
        OpChecks.SameLength(source, destination, nameof(source), nameof(destination));
        Span(source).CopyTo(Span(destination));
    }

    public void Linear(LinearWeight weight, BufferSlice input, BufferSlice output, int rows)
    {
        OpChecks.Linear(weight, input, output, rows);
        var x = Span(input);
        var y = Span(output);
        var row = new float[weight.Cols];
        for (int r = 0; r < weight.Rows; r++)
        {
            for (int c = 0; c < weight.Cols; c++)
                row[c] = ReferenceWeights.At(weight, r, c);
            for (int t = 0; t < rows; t++)
            {
                double sum = 0;
                for (int c = 0; c < weight.Cols; c++)
                    sum += (double)row[c] * x[t * weight.Cols + c];
                y[t * weight.Rows + r] = (float)sum;
            }
        }
    }

    public void Embed(LinearWeight table, ReadOnlySpan<int> ids, float scale, BufferSlice output)
    {
        OpChecks.Embed(table, ids, output);
        var y = Span(output);
        for (int t = 0; t < ids.Length; t++)
        {
            for (int c = 0; c < table.Cols; c++)
                y[t * table.Cols + c] = ReferenceWeights.At(table, ids[t], c) * scale;
        }
    }

    public void RmsNorm(BufferSlice input, BufferSlice output, DenseWeight? weight, int rows, int dim, float eps)
    {
        OpChecks.RmsNorm(input, output, weight, rows, dim);
        var x = Span(input);
        var y = Span(output);
        for (int r = 0; r < rows; r++)
        {
            double squares = 0;
            for (int i = 0; i < dim; i++)
                squares += (double)x[r * dim + i] * x[r * dim + i];
            float inv = (float)(1.0 / Math.Sqrt(squares / dim + eps));
            for (int i = 0; i < dim; i++)
            {
                float w = weight is null ? 1f : Scalars.Load(weight.Data, i, weight.Type);
                y[r * dim + i] = x[r * dim + i] * inv * w;
            }
        }
    }

    public void Rope(BufferSlice x, ReadOnlySpan<int> positions, int heads, int headDim, BufferSlice inverseFrequencies)
    {
        OpChecks.Rope(x, positions, heads, headDim, inverseFrequencies);
        var data = Span(x);
        var inv = Span(inverseFrequencies);
        int half = headDim / 2;
        for (int t = 0; t < positions.Length; t++)
        {
            for (int h = 0; h < heads; h++)
            {
                int baseIndex = (t * heads + h) * headDim;
                for (int j = 0; j < half; j++)
                {
                    double angle = (double)positions[t] * inv[j];
                    double cos = Math.Cos(angle), sin = Math.Sin(angle);
                    double a = data[baseIndex + j], b = data[baseIndex + j + half];
                    data[baseIndex + j] = (float)(a * cos - b * sin);
                    data[baseIndex + j + half] = (float)(b * cos + a * sin);
                }
            }
        }
    }

    public void Attention(
        BufferSlice queries, BufferSlice blockKeys, BufferSlice blockValues, KvStore cache,
        int startPosition, int tokens, AttentionShape shape, BufferSlice output, ReadOnlySpan<TokenRange> bidirectional)
    {
        OpChecks.Attention(queries, blockKeys, blockValues, cache, startPosition, tokens, shape, output, bidirectional);
        var q = Span(queries);
        var o = Span(output);
        int d = shape.HeadDim, group = shape.Heads / shape.KvHeads;
        int total = startPosition + tokens;
        var weights = new double[total];
        for (int t = 0; t < tokens; t++)
        {
            int i = startPosition + t;
            for (int h = 0; h < shape.Heads; h++)
            {
                int kvHead = h / group;
                double max = double.NegativeInfinity;
                for (int j = 0; j < total; j++)
                {
                    weights[j] = double.NegativeInfinity;
                    if (!Visible(i, j, startPosition, shape.Window, bidirectional))
                        continue;
                    var k = KeyOrValue(blockKeys, cache.Keys, cache.Capacity, startPosition, j, kvHead, shape);
                    double dot = 0;
                    for (int e = 0; e < d; e++)
                        dot += (double)q[(t * shape.Heads + h) * d + e] * k[e];
                    weights[j] = dot * shape.Scale;
                    max = Math.Max(max, weights[j]);
                }
                double sum = 0;
                for (int j = 0; j < total; j++)
                {
                    weights[j] = double.IsNegativeInfinity(weights[j]) ? 0 : Math.Exp(weights[j] - max);
                    sum += weights[j];
                }
                for (int e = 0; e < d; e++)
                {
                    double acc = 0;
                    for (int j = 0; j < total; j++)
                    {
                        if (weights[j] != 0)
                            acc += weights[j] * KeyOrValue(blockValues, cache.Values, cache.Capacity, startPosition, j, kvHead, shape)[e];
                    }
                    o[(t * shape.Heads + h) * d + e] = (float)(acc / sum);
                }
            }
        }
    }

    /// <summary>Whether query position i sees key position j (block starts at startPosition).</summary>
    public static bool Visible(int i, int j, int startPosition, int window, ReadOnlySpan<TokenRange> bidirectional)
    {
        if (window > 0 && i - j >= window)
            return false;
        if (j <= i)
            return true;
        foreach (var range in bidirectional)
        {
            int lo = startPosition + range.Start, hi = startPosition + range.End;
            if (i >= lo && i < hi && j >= lo && j < hi)
                return true;
        }
        return false;
    }

    private ReadOnlySpan<float> KeyOrValue(BufferSlice block, BufferSlice cache, int capacity, int startPosition, int position, int kvHead, AttentionShape shape)
    {
        int d = shape.HeadDim;
        return position >= startPosition
            ? Span(block).Slice(((position - startPosition) * shape.KvHeads + kvHead) * d, d)
            : Span(cache).Slice(((position % capacity) * shape.KvHeads + kvHead) * d, d);
    }

    public void StoreKv(BufferSlice blockKeys, BufferSlice blockValues, KvStore cache, int startPosition, int tokens, int kvWidth)
    {
        OpChecks.StoreKv(blockKeys, blockValues, cache, startPosition, tokens, kvWidth);
        for (int t = Math.Max(0, tokens - cache.Capacity); t < tokens; t++)
        {
            int slot = (startPosition + t) % cache.Capacity;
            Span(blockKeys).Slice(t * kvWidth, kvWidth).CopyTo(Span(cache.Keys).Slice(slot * kvWidth, kvWidth));
            Span(blockValues).Slice(t * kvWidth, kvWidth).CopyTo(Span(cache.Values).Slice(slot * kvWidth, kvWidth));
        }
    }

    public void GeGlu(BufferSlice gate, BufferSlice up, BufferSlice output)
    {
        OpChecks.SameLength(gate, up, nameof(gate), nameof(up));
        OpChecks.SameLength(gate, output, nameof(gate), nameof(output));
        var g = Span(gate);
        var u = Span(up);
        var y = Span(output);
        for (int i = 0; i < y.Length; i++)
            y[i] = (float)(GeluTanh(g[i]) * u[i]);
    }

    /// <summary>gelu_tanh(x) = 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))).</summary>
    public static double GeluTanh(double x) => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));

    public void Add(BufferSlice a, BufferSlice b, BufferSlice output)
    {
        OpChecks.SameLength(a, b, nameof(a), nameof(b));
        OpChecks.SameLength(a, output, nameof(a), nameof(output));
        var x = Span(a);
        var z = Span(b);
        var y = Span(output);
        for (int i = 0; i < y.Length; i++)
            y[i] = x[i] + z[i];
    }

    public void Scale(BufferSlice x, float factor)
    {
        var data = Span(x);
        for (int i = 0; i < data.Length; i++)
            data[i] *= factor;
    }

    public void Softcap(BufferSlice x, float cap)
    {
        var data = Span(x);
        for (int i = 0; i < data.Length; i++)
            data[i] = (float)(cap * Math.Tanh(data[i] / (double)cap));
    }

    public void Dispose()
    {
    }

    private Span<float> Span(BufferSlice slice)
    {
        if (slice.Buffer is not ReferenceBuffer buffer || buffer.Owner != this)
            throw new ArgumentException($"buffer {slice} was not allocated by this {Name} backend");
        return buffer.Data.AsSpan(checked((int)slice.Offset), checked((int)slice.Length));
    }

    private sealed class ReferenceBuffer(IBackend owner, long length) : DeviceBuffer(owner, length)
    {
        public float[] Data { get; } = new float[length];

        public override void Dispose()
        {
        }
    }
}
