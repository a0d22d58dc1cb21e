using System.Runtime.InteropServices;

namespace Pipeline.Model;

/// <summary>
/// One conversation's state on an <see cref="Engine"/>: its tokens, its KV cache and the logits of
/// its last position. Not thread-safe (one caller at a time); the engine serializes sessions.
/// <para>
/// Reuse across chat turns: <see cref="Truncate"/> to the common prefix of the old and new
/// transcript, then <see cref="Prefill"/> only the new suffix. When the sliding-window rings no
/// longer hold what the truncated prefix needs (see <see cref="KvCache"/>), the session recomputes
/// its remaining tokens from position 0 during the next prefill; <see cref="CachedLength"/> shows
/// how many positions are reused.
/// </para>
/// <para>
/// Images: <see cref="Prefill(ReadOnlySpan{int}, ReadOnlySpan{EmbeddingSpan}, LogitsCallback?)"/> takes
/// rows given as embeddings. The session keeps them with its tokens (so a replay recomputes them), and
/// its state always equals a fresh prefill of its tokens with its spans; truncating into a span keeps
/// the span's leading rows and moves the cache back to the span's start, which is recomputed.
/// Token ids do not identify images: a caller reusing a prefix across turns must compare images too.
/// </para>
/// </summary>
public sealed class Session : IDisposable
{
    private readonly Engine _engine;
    private readonly KvCache _cache;
    private readonly int[] _tokens;
    private readonly float[] _logits;
    private readonly List<EmbeddingSpan> _embedded = [];   // starts are positions
    private int _length;
    private bool _hasLogits;

    internal Session(Engine engine, KvCache cache)
    {
        _engine = engine;
        _cache = cache;
        _tokens = new int[engine.MaxContext];
        _logits = new float[engine.VocabSize];
    }

    /// <summary>Tokens in the conversation so far.</summary>
    public int Length => _length;

    public ReadOnlySpan<int> Tokens => _tokens.AsSpan(0, _length);

    /// <summary>Leading positions whose keys/values are cached (equals Length except after a deep truncation).</summary>
    public int CachedLength => Math.Min(_cache.Length, _length);

    public KvCache Cache => _cache;

    /// <summary>Logits (after the final softcap) at the last position, valid after Prefill or Decode.</summary>
    public ReadOnlySpan<float> Logits =>
        _hasLogits ? _logits : throw new InvalidOperationException("no logits yet: call Prefill or Decode first (Reset and Truncate clear them)");

    /// <summary>Appends <paramref name="ids"/> and computes the logits of the new last position.</summary>
    public void Prefill(ReadOnlySpan<int> ids) => Append(ids, null);

    /// <summary>
    /// Appends <paramref name="ids"/>, handing <paramref name="everyPosition"/> the logits after each
    /// of them in order (index 0 = after ids[0]). The callback runs inside the engine: it must not
    /// call back into the engine or keep the span.
    /// </summary>
    public void Prefill(ReadOnlySpan<int> ids, LogitsCallback everyPosition)
    {
        ArgumentNullException.ThrowIfNull(everyPosition);
        Append(ids, everyPosition);
    }

    /// <summary>
    /// Appends <paramref name="ids"/> of which the spans in <paramref name="embedded"/> (starts counted from
    /// ids[0]) take the given rows instead of token embeddings and attend bidirectionally among
    /// themselves: an image's projected soft tokens. Logits as for the other Prefill overloads. Each span
    /// must fit in one forward block (EngineOptions.MaxBatchRows). The rows are kept (not copied): leave
    /// them unchanged while the session holds them.
    /// </summary>
    public void Prefill(ReadOnlySpan<int> ids, ReadOnlySpan<EmbeddingSpan> embedded, LogitsCallback? everyPosition = null)
    {
        EmbeddingSpan.Validate(embedded, ids.Length, _engine.Config.HiddenSize, nameof(embedded));
        Append(ids, embedded, everyPosition);
    }

    /// <summary>The spans given as embeddings that the session holds, starts as positions.</summary>
    public IReadOnlyList<EmbeddingSpan> Embedded => _embedded;

    /// <summary>Appends one token and computes the next logits. Allocates nothing.</summary>
    public void Decode(int id) => Append(new ReadOnlySpan<int>(in id), null);

    /// <summary>Keeps the first <paramref name="length"/> tokens and forgets the rest.</summary>
    public void Truncate(int length)
    {
        if (length < 0 || length > _length)
            throw new ArgumentOutOfRangeException(nameof(length), length, $"session holds {_length} tokens; truncate to 0..{_length}");
        if (length == _length)
            return;
        _length = length;
        _hasLogits = false;
        // Keep the cache only up to the start of a span cut in two: its kept rows saw the dropped ones.
        int cached = length;
        int hidden = _engine.Config.HiddenSize;
        for (int i = _embedded.Count - 1; i >= 0; i--)
        {
            var span = _embedded[i];
            int end = span.Start + span.Count(hidden);
            if (span.Start >= length)
            {
                _embedded.RemoveAt(i);
            }
            else if (end > length)
            {
                _embedded[i] = span with { Rows = span.Rows[..((length - span.Start) * hidden)] };
                cached = span.Start;
            }
        }
        if (_cache.Length > cached)
        {
            if (_cache.CanTruncateTo(cached))
                _cache.Truncate(cached);
            else
                _cache.Clear();   // recomputed from position 0 by the next Prefill/Decode
        }
    }

    public void Reset()
    {
        _length = 0;
        _embedded.Clear();
        _hasLogits = false;
        _cache.Clear();
    }

    private void Append(ReadOnlySpan<int> ids, LogitsCallback? callback) => Append(ids, [], callback);

    private void Append(ReadOnlySpan<int> ids, ReadOnlySpan<EmbeddingSpan> embedded, LogitsCallback? callback)
    {
        if (ids.IsEmpty)
            throw new ArgumentException("the prompt is empty: prefill needs at least one token id", nameof(ids));
        int vocab = _engine.VocabSize;
        for (int i = 0; i < ids.Length; i++)
        {
            if ((uint)ids[i] >= (uint)vocab)
                throw new ArgumentOutOfRangeException(nameof(ids), ids[i], $"token id {ids[i]} at index {i} is outside the vocabulary (0..{vocab - 1}, vocab_size {vocab})");
        }
        if ((long)_length + ids.Length > _engine.MaxContext)
            throw new ArgumentException(
                $"context of {(long)_length + ids.Length} tokens ({_length} held + {ids.Length} new) exceeds the maximum of {_engine.MaxContext} positions" +
                (_engine.MaxContext == _engine.Config.MaxPositionEmbeddings ? " (max_position_embeddings)" : $" (MaxContext; max_position_embeddings {_engine.Config.MaxPositionEmbeddings})"),
                nameof(ids));

        int first = _length;
        ids.CopyTo(_tokens.AsSpan(_length));
        _length += ids.Length;
        _hasLogits = false;
        foreach (var span in embedded)
            _embedded.Add(span with { Start = first + span.Start });
        try
        {
            _engine.Compute(_cache, _tokens.AsSpan(0, _length), CollectionsMarshal.AsSpan(_embedded), first, _logits, callback);
        }
        catch
        {
            // A failed call leaves the session as it was before it.
            _length = first + ids.Length;
            Truncate(first);
            throw;
        }
        _hasLogits = true;
    }

    public void Dispose() => _cache.Dispose();
}
