using Pipeline.Kernels;

namespace Pipeline.Model;

/// <summary>
/// Rows (tokens) going through the decoder together, possibly from several sessions: each
/// session contributes one segment of consecutive positions on its own cache. Owns the residual
/// stream <see cref="Hidden"/> [MaxRows, hidden], which travels with the batch from layer group to
/// layer group. Reusable: <see cref="Clear"/> and refill; nothing is allocated after construction.
/// A segment may carry <see cref="EmbeddingSpan"/>s (image rows): <see cref="Gemma4Forward.Embed"/>
/// writes their rows over the looked-up embeddings and attention treats each as a bidirectional range.
/// </summary>
public sealed class ForwardBatch : IDisposable
{
    private readonly int[] _ids;
    private readonly int[] _positions;
    private readonly BatchSegment[] _segments;
    private readonly EmbeddingSpan[] _embedded;      // Start = batch row
    private readonly TokenRange[] _ranges;           // per segment, rows relative to the segment
    private readonly int[] _firstRange;              // per segment: index of its first range
    private int _embeddedCount;

    public ForwardBatch(IBackend backend, int maxRows, int hiddenSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxRows);
        MaxRows = maxRows;
        HiddenSize = hiddenSize;
        _ids = new int[maxRows];
        _positions = new int[maxRows];
        _segments = new BatchSegment[maxRows];
        _embedded = new EmbeddingSpan[maxRows];
        _ranges = new TokenRange[maxRows];
        _firstRange = new int[maxRows + 1];
        Hidden = backend.Allocate((long)maxRows * hiddenSize);
    }

    public int MaxRows { get; }
    public int HiddenSize { get; }
    public int Rows { get; private set; }
    public int SegmentCount { get; private set; }

    /// <summary>The residual stream h [MaxRows, hidden]; rows [0, Rows) are in use.</summary>
    public DeviceBuffer Hidden { get; }

    /// <summary>h [Rows, hidden].</summary>
    public BufferSlice HiddenRows => Hidden.Slice(0, (long)Rows * HiddenSize);

    public ReadOnlySpan<int> Ids => _ids.AsSpan(0, Rows);

    /// <summary>Absolute position of each row in its session.</summary>
    public ReadOnlySpan<int> Positions => _positions.AsSpan(0, Rows);

    public BatchSegment Segment(int index) =>
        (uint)index < (uint)SegmentCount ? _segments[index] : throw new ArgumentOutOfRangeException(nameof(index));

    /// <summary>Rows given as embeddings, with Start counted in batch rows.</summary>
    public ReadOnlySpan<EmbeddingSpan> Embedded => _embedded.AsSpan(0, _embeddedCount);

    /// <summary>The bidirectional ranges of segment <paramref name="index"/> (rows relative to the segment).</summary>
    public ReadOnlySpan<TokenRange> Bidirectional(int index) =>
        (uint)index < (uint)SegmentCount
            ? _ranges.AsSpan(_firstRange[index], _firstRange[index + 1] - _firstRange[index])
            : throw new ArgumentOutOfRangeException(nameof(index));

    public void Clear()
    {
        Rows = 0;
        SegmentCount = 0;
        _embedded.AsSpan(0, _embeddedCount).Clear(); // drop references to the callers' rows
        _embeddedCount = 0;
    }

    /// <summary>
    /// Appends <paramref name="ids"/> at positions startPosition.. of <paramref name="cache"/>; the
    /// cache must already have room (<see cref="KvCache.Reserve"/>) and hold every earlier position.
    /// </summary>
    public void Add(KvCache cache, ReadOnlySpan<int> ids, int startPosition) => Add(cache, ids, startPosition, []);

    /// <summary>
    /// <see cref="Add(KvCache, ReadOnlySpan{int}, int)"/> with rows given as embeddings (Start counted from
    /// ids[0]); each span's rows attend to each other bidirectionally. The rows are read when the batch
    /// is embedded: keep them unchanged until then.
    /// </summary>
    public void Add(KvCache cache, ReadOnlySpan<int> ids, int startPosition, ReadOnlySpan<EmbeddingSpan> embedded)
    {
        ArgumentNullException.ThrowIfNull(cache);
        EmbeddingSpan.Validate(embedded, ids.Length, HiddenSize, nameof(embedded));
        if (ids.IsEmpty)
            throw new ArgumentException("a batch segment needs at least one token", nameof(ids));
        if (Rows + ids.Length > MaxRows)
            throw new ArgumentException($"batch holds {Rows} of {MaxRows} rows; {ids.Length} more do not fit", nameof(ids));
        if (startPosition != cache.Length)
            throw new ArgumentException($"segment starts at position {startPosition} but the cache holds {cache.Length}", nameof(startPosition));
        if (!cache.HasRoomFor(startPosition + ids.Length))
            throw new InvalidOperationException($"the cache has no room for positions up to {startPosition + ids.Length - 1}: call KvCache.Reserve first");
        ids.CopyTo(_ids.AsSpan(Rows));
        for (int i = 0; i < ids.Length; i++)
            _positions[Rows + i] = startPosition + i;
        int ranges = _firstRange[SegmentCount];
        foreach (var span in embedded)
        {
            int count = span.Count(HiddenSize);
            _embedded[_embeddedCount++] = span with { Start = Rows + span.Start };
            _ranges[ranges++] = new TokenRange(span.Start, span.Start + count);
        }
        _firstRange[SegmentCount + 1] = ranges;
        _segments[SegmentCount++] = new BatchSegment(cache, Rows, ids.Length, startPosition);
        Rows += ids.Length;
    }

    public void Dispose() => Hidden.Dispose();
}

/// <summary>Rows [FirstRow, FirstRow + Rows) of a batch: positions StartPosition.. of one session's cache.</summary>
public readonly record struct BatchSegment(KvCache Cache, int FirstRow, int Rows, int StartPosition);
