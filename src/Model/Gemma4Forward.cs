using Pipeline.Kernels;
using Pipeline.Model.Checkpoint;

namespace Pipeline.Model;

/// <summary>
/// The Gemma-4 text decoder, as plain math against <see cref="IBackend"/>:
/// <code>
/// RMSNorm(x; w) = x * rsqrt(mean(x^2) + eps) * w          (plain w, not 1 + w)
/// h = Embed[ids] * bf16(sqrt(hidden))          (rows of an embedding span, e.g. an image: its given rows as they are)
/// per layer L (D, KVH per layer kind):
///   r = h; x = RMSNorm(h; input_layernorm)
///   q = RoPE(RMSNorm_per_head(q_proj(x); q_norm))
///   kraw = k_proj(x);  k = RoPE(RMSNorm_per_head(kraw; k_norm))
///   v = RMSNormNoScale_per_head(full &amp;&amp; attention_k_eq_v ? kraw : v_proj(x))      (no RoPE)
///   attn = softmax(q.k * 1.0, causal, sliding: q - k &lt; window) . v, query head i on KV head i / (H / KVH);
///          on sliding layers rows of one embedding span (an image) also see the span's later rows; full
///          layers stay causal (HF's create_causal_mask_mapping gives only the sliding mask the image OR-mask)
///   h = r + RMSNorm(o_proj(attn); post_attention_layernorm)
///   r = h; m = RMSNorm(h; pre_feedforward_layernorm)
///   h = r + RMSNorm(down(gelu_tanh(gate(m)) * up(m)); post_feedforward_layernorm)
///   h = h * layer_scalar[L]
/// logits = 30 * tanh(RMSNorm(h; norm) @ Embed^T / 30)
/// </code>
/// RoPE is half-split (j pairs with j + D/2). Sliding layers: theta 1e4 on all dims,
/// inv[i] = theta^(-2i/D). Full layers ("proportional"): theta 1e6, the first
/// int(partial * D / 2) pairs get inv[i] = theta^(-2i/D) (denominator the full D), the rest 0.
/// <para>
/// Staged for an actor layer: <see cref="Embed"/>, <see cref="RunLayers"/> over any layer range,
/// <see cref="Head"/>. Projections and the MLP run over all rows of a batch at once; attention runs
/// per segment on that session's cache. Enqueues only: read results with the backend.
/// </para>
/// </summary>
public sealed class Gemma4Forward : IDisposable
{
    private readonly IBackend _backend;
    private readonly Gemma4TextConfig _text;
    private readonly Gemma4LayerWeights[] _layers;
    private readonly LinearWeight _embedding;
    private readonly LinearWeight _head;
    private readonly DenseWeight _finalNorm;
    private readonly float _embedScale;
    private readonly DeviceBuffer _slidingFrequencies;   // [sliding head_dim / 2]
    private readonly DeviceBuffer _fullFrequencies;      // [global head_dim / 2]

    public Gemma4Forward(IBackend backend, Gemma4Checkpoint checkpoint)
    {
        _backend = backend;
        _text = checkpoint.Text;
        _layers = new Gemma4LayerWeights[_text.NumHiddenLayers];
        for (int i = 0; i < _layers.Length; i++)
            _layers[i] = checkpoint.Layer(i);
        _embedding = checkpoint.Embedding;
        _head = checkpoint.LmHead;
        _finalNorm = checkpoint.FinalNorm;
        _embedScale = Scalars.RoundToBf16(MathF.Sqrt(_text.HiddenSize));
        _slidingFrequencies = Upload(InverseFrequencies(_text.SlidingRope, _text.SlidingHeadDim));
        _fullFrequencies = Upload(InverseFrequencies(_text.FullRope, _text.GlobalHeadDim));
    }

    public Gemma4TextConfig Text => _text;

    /// <summary>h = Embed[ids] * bf16(sqrt(hidden)), then the batch's embedding spans (image rows) written over their rows as given.</summary>
    public void Embed(ForwardBatch batch)
    {
        _backend.Embed(_embedding, batch.Ids, _embedScale, batch.HiddenRows);
        foreach (var span in batch.Embedded)
            _backend.Write(batch.Hidden.Slice((long)span.Start * _text.HiddenSize, span.Rows.Length), span.Rows.Span);
    }

    /// <summary>Layers [firstLayer, endLayer) over every row of the batch; writes each segment's K/V into its cache.</summary>
    public void RunLayers(ForwardBatch batch, ForwardWorkspace work, int firstLayer, int endLayer)
    {
        if (firstLayer < 0 || endLayer > _layers.Length || firstLayer > endLayer)
            throw new ArgumentOutOfRangeException(nameof(endLayer), $"layers [{firstLayer}, {endLayer}) outside [0, {_layers.Length})");
        if (batch.Rows > work.MaxRows)
            throw new ArgumentException($"batch has {batch.Rows} rows, the workspace {work.MaxRows}", nameof(batch));
        for (int layer = firstLayer; layer < endLayer; layer++)
            Layer(batch, work, layer);
    }

    private void Layer(ForwardBatch batch, ForwardWorkspace work, int layer)
    {
        var w = _layers[layer];
        bool full = _text.IsFullAttention(layer);
        int rows = batch.Rows, hidden = _text.HiddenSize;
        float epsilon = _text.RmsNormEps;
        int heads = _text.NumAttentionHeads, kvHeads = _text.KvHeads(layer), d = _text.HeadDim(layer);
        var shape = new AttentionShape(heads, kvHeads, d, full ? 0 : _text.SlidingWindow, Scale: 1f);
        var frequencies = full ? _fullFrequencies : _slidingFrequencies;

        var h = batch.HiddenRows;                                          // [rows, hidden]
        var x = work.Normed.Slice(0, (long)rows * hidden);                 // [rows, hidden]
        var q = work.Queries.Slice(0, (long)rows * shape.QueryWidth);      // [rows, heads, D]
        var k = work.Keys.Slice(0, (long)rows * shape.KvWidth);            // [rows, kv heads, D]
        var v = work.Values.Slice(0, (long)rows * shape.KvWidth);          // [rows, kv heads, D]
        var attention = work.Attention.Slice(0, (long)rows * shape.QueryWidth);
        var projected = work.Projected.Slice(0, (long)rows * hidden);      // [rows, hidden]

        // x = RMSNorm(h; input_layernorm)
        _backend.RmsNorm(h, x, w.InputNorm, rows, hidden, epsilon);

        // q = RoPE(RMSNorm_per_head(q_proj(x); q_norm))
        _backend.Linear(w.QProj, x, q, rows);
        _backend.RmsNorm(q, q, w.QNorm, rows * heads, d, epsilon);
        _backend.Rope(q, batch.Positions, heads, d, frequencies);

        // kraw = k_proj(x); v = RMSNormNoScale(K=V layers ? kraw : v_proj(x)); k = RoPE(RMSNorm(kraw; k_norm))
        _backend.Linear(w.KProj, x, k, rows);
        if (w.VProj is null)
            _backend.Copy(k, v);
        else
            _backend.Linear(w.VProj, x, v, rows);
        _backend.RmsNorm(v, v, null, rows * kvHeads, d, epsilon);
        _backend.RmsNorm(k, k, w.KNorm, rows * kvHeads, d, epsilon);
        _backend.Rope(k, batch.Positions, kvHeads, d, frequencies);

        // Attention per session on its own cache, then this block's K/V join the cache.
        for (int s = 0; s < batch.SegmentCount; s++)
        {
            var segment = batch.Segment(s);
            var cache = segment.Cache.Layer(layer);
            var segmentK = k.Rows(segment.FirstRow, segment.Rows, shape.KvWidth);
            var segmentV = v.Rows(segment.FirstRow, segment.Rows, shape.KvWidth);
            _backend.Attention(
                q.Rows(segment.FirstRow, segment.Rows, shape.QueryWidth), segmentK, segmentV, cache,
                segment.StartPosition, segment.Rows, shape,
                attention.Rows(segment.FirstRow, segment.Rows, shape.QueryWidth), full ? [] : batch.Bidirectional(s));
            _backend.StoreKv(segmentK, segmentV, cache, segment.StartPosition, segment.Rows, shape.KvWidth);
        }

        // h = r + RMSNorm(o_proj(attn); post_attention_layernorm)
        _backend.Linear(w.OProj, attention, projected, rows);
        _backend.RmsNorm(projected, projected, w.PostAttentionNorm, rows, hidden, epsilon);
        _backend.Add(h, projected, h);

        // h = r + RMSNorm(down(gelu_tanh(gate(m)) * up(m)); post_feedforward_layernorm), m = RMSNorm(h; pre_feedforward_layernorm)
        int intermediate = _text.IntermediateSize;
        var gate = work.Gate.Slice(0, (long)rows * intermediate);          // [rows, intermediate]
        var up = work.Up.Slice(0, (long)rows * intermediate);              // [rows, intermediate]
        _backend.RmsNorm(h, x, w.PreFeedforwardNorm, rows, hidden, epsilon);
        _backend.Linear(w.Gate, x, gate, rows);
        _backend.Linear(w.Up, x, up, rows);
        _backend.GeGlu(gate, up, gate);
        _backend.Linear(w.Down, gate, projected, rows);
        _backend.RmsNorm(projected, projected, w.PostFeedforwardNorm, rows, hidden, epsilon);
        _backend.Add(h, projected, h);

        // h = h * layer_scalar
        _backend.Scale(h, w.LayerScalar);
    }

    /// <summary>
    /// logits[i] = softcap(RMSNorm(h[rows[i]]; norm) @ Embed^T) into work.Logits rows [0, rows.Length).
    /// </summary>
    public void Head(ForwardBatch batch, ForwardWorkspace work, ReadOnlySpan<int> rows)
    {
        if (rows.IsEmpty || rows.Length > work.MaxLogitRows)
            throw new ArgumentOutOfRangeException(nameof(rows), rows.Length, $"head takes 1..{work.MaxLogitRows} rows at a time");
        int hidden = _text.HiddenSize, count = rows.Length;
        var input = work.HeadInput.Slice(0, (long)count * hidden);         // [count, hidden]
        var logits = LogitRows(work, count);                               // [count, vocab]
        for (int i = 0; i < count; i++)
        {
            if ((uint)rows[i] >= (uint)batch.Rows)
                throw new ArgumentOutOfRangeException(nameof(rows), rows[i], $"batch has {batch.Rows} rows");
            _backend.Copy(batch.Hidden.Slice((long)rows[i] * hidden, hidden), input.Rows(i, 1, hidden));
        }
        _backend.RmsNorm(input, input, _finalNorm, count, hidden, _text.RmsNormEps);
        _backend.Linear(_head, input, logits, count);
        if (_text.FinalLogitSoftcapping is { } cap)
            _backend.Softcap(logits, cap);
    }

    /// <summary>The logits <see cref="Head"/> wrote: [count, vocab].</summary>
    public BufferSlice LogitRows(ForwardWorkspace work, int count) => work.Logits.Slice(0, (long)count * _text.VocabSize);

    public ForwardBatch CreateBatch(int maxRows) => new(_backend, maxRows, _text.HiddenSize);

    public ForwardWorkspace CreateWorkspace(int maxRows, int maxLogitRows) => new(_backend, _text, maxRows, maxLogitRows);

    /// <summary>inv[i] for i &lt; D/2: theta^(-2i/D) for rotated pairs, 0 for pairs RoPE leaves alone.</summary>
    public static float[] InverseFrequencies(RopeParameters rope, int headDim)
    {
        int half = headDim / 2;
        int rotated = rope.RopeType switch
        {
            "default" when rope.PartialRotaryFactor == 1.0 => half,
            "proportional" => (int)(rope.PartialRotaryFactor * headDim / 2),
            _ => throw new NotSupportedException(
                $"RoPE type '{rope.RopeType}' with partial_rotary_factor {rope.PartialRotaryFactor} is not supported (Gemma 4 uses default with 1.0, proportional)"),
        };
        var inverse = new float[half];
        for (int i = 0; i < rotated; i++)
            inverse[i] = (float)Math.Pow(rope.Theta, -2.0 * i / headDim);
        return inverse;
    }

    private DeviceBuffer Upload(float[] values)
    {
        var buffer = _backend.Allocate(values.Length);
        _backend.Write(buffer, values);
        return buffer;
    }

    public void Dispose()
    {
        _slidingFrequencies.Dispose();
        _fullFrequencies.Dispose();
    }
}
