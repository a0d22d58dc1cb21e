namespace Pipeline.Kernels;

/// <summary>
/// The primitive operations the Gemma-4 forward pass is written against.
/// <para>
/// <b>Execution model.</b> Every operation ENQUEUES work on buffers the backend owns
/// (<see cref="DeviceBuffer"/>, f32 elements) and returns; operations run in the order they were
/// enqueued, each seeing the results of the ones before it. A backend may execute immediately (the CPU
/// backend does) or record into command buffers and run them later (a Metal backend), so a caller
/// must not assume an op has finished when it returns. The only points where the host waits for
/// the device are <see cref="Read"/> (waits for all enqueued work, then copies out) and
/// <see cref="Synchronize"/>.
/// </para>
/// <para>
/// <b>Host inputs.</b> Spans passed to an op (token ids, positions, uploaded values, bidirectional
/// ranges) are copied when the op is enqueued; the caller may reuse them at once. Weights
/// (<see cref="LinearWeight"/>, <see cref="DenseWeight"/>) are views of memory that outlives the
/// backend (memory-mapped checkpoints); a device backend may wrap them zero-copy and cache the
/// wrapper per weight object.
/// </para>
/// <para>
/// <b>Shapes.</b> Activations are row-major: a "row" is one token. Ops take slices; each op checks
/// the slice lengths against the shape it is given and throws <see cref="ArgumentException"/> on a
/// mismatch at enqueue time. Unless noted, an output may alias its input exactly (in-place) but not
/// partially.
/// </para>
/// <para>
/// <b>Threading.</b> A backend is used from one thread at a time (the caller serializes).
/// </para>
/// </summary>
public interface IBackend : IDisposable
{
    string Name { get; }

    /// <summary>A new buffer of <paramref name="elements"/> f32 values, all zero.</summary>
    DeviceBuffer Allocate(long elements);

    /// <summary>Enqueues an upload of <paramref name="source"/> into <paramref name="destination"/> (same length).</summary>
    void Write(BufferSlice destination, ReadOnlySpan<float> source);

    /// <summary>Sync point: waits for all enqueued work, then copies <paramref name="source"/> out (same length).</summary>
    void Read(BufferSlice source, Span<float> destination);

    /// <summary>Sync point: returns when all enqueued work has finished.</summary>
    void Synchronize();

    /// <summary>destination = source (same length, no overlap).</summary>
    void Copy(BufferSlice source, BufferSlice destination);

    /// <summary>
    /// y[rows, W.Rows] = x[rows, W.Cols] W^T for a quantized or dense (f32/f16/bf16) weight; a
    /// matvec when rows = 1. Output must not alias the input.
    /// </summary>
    void Linear(LinearWeight weight, BufferSlice input, BufferSlice output, int rows);

    /// <summary>output[T, table.Cols] = table[ids[t]] * scale (a quantized or dense table).</summary>
    void Embed(LinearWeight table, ReadOnlySpan<int> ids, float scale, BufferSlice output);

    /// <summary>
    /// Per row of <paramref name="dim"/> values: y = x * rsqrt(mean(x^2) + eps) * w, with w the plain
    /// weight (not 1 + w) or no weight at all (null). Per-head norms pass rows = tokens * heads and
    /// dim = head_dim. Weight is [1, dim] or [dim, 1].
    /// </summary>
    void RmsNorm(BufferSlice input, BufferSlice output, DenseWeight? weight, int rows, int dim, float eps);

    /// <summary>
    /// In-place half-split RoPE on x[T, heads, headDim]: element j pairs with j + headDim/2 and
    /// rotates by angle positions[t] * inverseFrequencies[j]. inverseFrequencies is [headDim/2]; a
    /// zero entry leaves that pair unchanged (partial / "proportional" RoPE).
    /// </summary>
    void Rope(BufferSlice x, ReadOnlySpan<int> positions, int heads, int headDim, BufferSlice inverseFrequencies);

    /// <summary>
    /// Causal attention of one session's block of <paramref name="tokens"/> queries at absolute
    /// positions startPosition..startPosition+tokens-1.
    /// queries and output: [tokens, Heads, HeadDim]; blockKeys, blockValues: [tokens, KvHeads, HeadDim]
    /// (this block's own keys and values, not yet in the cache); <paramref name="cache"/> must hold
    /// every earlier position a query can see (window permitting). The block's K/V are NOT written to
    /// the cache here: enqueue <see cref="StoreKv"/> after this op, which is what lets a block longer
    /// than a sliding ring attend correctly. <paramref name="bidirectional"/>: block-row ranges whose
    /// tokens also see the later tokens of their range.
    /// </summary>
    void Attention(
        BufferSlice queries,
        BufferSlice blockKeys,
        BufferSlice blockValues,
        KvStore cache,
        int startPosition,
        int tokens,
        AttentionShape shape,
        BufferSlice output,
        ReadOnlySpan<TokenRange> bidirectional);

    /// <summary>
    /// Writes a block's keys/values ([tokens, kvWidth]) for positions startPosition.. into cache
    /// slots p % Capacity; when tokens &gt; Capacity only the last Capacity positions are written.
    /// </summary>
    void StoreKv(BufferSlice blockKeys, BufferSlice blockValues, KvStore cache, int startPosition, int tokens, int kvWidth);

    /// <summary>output = gelu_tanh(gate) * up, elementwise (output may alias gate or up).</summary>
    void GeGlu(BufferSlice gate, BufferSlice up, BufferSlice output);

    /// <summary>output = a + b, elementwise (output may alias a or b).</summary>
    void Add(BufferSlice a, BufferSlice b, BufferSlice output);

    /// <summary>x *= factor, in place.</summary>
    void Scale(BufferSlice x, float factor);

    /// <summary>x = cap * tanh(x / cap), in place (final logit soft-capping).</summary>
    void Softcap(BufferSlice x, float cap);
}
