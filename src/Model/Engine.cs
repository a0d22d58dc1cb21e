using Pipeline.Kernels;
using Pipeline.Kernels.Cpu;
using Pipeline.Model.Checkpoint;

namespace Pipeline.Model;

/// <summary>Receives the logits of one prompt position (index into the ids just given) during a prefill.</summary>
public delegate void LogitsCallback(int index, ReadOnlySpan<float> logits);

/// <summary>
/// A loaded Gemma-4 model ready to serve sessions, without actors: one forward pass at a time
/// (calls from several threads are serialized), sessions keep their own caches.
/// </summary>
public sealed class Engine : IDisposable
{
    private readonly object _gate = new();
    private readonly bool _ownsBackend;
    private readonly Gemma4Forward _forward;
    private readonly ForwardBatch _batch;
    private readonly ForwardWorkspace _work;
    private readonly EmbeddingSpan[] _blockSpans;   // one block's embedding spans, starts relative to the block

    private Engine(Gemma4Checkpoint checkpoint, EngineOptions options)
    {
        Checkpoint = checkpoint;
        Options = options;
        int maxPositions = checkpoint.Text.MaxPositionEmbeddings;
        MaxContext = options.MaxContext ?? maxPositions;
        if (MaxContext <= 0 || MaxContext > maxPositions)
            throw new ArgumentOutOfRangeException(nameof(options), MaxContext, $"MaxContext must be in 1..{maxPositions} (max_position_embeddings)");
        _ownsBackend = options.Backend is null;
        Backend = options.Backend ?? new CpuBackend(options.Threads);
        _forward = new Gemma4Forward(Backend, checkpoint);
        _batch = _forward.CreateBatch(options.MaxBatchRows);
        _work = _forward.CreateWorkspace(options.MaxBatchRows, options.MaxLogitRows);
        _blockSpans = new EmbeddingSpan[options.MaxBatchRows];
    }

    /// <summary>Opens the checkpoint in <paramref name="directory"/> (memory-mapped) and prepares the forward pass.</summary>
    public static Engine Load(string directory, EngineOptions? options = null)
    {
        var checkpoint = Gemma4Checkpoint.Open(directory);
        try
        {
            return new Engine(checkpoint, options ?? new EngineOptions());
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
    }

    public Gemma4Checkpoint Checkpoint { get; }
    public Gemma4TextConfig Config => Checkpoint.Text;
    public EngineOptions Options { get; }
    public IBackend Backend { get; }
    public Gemma4Forward Forward => _forward;
    public int VocabSize => Config.VocabSize;

    /// <summary>Longest context a session may reach.</summary>
    public int MaxContext { get; }

    public Session OpenSession() =>
        new(this, new KvCache(Backend, Config, MaxContext, Options.SlidingCacheReserve, Options.InitialCacheCapacity));

    /// <summary>
    /// Runs <paramref name="tokens"/>[cache.Length..] through the model, block by block, and reads
    /// logits into <paramref name="logits"/>: for every position from <paramref name="firstReported"/>
    /// on when a callback is given, else for the last position only.
    /// </summary>
    internal void Compute(KvCache cache, ReadOnlySpan<int> tokens, int firstReported, Span<float> logits, LogitsCallback? callback) =>
        Compute(cache, tokens, [], firstReported, logits, callback);

    /// <summary>
    /// <see cref="Compute(KvCache, ReadOnlySpan{int}, int, Span{float}, LogitsCallback?)"/> with rows of
    /// <paramref name="tokens"/> given as embeddings (<paramref name="embedded"/>: starts are positions,
    /// in order, none beginning before cache.Length and ending after it). Blocks end before a span rather
    /// than split it, since a span's rows must see each other in one pass.
    /// </summary>
    internal void Compute(
        KvCache cache, ReadOnlySpan<int> tokens, ReadOnlySpan<EmbeddingSpan> embedded, int firstReported, Span<float> logits, LogitsCallback? callback)
    {
        lock (_gate)
        {
            Span<int> rows = stackalloc int[_work.MaxLogitRows];
            int layers = Config.NumHiddenLayers, vocab = Config.VocabSize, hidden = Config.HiddenSize;
            int nextSpan = 0;
            while (nextSpan < embedded.Length && embedded[nextSpan].Start + embedded[nextSpan].Count(hidden) <= cache.Length)
                nextSpan++;
            while (cache.Length < tokens.Length)
            {
                int start = cache.Length;
                int count = Math.Min(_batch.MaxRows, tokens.Length - start);
                int spans = 0;
                while (nextSpan < embedded.Length && embedded[nextSpan].Start < start + count)
                {
                    var span = embedded[nextSpan];
                    int end = span.Start + span.Count(hidden);
                    if (span.Start < start)
                        throw new InvalidOperationException($"an embedding span starts at position {span.Start}, inside the cached prefix of {start}");
                    if (end > start + count)
                    {
                        if (span.Start == start)
                            throw new ArgumentException(
                                $"an image of {end - span.Start} rows at position {span.Start} must run in one forward block, but blocks hold at most {_batch.MaxRows} rows (EngineOptions.MaxBatchRows)",
                                nameof(embedded));
                        count = span.Start - start; // the span starts the next block
                        break;
                    }
                    _blockSpans[spans++] = span with { Start = span.Start - start };
                    nextSpan++;
                }
                cache.Reserve(start + count);
                _batch.Clear();
                _batch.Add(cache, tokens.Slice(start, count), start, _blockSpans.AsSpan(0, spans));
                _blockSpans.AsSpan(0, spans).Clear();
                _forward.Embed(_batch);
                _forward.RunLayers(_batch, _work, 0, layers);
                cache.Advance(count);

                if (callback is not null)
                {
                    // Every new position: the head over up to MaxLogitRows rows at once.
                    for (int row = Math.Max(0, firstReported - start); row < count; row += rows.Length)
                    {
                        int n = Math.Min(rows.Length, count - row);
                        for (int i = 0; i < n; i++)
                            rows[i] = row + i;
                        _forward.Head(_batch, _work, rows[..n]);
                        var computed = _forward.LogitRows(_work, n);
                        for (int i = 0; i < n; i++)
                        {
                            Backend.Read(computed.Slice((long)i * vocab, vocab), logits);
                            callback(start + row + i - firstReported, logits);
                        }
                    }
                }
                else if (start + count == tokens.Length)
                {
                    rows[0] = count - 1;
                    _forward.Head(_batch, _work, rows[..1]);
                    Backend.Read(_forward.LogitRows(_work, 1), logits);
                }
            }
        }
    }

    public void Dispose()
    {
        _batch.Dispose();
        _work.Dispose();
        _forward.Dispose();
        if (_ownsBackend)
            Backend.Dispose();
        Checkpoint.Dispose();
    }
}
