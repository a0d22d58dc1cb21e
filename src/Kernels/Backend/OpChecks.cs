namespace Pipeline.Kernels;

/// <summary>Shape checks every backend runs at enqueue time, so all backends reject the same mistakes alike.</summary>
public static class OpChecks
{
    public static void Length(BufferSlice slice, long expected, string name)
    {
        if (slice.Length != expected)
            throw new ArgumentException($"{name} has {slice.Length} elements, expected {expected}", name);
    }

    public static void SameLength(BufferSlice a, BufferSlice b, string nameA, string nameB)
    {
        if (a.Length != b.Length)
            throw new ArgumentException($"{nameA} has {a.Length} elements but {nameB} has {b.Length}", nameB);
    }

    public static void Linear(LinearWeight weight, BufferSlice input, BufferSlice output, int rows)
    {
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rows);
        Length(input, (long)rows * weight.Cols, nameof(input));
        Length(output, (long)rows * weight.Rows, nameof(output));
        if (input.Buffer == output.Buffer && input.Offset < output.Offset + output.Length && output.Offset < input.Offset + input.Length)
            throw new ArgumentException("Linear output overlaps its input", nameof(output));
    }

    public static void Embed(LinearWeight table, ReadOnlySpan<int> ids, BufferSlice output)
    {
        ArgumentNullException.ThrowIfNull(table);
        foreach (int id in ids)
        {
            if ((uint)id >= (uint)table.Rows)
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"token id {id} is outside the embedding table of {table.Rows} rows");
        }
        Length(output, (long)ids.Length * table.Cols, nameof(output));
    }

    public static void RmsNorm(BufferSlice input, BufferSlice output, DenseWeight? weight, int rows, int dim)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dim);
        Length(input, (long)rows * dim, nameof(input));
        Length(output, (long)rows * dim, nameof(output));
        if (weight is not null && (long)weight.Rows * weight.Cols != dim)
            throw new ArgumentException($"norm weight is [{weight.Rows}, {weight.Cols}], expected {dim} values", nameof(weight));
    }

    public static void Rope(BufferSlice x, ReadOnlySpan<int> positions, int heads, int headDim, BufferSlice inverseFrequencies)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(heads);
        if (headDim <= 0 || headDim % 2 != 0)
            throw new ArgumentException($"RoPE head dim must be positive and even, found {headDim}", nameof(headDim));
        Length(x, (long)positions.Length * heads * headDim, nameof(x));
        Length(inverseFrequencies, headDim / 2, nameof(inverseFrequencies));
    }

    public static void Attention(
        BufferSlice queries, BufferSlice blockKeys, BufferSlice blockValues, KvStore cache,
        int startPosition, int tokens, AttentionShape shape, BufferSlice output, ReadOnlySpan<TokenRange> bidirectional)
    {
        shape.Validate();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(tokens);
        ArgumentOutOfRangeException.ThrowIfNegative(startPosition);
        Length(queries, (long)tokens * shape.QueryWidth, nameof(queries));
        Length(output, (long)tokens * shape.QueryWidth, nameof(output));
        Length(blockKeys, (long)tokens * shape.KvWidth, nameof(blockKeys));
        Length(blockValues, (long)tokens * shape.KvWidth, nameof(blockValues));
        Store(cache, shape.KvWidth);
        // The cache must hold every earlier position a query may see.
        int oldestNeeded = shape.Window == 0 ? 0 : Math.Max(0, startPosition - shape.Window + 1);
        if (startPosition - oldestNeeded > cache.Capacity)
            throw new ArgumentException(
                $"a cache of {cache.Capacity} slots cannot hold positions {oldestNeeded}..{startPosition - 1} needed by the block", nameof(cache));
        foreach (var range in bidirectional)
        {
            if (range.Start < 0 || range.End > tokens || range.Start >= range.End)
                throw new ArgumentOutOfRangeException(nameof(bidirectional), range, $"bidirectional range must lie in [0, {tokens})");
        }
    }

    public static void Store(KvStore cache, int kvWidth)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cache.Capacity);
        Length(cache.Keys, (long)cache.Capacity * kvWidth, "cache.Keys");
        Length(cache.Values, (long)cache.Capacity * kvWidth, "cache.Values");
    }

    public static void StoreKv(BufferSlice blockKeys, BufferSlice blockValues, KvStore cache, int startPosition, int tokens, int kvWidth)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(tokens);
        ArgumentOutOfRangeException.ThrowIfNegative(startPosition);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(kvWidth);
        Length(blockKeys, (long)tokens * kvWidth, nameof(blockKeys));
        Length(blockValues, (long)tokens * kvWidth, nameof(blockValues));
        Store(cache, kvWidth);
    }
}
