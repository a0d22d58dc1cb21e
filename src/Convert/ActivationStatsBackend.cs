using Pipeline.Kernels;
using Pipeline.Model.Checkpoint;

namespace Pipeline.Convert;

/// <summary>
/// The hook <c>pipeline imatrix</c> needs, without touching the engine: a backend that forwards every
/// op to an inner backend and, before each <see cref="Linear"/> on a registered decoder weight, reads
/// the input rows back and adds x_j^2 per input channel and the number of rows (tokens) to that
/// weight's statistics, as llama-imatrix does for every matrix multiplication.
/// </summary>
public sealed class ActivationStatsBackend(IBackend inner) : IBackend
{
    private readonly Dictionary<nint, Statistics> _byWeight = [];
    private float[] _rows = [];

    private sealed class Statistics(string name, int width)
    {
        public string Name { get; } = name;
        public double[] SumOfSquares { get; } = new double[width];
        public long Count { get; set; }
    }

    /// <summary>Registers every decoder linear of <paramref name="checkpoint"/> under its llama.cpp name.</summary>
    public void Observe(Gemma4Checkpoint checkpoint)
    {
        for (int layer = 0; layer < checkpoint.Text.NumHiddenLayers; layer++)
        {
            var w = checkpoint.Layer(layer);
            Register(w.QProj, layer, ModuleRole.QProj);
            Register(w.KProj, layer, ModuleRole.KProj);
            if (w.VProj is not null)
                Register(w.VProj, layer, ModuleRole.VProj);
            Register(w.OProj, layer, ModuleRole.OProj);
            Register(w.Gate, layer, ModuleRole.GateProj);
            Register(w.Up, layer, ModuleRole.UpProj);
            Register(w.Down, layer, ModuleRole.DownProj);
        }
    }

    private void Register(LinearWeight weight, int layer, ModuleRole role) =>
        _byWeight[Key(weight)] = new Statistics(ImatrixNames.ToLlamaName(layer, role), weight.Cols);

    // Weight views may be rebuilt per call; the mapped data they point at identifies the tensor.
    private static nint Key(LinearWeight weight) => weight switch
    {
        QuantizedWeight q => q.Packed,
        DenseWeight d => d.Data,
        _ => throw new ArgumentException($"unknown weight type {weight.GetType().Name}", nameof(weight)),
    };

    /// <summary>The statistics gathered so far, one entry per observed weight that saw at least one token.</summary>
    public IReadOnlyList<ImatrixEntry> Entries() =>
        [.. _byWeight.Values.Where(s => s.Count > 0).OrderBy(s => s.Name, StringComparer.Ordinal)
            .Select(s => new ImatrixEntry(s.Name, [.. s.SumOfSquares.Select(v => (float)v)], s.Count))];

    public void Linear(LinearWeight weight, BufferSlice input, BufferSlice output, int rows)
    {
        if (_byWeight.TryGetValue(Key(weight), out var stats))
        {
            int width = weight.Cols;
            long length = (long)rows * width;
            if (_rows.Length < length)
                _rows = new float[length];
            var values = _rows.AsSpan(0, (int)length); // [rows, width]
            inner.Read(input.Slice(0, length), values);
            var sums = stats.SumOfSquares;
            for (int r = 0; r < rows; r++)
            {
                var row = values.Slice(r * width, width);
                for (int j = 0; j < width; j++)
                    sums[j] += (double)row[j] * row[j];
            }
            stats.Count += rows;
        }
        inner.Linear(weight, input, output, rows);
    }

    public string Name => inner.Name + "+activation-stats";
    public DeviceBuffer Allocate(long elements) => inner.Allocate(elements);
    public void Write(BufferSlice destination, ReadOnlySpan<float> source) => inner.Write(destination, source);
    public void Read(BufferSlice source, Span<float> destination) => inner.Read(source, destination);
    public void Synchronize() => inner.Synchronize();
    public void Copy(BufferSlice source, BufferSlice destination) => inner.Copy(source, destination);
    public void Embed(LinearWeight table, ReadOnlySpan<int> ids, float scale, BufferSlice output) => inner.Embed(table, ids, scale, output);
    public void RmsNorm(BufferSlice input, BufferSlice output, DenseWeight? weight, int rows, int dim, float eps) =>
        inner.RmsNorm(input, output, weight, rows, dim, eps);
    public void Rope(BufferSlice x, ReadOnlySpan<int> positions, int heads, int headDim, BufferSlice inverseFrequencies) =>
        inner.Rope(x, positions, heads, headDim, inverseFrequencies);
    public void Attention(
        BufferSlice queries, BufferSlice blockKeys, BufferSlice blockValues, KvStore cache, int startPosition, int tokens,
        AttentionShape shape, BufferSlice output, ReadOnlySpan<TokenRange> bidirectional) =>
        inner.Attention(queries, blockKeys, blockValues, cache, startPosition, tokens, shape, output, bidirectional);
    public void StoreKv(BufferSlice blockKeys, BufferSlice blockValues, KvStore cache, int startPosition, int tokens, int kvWidth) =>
        inner.StoreKv(blockKeys, blockValues, cache, startPosition, tokens, kvWidth);
    public void GeGlu(BufferSlice gate, BufferSlice up, BufferSlice output) => inner.GeGlu(gate, up, output);
    public void Add(BufferSlice a, BufferSlice b, BufferSlice output) => inner.Add(a, b, output);
    public void Scale(BufferSlice x, float factor) => inner.Scale(x, factor);
    public void Softcap(BufferSlice x, float cap) => inner.Softcap(x, cap);

    /// <summary>Disposes nothing: the inner backend belongs to whoever created it.</summary>
    public void Dispose()
    {
    }
}
