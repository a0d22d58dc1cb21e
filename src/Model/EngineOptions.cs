using Pipeline.Kernels;

namespace Pipeline.Model;

/// <summary>How an <see cref="Engine"/> sizes its work and caches.</summary>
public sealed record EngineOptions
{
    /// <summary>
    /// Tokens per forward block; longer prompts are run in blocks of this many. An image's rows must
    /// be in one block (they attend to each other in both directions, so a later block could not
    /// update an earlier one's rows): the default 512 holds an image at the default 280-token budget
    /// (about 190 MB of activations for the 31B); the 560 and 1120 budgets need a larger value.
    /// </summary>
    public int MaxBatchRows { get; init; } = 512;

    /// <summary>Rows whose logits are computed in one head call (each row is vocab floats).</summary>
    public int MaxLogitRows { get; init; } = 8;

    /// <summary>
    /// Extra positions each sliding-layer ring keeps beyond the window, so a session can truncate
    /// back this far after the ring wrapped without recomputing (see <see cref="KvCache"/>).
    /// </summary>
    public int SlidingCacheReserve { get; init; } = 64;

    /// <summary>Cache slots a layer starts with; buffers double as a session grows.</summary>
    public int InitialCacheCapacity { get; init; } = 256;

    /// <summary>Longest context a session may reach; null = the model's max_position_embeddings.</summary>
    public int? MaxContext { get; init; }

    /// <summary>CPU threads when the engine creates its own CPU backend; 0 = all cores.</summary>
    public int Threads { get; init; }

    /// <summary>A backend to run on (the engine does not dispose it); null = a CPU backend owned by the engine.</summary>
    public IBackend? Backend { get; init; }
}
