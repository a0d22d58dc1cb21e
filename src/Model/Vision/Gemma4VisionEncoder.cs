using System.Runtime.InteropServices;
using Pipeline.Kernels;
using Pipeline.Model.Checkpoint;

namespace Pipeline.Model.Vision;

/// <summary>
/// Gemma-4's vision tower and projector, as plain math against <see cref="IBackend"/>. For the N valid
/// patches p (pixels in [0, 1], patch^2 * 3 values) at grid positions (x, y):
/// <code>
/// h = input_proj(2 (p - 0.5)) + pos_table[0][x] + pos_table[1][y]
/// per layer (sandwich norms like the text decoder, no layer scalar):
///   r = h; a = RMSNorm(h; input_layernorm)
///   q = RoPE2D(RMSNorm_per_head(q_proj(a); q_norm));  k = RoPE2D(RMSNorm_per_head(k_proj(a); k_norm))
///   v = RMSNormNoScale_per_head(v_proj(a))
///   attn = softmax(q.k * 1.0) . v over all N patches (bidirectional; padding patches are never computed)
///   h = r + RMSNorm(o_proj(attn); post_attention_layernorm)
///   h = h + RMSNorm(down(gelu_tanh(gate(m)) * up(m)); post_feedforward_layernorm), m = RMSNorm(h; pre_feedforward_layernorm)
/// pooled[g] = sqrt(hidden) * mean of the k x k patches of group g (groups row-major over the grid)
/// pooled = (pooled - std_bias) * std_scale                        (when standardize)
/// out = embedding_projection(RMSNormNoScale(pooled))              [soft tokens, text hidden]
/// </code>
/// RoPE2D splits each head of D dims into two halves of D/2: the first rotates with x, the second with
/// y, each half-split (element j pairs with j + D/4) with inv[j] = theta^(-2j / (D/2)), theta = 100.
/// It runs as the backend's RoPE over [patches * heads * 2, D/2] rows whose positions alternate x, y.
/// <para>
/// Matmuls run over all patches of an image at once. One image at a time; enqueues only, except
/// <see cref="EncodeToHost"/>. Not thread-safe.
/// </para>
/// </summary>
public sealed class Gemma4VisionEncoder : IDisposable
{
    private readonly IBackend _backend;
    private readonly Gemma4VisionWeights _weights;
    private readonly Gemma4VisionConfig _config;
    private readonly int _hidden, _textHidden, _maxPatches;
    private readonly AttentionShape _shape;
    private readonly DeviceBuffer _frequencies;   // [head_dim / 4]
    private readonly DeviceBuffer _patches;       // [max patches, patch^2 * 3]
    private readonly DeviceBuffer _h;             // [max patches, hidden]
    private readonly DeviceBuffer _normed;        // [max patches, hidden]
    private readonly DeviceBuffer _projected;     // [max patches, hidden]
    private readonly DeviceBuffer _queries;       // [max patches, heads * head_dim]
    private readonly DeviceBuffer _keys;          // [max patches, kv heads * head_dim]
    private readonly DeviceBuffer _values;        // [max patches, kv heads * head_dim]
    private readonly DeviceBuffer _attention;     // [max patches, heads * head_dim]
    private readonly DeviceBuffer _gate;          // [max patches, intermediate]
    private readonly DeviceBuffer _up;            // [max patches, intermediate]
    private readonly DeviceBuffer _pooled;        // [max soft tokens, hidden]
    private readonly DeviceBuffer _output;        // [max soft tokens, text hidden]
    private readonly DeviceBuffer _unusedKeys, _unusedValues;  // the attention op's cache: one slot, never read
    private readonly DeviceBuffer? _stdOffset;    // [max soft tokens, hidden]: -std_bias * std_scale per row
    private readonly nint _stdScaleDiagonal;      // f32 [hidden, hidden]: diag(std_scale), as a linear weight
    private readonly DenseWeight? _stdScale;
    private int[] _ids = [];
    private int[] _queryPositions = [];
    private int[] _keyPositions = [];
    private bool _disposed;

    public Gemma4VisionEncoder(IBackend backend, Gemma4Checkpoint checkpoint, int maxSoftTokens = Gemma4ImageProcessor.DefaultBudget)
        : this(backend, Gemma4VisionWeights.Load(checkpoint), checkpoint.Text.HiddenSize, maxSoftTokens)
    {
    }

    public Gemma4VisionEncoder(IBackend backend, Gemma4VisionWeights weights, int textHidden, int maxSoftTokens = Gemma4ImageProcessor.DefaultBudget)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxSoftTokens);
        _backend = backend;
        _weights = weights;
        _config = weights.Config;
        _hidden = _config.HiddenSize;
        _textHidden = textHidden;
        MaxSoftTokens = maxSoftTokens;
        int k = _config.PoolingKernelSize;
        _maxPatches = maxSoftTokens * k * k;
        _shape = new AttentionShape(_config.NumAttentionHeads, _config.NumKeyValueHeads, _config.HeadDim, Window: 0, Scale: 1f);

        _frequencies = backend.Allocate(_config.HeadDim / 4);
        backend.Write(_frequencies, InverseFrequencies(_config.RopeTheta, _config.HeadDim));
        long rows = _maxPatches;
        _patches = backend.Allocate(rows * _config.PatchSize * _config.PatchSize * 3);
        _h = backend.Allocate(rows * _hidden);
        _normed = backend.Allocate(rows * _hidden);
        _projected = backend.Allocate(rows * _hidden);
        _queries = backend.Allocate(rows * _shape.QueryWidth);
        _keys = backend.Allocate(rows * _shape.KvWidth);
        _values = backend.Allocate(rows * _shape.KvWidth);
        _attention = backend.Allocate(rows * _shape.QueryWidth);
        _gate = backend.Allocate(rows * _config.IntermediateSize);
        _up = backend.Allocate(rows * _config.IntermediateSize);
        _pooled = backend.Allocate((long)maxSoftTokens * _hidden);
        _output = backend.Allocate((long)maxSoftTokens * textHidden);
        _unusedKeys = backend.Allocate(_shape.KvWidth);
        _unusedValues = backend.Allocate(_shape.KvWidth);

        if (weights.StdBias is { } bias && weights.StdScale is { } scale)
        {
            // (h - b) * s = h diag(s) + (-b * s): a linear layer and an add, both existing ops.
            var offset = new float[(long)maxSoftTokens * _hidden];
            var diagonal = new float[_hidden];
            for (int c = 0; c < _hidden; c++)
            {
                diagonal[c] = Scalars.Load(scale.Data, c, scale.Type);
                offset[c] = -Scalars.Load(bias.Data, c, bias.Type) * diagonal[c];
            }
            for (int row = 1; row < maxSoftTokens; row++)
                Array.Copy(offset, 0, offset, (long)row * _hidden, _hidden);
            _stdOffset = backend.Allocate(offset.LongLength);
            backend.Write(_stdOffset, offset);
            unsafe
            {
                _stdScaleDiagonal = (nint)NativeMemory.AllocZeroed((nuint)_hidden * (nuint)_hidden, sizeof(float));
                var matrix = new Span<float>((void*)_stdScaleDiagonal, _hidden * _hidden);
                for (int c = 0; c < _hidden; c++)
                    matrix[c * _hidden + c] = diagonal[c];
            }
            _stdScale = new DenseWeight(_stdScaleDiagonal, _hidden, _hidden, ScalarType.F32);
        }
    }

    public Gemma4VisionConfig Config => _config;

    /// <summary>Width of an output row: the text model's hidden size.</summary>
    public int OutputWidth => _textHidden;

    /// <summary>The largest image budget this encoder has room for.</summary>
    public int MaxSoftTokens { get; }

    /// <summary>
    /// Enqueues the tower and projector for <paramref name="image"/>; returns the slice of the encoder's
    /// output buffer holding its embeddings [image.SoftTokens, OutputWidth] (valid until the next call).
    /// </summary>
    public BufferSlice Encode(PreprocessedImage image)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Validate(image);
        int n = image.PatchCount, hidden = _hidden;
        PreparePositions(image);

        // h = input_proj(2 (p - 0.5)) + pos_table[0][x] + pos_table[1][y]
        int patchValues = image.PatchValues;
        var input = image.Pixels.AsSpan(0, n * patchValues).ToArray();
        for (int i = 0; i < input.Length; i++)
            input[i] = 2f * (input[i] - 0.5f);
        var patches = _patches.Slice(0, (long)n * patchValues);      // [n, patch^2 * 3]
        var h = _h.Slice(0, (long)n * hidden);                       // [n, hidden]
        var x = _normed.Slice(0, (long)n * hidden);                  // [n, hidden]
        var y = _projected.Slice(0, (long)n * hidden);               // [n, hidden]
        _backend.Write(patches, input);
        _backend.Linear(_weights.InputProjection, patches, h, n);
        _backend.Embed(_weights.PositionTable, _ids.AsSpan(0, n), 1f, x);
        _backend.Embed(_weights.PositionTable, _ids.AsSpan(n, n), 1f, y);
        _backend.Add(h, x, h);
        _backend.Add(h, y, h);

        foreach (var layer in _weights.Layers)
            Layer(layer, n);

        var pooled = Pool(image);
        return Project(pooled, image.SoftTokens);
    }

    /// <summary><see cref="Encode"/>, then waits and copies the embeddings out: [SoftTokens * OutputWidth] row-major.</summary>
    public float[] EncodeToHost(PreprocessedImage image)
    {
        var rows = Encode(image);
        var result = new float[rows.Length];
        _backend.Read(rows, result);
        return result;
    }

    private void Layer(Gemma4VisionLayerWeights w, int n)
    {
        int hidden = _hidden, heads = _shape.Heads, kvHeads = _shape.KvHeads, d = _shape.HeadDim;
        float epsilon = _config.RmsNormEps;
        var h = _h.Slice(0, (long)n * hidden);                          // [n, hidden]
        var x = _normed.Slice(0, (long)n * hidden);                     // [n, hidden]
        var projected = _projected.Slice(0, (long)n * hidden);          // [n, hidden]
        var q = _queries.Slice(0, (long)n * _shape.QueryWidth);         // [n, heads, d]
        var k = _keys.Slice(0, (long)n * _shape.KvWidth);               // [n, kv heads, d]
        var v = _values.Slice(0, (long)n * _shape.KvWidth);             // [n, kv heads, d]
        var attention = _attention.Slice(0, (long)n * _shape.QueryWidth);

        // a = RMSNorm(h; input_layernorm)
        _backend.RmsNorm(h, x, w.InputNorm, n, hidden, epsilon);

        // q, k: per-head norm, then 2D RoPE on the two halves of every head; v: weightless norm
        _backend.Linear(w.QProj, x, q, n);
        _backend.RmsNorm(q, q, w.QNorm, n * heads, d, epsilon);
        _backend.Rope(q, _queryPositions.AsSpan(0, n * heads * 2), 1, d / 2, _frequencies);
        _backend.Linear(w.KProj, x, k, n);
        _backend.RmsNorm(k, k, w.KNorm, n * kvHeads, d, epsilon);
        _backend.Rope(k, _keyPositions.AsSpan(0, n * kvHeads * 2), 1, d / 2, _frequencies);
        _backend.Linear(w.VProj, x, v, n);
        _backend.RmsNorm(v, v, null, n * kvHeads, d, epsilon);

        // Every patch sees every patch: one block at position 0 whose single range spans it.
        var unusedCache = new KvStore(_unusedKeys, _unusedValues, 1);
        _backend.Attention(q, k, v, unusedCache, 0, n, _shape, attention, [new TokenRange(0, n)]);

        // h = r + RMSNorm(o_proj(attn); post_attention_layernorm)
        _backend.Linear(w.OProj, attention, projected, n);
        _backend.RmsNorm(projected, projected, w.PostAttentionNorm, n, hidden, epsilon);
        _backend.Add(h, projected, h);

        // h = h + RMSNorm(down(gelu_tanh(gate(m)) * up(m)); post_feedforward_layernorm)
        int intermediate = _config.IntermediateSize;
        var gate = _gate.Slice(0, (long)n * intermediate);             // [n, intermediate]
        var up = _up.Slice(0, (long)n * intermediate);                 // [n, intermediate]
        _backend.RmsNorm(h, x, w.PreFeedforwardNorm, n, hidden, epsilon);
        _backend.Linear(w.Gate, x, gate, n);
        _backend.Linear(w.Up, x, up, n);
        _backend.GeGlu(gate, up, gate);
        _backend.Linear(w.Down, gate, projected, n);
        _backend.RmsNorm(projected, projected, w.PostFeedforwardNorm, n, hidden, epsilon);
        _backend.Add(h, projected, h);
    }

    /// <summary>
    /// pooled[gy * groupCols + gx] = sqrt(hidden) / k^2 * sum of h over patch rows k gy.., columns k gx..;
    /// summed over the k patch rows first (whole grid rows at once), then over the k columns.
    /// </summary>
    private BufferSlice Pool(PreprocessedImage image)
    {
        int k = image.PoolingKernel, cols = image.PatchCols, hidden = _hidden;
        int groupRows = image.PatchRows / k, groupCols = cols / k;
        long gridRow = (long)cols * hidden;
        var rowSums = _projected.Slice(0, gridRow);                      // [cols, hidden]
        var pooled = _pooled.Slice(0, (long)groupRows * groupCols * hidden);
        for (int gy = 0; gy < groupRows; gy++)
        {
            _backend.Copy(_h.Slice(gy * k * gridRow, gridRow), rowSums);
            for (int dy = 1; dy < k; dy++)
                _backend.Add(rowSums, _h.Slice((gy * k + dy) * gridRow, gridRow), rowSums);
            for (int gx = 0; gx < groupCols; gx++)
            {
                var target = pooled.Slice(((long)gy * groupCols + gx) * hidden, hidden);
                _backend.Copy(rowSums.Slice((long)gx * k * hidden, hidden), target);
                for (int dx = 1; dx < k; dx++)
                    _backend.Add(target, rowSums.Slice(((long)gx * k + dx) * hidden, hidden), target);
            }
        }
        _backend.Scale(pooled, MathF.Sqrt(hidden) / (k * k));
        return pooled;
    }

    /// <summary>Standardize (when configured), RMSNormNoScale, embedding_projection.</summary>
    private BufferSlice Project(BufferSlice pooled, int tokens)
    {
        var source = pooled;
        if (_stdScale is not null)
        {
            var scaled = _normed.Slice(0, (long)tokens * _hidden);      // [tokens, hidden]
            _backend.Linear(_stdScale, pooled, scaled, tokens);
            _backend.Add(scaled, _stdOffset!.Slice(0, (long)tokens * _hidden), scaled);
            source = scaled;
        }
        _backend.RmsNorm(source, source, null, tokens, _hidden, _config.RmsNormEps);
        var output = _output.Slice(0, (long)tokens * _textHidden);      // [tokens, text hidden]
        _backend.Linear(_weights.Projection, source, output, tokens);
        return output;
    }

    /// <summary>
    /// Host-side index arrays: table rows x and P + y for the position embeddings, and the RoPE positions
    /// per (patch, head, half): x for the first half of a head, y for the second.
    /// </summary>
    private void PreparePositions(PreprocessedImage image)
    {
        int n = image.PatchCount, heads = _shape.Heads, kvHeads = _shape.KvHeads;
        int tableSize = _config.PositionEmbeddingSize;
        if (_ids.Length < 2 * n)
        {
            _ids = new int[2 * _maxPatches];
            _queryPositions = new int[_maxPatches * heads * 2];
            _keyPositions = new int[_maxPatches * kvHeads * 2];
        }
        for (int t = 0; t < n; t++)
        {
            int px = image.Positions[t * 2], py = image.Positions[t * 2 + 1];
            _ids[t] = px;
            _ids[n + t] = tableSize + py;
            for (int head = 0; head < heads; head++)
            {
                _queryPositions[(t * heads + head) * 2] = px;
                _queryPositions[(t * heads + head) * 2 + 1] = py;
            }
            for (int head = 0; head < kvHeads; head++)
            {
                _keyPositions[(t * kvHeads + head) * 2] = px;
                _keyPositions[(t * kvHeads + head) * 2 + 1] = py;
            }
        }
    }

    private void Validate(PreprocessedImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        int k = _config.PoolingKernelSize;
        if (image.PatchSize != _config.PatchSize || image.PoolingKernel != k)
            throw new ArgumentException(
                $"image was preprocessed for patch {image.PatchSize} and pooling {image.PoolingKernel}, the tower uses {_config.PatchSize} and {k}", nameof(image));
        if (image.PatchRows <= 0 || image.PatchCols <= 0 || image.PatchRows % k != 0 || image.PatchCols % k != 0)
            throw new ArgumentException($"patch grid {image.PatchRows}x{image.PatchCols} is not a positive multiple of the pooling kernel {k}", nameof(image));
        if (image.SoftTokens > MaxSoftTokens)
            throw new ArgumentException(
                $"image needs {image.SoftTokens} soft tokens but this encoder was sized for at most {MaxSoftTokens} (maxSoftTokens)", nameof(image));
        int n = image.PatchCount;
        if (image.Pixels.LongLength < (long)n * image.PatchValues || image.Positions.Length < 2 * n)
            throw new ArgumentException($"image holds {image.Pixels.LongLength} pixel values and {image.Positions.Length / 2} positions for {n} patches", nameof(image));
        for (int t = 0; t < n; t++)
        {
            int px = image.Positions[t * 2], py = image.Positions[t * 2 + 1];
            if (px != t % image.PatchCols || py != t / image.PatchCols)
                throw new ArgumentException($"patch {t} is at ({px}, {py}); patches must be the grid row-major", nameof(image));
            if (px >= _config.PositionEmbeddingSize || py >= _config.PositionEmbeddingSize)
                throw new ArgumentException(
                    $"patch position ({px}, {py}) is outside the position table of {_config.PositionEmbeddingSize} entries", nameof(image));
        }
    }

    /// <summary>inv[j] = theta^(-2j / (D/2)) for j &lt; D/4: one rotary half per spatial axis.</summary>
    public static float[] InverseFrequencies(double theta, int headDim)
    {
        int spatial = headDim / 2;
        var inverse = new float[spatial / 2];
        for (int j = 0; j < inverse.Length; j++)
            inverse[j] = (float)Math.Pow(theta, -2.0 * j / spatial);
        return inverse;
    }

    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        foreach (var buffer in new[] { _frequencies, _patches, _h, _normed, _projected, _queries, _keys, _values, _attention, _gate, _up, _pooled, _output, _unusedKeys, _unusedValues })
            buffer.Dispose();
        _stdOffset?.Dispose();
        if (_stdScaleDiagonal != 0)
        {
            unsafe
            {
                NativeMemory.Free((void*)_stdScaleDiagonal);
            }
        }
    }
}
