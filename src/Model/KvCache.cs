using Pipeline.Kernels;
using Pipeline.Model.Checkpoint;

namespace Pipeline.Model;

/// <summary>
/// One session's keys and values for every layer, in backend buffers of f32.
/// <para>
/// <b>Layout.</b> Layer L holds Keys and Values [Capacity, KvHeads(L), HeadDim(L)]; position p lives in
/// slot p % Capacity. Full-attention layers may grow up to <see cref="MaxPositions"/> slots (so they
/// never wrap); sliding layers up to window + reserve slots, after which they are rings.
/// Buffers start at <c>initialCapacity</c> slots and double when a block needs more; while a
/// buffer is below its limit nothing has wrapped, so growing is a plain copy.
/// </para>
/// <para>
/// <b>Bytes per token</b> (f32 K and V): a layer costs 2 * 4 * KvHeads * HeadDim bytes per cached
/// position. A full layer caches every position; a sliding layer at most window + reserve. For
/// Gemma-4-31B (50 sliding layers: 16 KV heads x 256; 10 full layers: 4 KV heads x 512, K=V
/// projection but K and V stored apart since they differ after norm/RoPE) that is 32 KiB per
/// token per sliding layer and 16 KiB per token per full layer:
/// bytes(n) = 10 * 16,384 * n + 50 * 32,768 * min(n, 1024 + reserve), see <see cref="BytesFor"/>.
/// </para>
/// <para>
/// <b>Truncation.</b> Full layers truncate for free. A sliding ring still holds positions
/// [<see cref="OldestSlidingPosition"/>, Length); truncating to L keeps the cache usable only if
/// the next query (at L) finds its window [L - window + 1, L) there, i.e. when the cache went at
/// most reserve positions past L since the ring wrapped. <see cref="CanTruncateTo"/> says so;
/// otherwise the owner must recompute (the session then replays its tokens from position 0, since
/// a sliding layer's K/V depend on every earlier layer's window).
/// </para>
/// <para>
/// <b>Ownership.</b> The forward pass writes each layer's new K/V (after that layer's attention)
/// at the block's positions; <see cref="Length"/> only moves when the owner calls
/// <see cref="Advance"/> after all layers of the block have run, so layer groups may run the block
/// in stages.
/// </para>
/// </summary>
public sealed class KvCache : IDisposable
{
    private readonly IBackend _backend;
    private readonly Gemma4TextConfig _text;
    private readonly LayerBuffers[] _layers;
    private int _oldestSliding;

    public KvCache(IBackend backend, Gemma4TextConfig text, int maxPositions, int slidingReserve, int initialCapacity)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxPositions);
        ArgumentOutOfRangeException.ThrowIfNegative(slidingReserve);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(initialCapacity);
        _backend = backend;
        _text = text;
        MaxPositions = maxPositions;
        SlidingReserve = slidingReserve;
        _layers = new LayerBuffers[text.NumHiddenLayers];
        for (int layer = 0; layer < _layers.Length; layer++)
        {
            int limit = Limit(layer);
            int capacity = Math.Min(limit, initialCapacity);
            long elements = (long)capacity * text.KvDim(layer);
            _layers[layer] = new LayerBuffers(backend.Allocate(elements), backend.Allocate(elements), capacity, limit);
        }
    }

    /// <summary>Positions whose keys and values are stored in every layer.</summary>
    public int Length { get; private set; }

    public int MaxPositions { get; }

    public int SlidingReserve { get; }

    /// <summary>The oldest position every sliding ring still holds (0 until a ring wraps).</summary>
    public int OldestSlidingPosition => _oldestSliding;

    /// <summary>Bytes of backend memory the caches occupy now.</summary>
    public long AllocatedBytes
    {
        get
        {
            long total = 0;
            for (int layer = 0; layer < _layers.Length; layer++)
                total += 2L * 4 * _layers[layer].Capacity * _text.KvDim(layer);
            return total;
        }
    }

    /// <summary>The cache slots of <paramref name="layer"/> for the backend's attention ops.</summary>
    public KvStore Layer(int layer)
    {
        var buffers = _layers[layer];
        return new KvStore(buffers.Keys, buffers.Values, buffers.Capacity);
    }

    /// <summary>Grows buffers so a block ending before <paramref name="endPosition"/> can be stored.</summary>
    public void Reserve(int endPosition)
    {
        if (endPosition > MaxPositions)
            throw new ArgumentOutOfRangeException(nameof(endPosition), endPosition, $"the cache holds at most {MaxPositions} positions");
        for (int layer = 0; layer < _layers.Length; layer++)
        {
            var old = _layers[layer];
            if (old.Capacity >= Math.Min(endPosition, old.Limit))
                continue;
            int capacity = Math.Min(old.Limit, Math.Max(endPosition, 2 * old.Capacity));
            long elements = (long)capacity * _text.KvDim(layer);
            var grown = new LayerBuffers(_backend.Allocate(elements), _backend.Allocate(elements), capacity, old.Limit);
            // Below the limit nothing has wrapped: slot = position, so the old slots copy as they are.
            long used = (long)old.Capacity * _text.KvDim(layer);
            _backend.Copy(old.Keys, grown.Keys.Slice(0, used));
            _backend.Copy(old.Values, grown.Values.Slice(0, used));
            old.Keys.Dispose();
            old.Values.Dispose();
            _layers[layer] = grown;
        }
    }

    /// <summary>Whether every layer has the slots a block ending before <paramref name="endPosition"/> needs (see <see cref="Reserve"/>).</summary>
    public bool HasRoomFor(int endPosition)
    {
        if (endPosition > MaxPositions)
            return false;
        foreach (var layer in _layers)
        {
            if (layer.Capacity < Math.Min(endPosition, layer.Limit))
                return false;
        }
        return true;
    }

    /// <summary>Marks the next <paramref name="tokens"/> positions as stored (all layers have run the block).</summary>
    public void Advance(int tokens)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(tokens);
        if (Length + tokens > MaxPositions)
            throw new ArgumentOutOfRangeException(nameof(tokens), tokens, $"cache of {MaxPositions} positions already holds {Length}");
        Length += tokens;
        for (int layer = 0; layer < _layers.Length; layer++)
        {
            if (!_text.IsFullAttention(layer))
                _oldestSliding = Math.Max(_oldestSliding, Length - _layers[layer].Capacity);
        }
    }

    /// <summary>Whether <see cref="Truncate"/> to <paramref name="length"/> keeps every needed sliding entry.</summary>
    public bool CanTruncateTo(int length)
    {
        if (length < 0 || length > Length)
            return false;
        bool hasSliding = false;
        for (int layer = 0; layer < _layers.Length && !hasSliding; layer++)
            hasSliding = !_text.IsFullAttention(layer);
        return !hasSliding || Math.Max(0, length - _text.SlidingWindow + 1) >= _oldestSliding;
    }

    /// <summary>Forgets positions from <paramref name="length"/> on; see <see cref="CanTruncateTo"/>.</summary>
    public void Truncate(int length)
    {
        if (!CanTruncateTo(length))
            throw new InvalidOperationException(
                $"cannot truncate the cache from {Length} to {length} positions: sliding layers keep only positions {_oldestSliding}..{Length - 1} " +
                $"(window {_text.SlidingWindow}, reserve {SlidingReserve}); recompute from the start instead");
        Length = length;
    }

    /// <summary>Forgets everything (buffers are kept for reuse).</summary>
    public void Clear()
    {
        Length = 0;
        _oldestSliding = 0;
    }

    /// <summary>Bytes per cached position of one layer: K and V in f32.</summary>
    public static long BytesPerToken(Gemma4TextConfig text, int layer) => 2L * 4 * text.KvDim(layer);

    /// <summary>
    /// Cache bytes of a session holding <paramref name="tokens"/> positions when every buffer is
    /// exactly as large as it must be: full layers hold all positions, sliding layers at most
    /// window + reserve. (Allocated buffers may be up to twice the need of a growing layer.)
    /// </summary>
    public static long BytesFor(Gemma4TextConfig text, long tokens, int slidingReserve)
    {
        long total = 0;
        for (int layer = 0; layer < text.NumHiddenLayers; layer++)
        {
            long held = text.IsFullAttention(layer) ? tokens : Math.Min(tokens, text.SlidingWindow + slidingReserve);
            total += held * BytesPerToken(text, layer);
        }
        return total;
    }

    private int Limit(int layer) =>
        _text.IsFullAttention(layer) ? MaxPositions : Math.Min(MaxPositions, _text.SlidingWindow + SlidingReserve);

    public void Dispose()
    {
        foreach (var layer in _layers)
        {
            layer.Keys.Dispose();
            layer.Values.Dispose();
        }
    }

    private readonly record struct LayerBuffers(DeviceBuffer Keys, DeviceBuffer Values, int Capacity, int Limit);
}
