using Pipeline.Actors.Text;
using Pipeline.Kernels;
using Pipeline.Kernels.Cpu;
using Pipeline.Model;
using Pipeline.Model.Checkpoint;
using Pipeline.Model.Sampling;
using TokenizerModel = Pipeline.Tokenizer.Tokenizer;

namespace Pipeline.Actors.Execution;

/// <summary>
/// The long-lived owner of everything the actors share and must survive their restarts: the
/// memory-mapped checkpoint (weights stay mapped while executors come and go), the backend, the
/// forward pass, the tokenizer and the chat format. Created once per host; disposed after the
/// actor system has stopped.
/// </summary>
public sealed class PipelineModel : IDisposable
{
    private readonly bool _ownsBackend;

    public PipelineModel(Gemma4Checkpoint checkpoint, IChatFormat chatFormat, TokenizerModel tokenizer, IBackend? backend = null, int threads = 0)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(chatFormat);
        ArgumentNullException.ThrowIfNull(tokenizer);
        Checkpoint = checkpoint;
        ChatFormat = chatFormat;
        Tokenizer = tokenizer;
        _ownsBackend = backend is null;
        Backend = backend ?? new CpuBackend(threads);
        Forward = new Gemma4Forward(Backend, checkpoint);
        Prefetcher = new LayerPrefetcher(checkpoint);
        Name = Path.GetFileName(Path.TrimEndingDirectorySeparator(checkpoint.Directory));
        StopTokenIds = new HashSet<int>(checkpoint.Generation.EosTokenIds);
    }

    /// <summary>
    /// Opens the checkpoint in <paramref name="directory"/> with the embedded Gemma-4 tokenizer and the
    /// directory's chat template (the embedded Gemma-4 one when it has none).
    /// </summary>
    public static PipelineModel Load(string directory, IBackend? backend = null, int threads = 0) =>
        Load(directory, Gemma4ChatFormat.ForModel(directory), backend, threads);

    /// <summary>Opens the checkpoint in <paramref name="directory"/> with the embedded Gemma-4 tokenizer and <paramref name="chatFormat"/>.</summary>
    public static PipelineModel Load(string directory, IChatFormat chatFormat, IBackend? backend = null, int threads = 0)
    {
        var checkpoint = Gemma4Checkpoint.Open(directory);
        try
        {
            return new PipelineModel(checkpoint, chatFormat, TokenizerModel.LoadGemma4(), backend, threads);
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
    }

    public Gemma4Checkpoint Checkpoint { get; }
    public Gemma4TextConfig Text => Checkpoint.Text;
    public IBackend Backend { get; }
    public Gemma4Forward Forward { get; }
    public TokenizerModel Tokenizer { get; }
    public IChatFormat ChatFormat { get; }
    public LayerPrefetcher Prefetcher { get; }

    /// <summary>The model's name for traces (gen_ai.request.model): its directory's name.</summary>
    public string Name { get; }

    /// <summary>Tokens that end a turn (generation_config.json eos_token_id).</summary>
    public IReadOnlySet<int> StopTokenIds { get; }

    /// <summary>
    /// Held for every backend call: the backend serves one caller at a time, and it already spreads
    /// each op over all cores, so executors of different layer groups take turns.
    /// </summary>
    public object BackendGate { get; } = new();

    /// <summary>Context limit for <paramref name="settings"/> (its max-context, else max_position_embeddings).</summary>
    public int MaxContext(PipelineSettings settings) =>
        settings.MaxContext > 0 ? Math.Min(settings.MaxContext, Text.MaxPositionEmbeddings) : Text.MaxPositionEmbeddings;

    public SessionCache CreateSessionCache(PipelineSettings settings)
    {
        lock (BackendGate)
            return new SessionCache(this, new KvCache(Backend, Text, MaxContext(settings), settings.SlidingCacheReserve, settings.InitialCacheCapacity));
    }

    /// <summary>Sampler options of a turn: the request's values, else generation_config.json's.</summary>
    public SamplingOptions SamplingFor(GenerationOptions options)
    {
        var generation = Checkpoint.Generation;
        var sampling = SamplingOptions.FromGenerationDefaults(
            options.Temperature ?? generation.Temperature,
            options.TopK ?? generation.TopK,
            options.TopP ?? generation.TopP,
            options.MinP ?? generation.MinP) with
        {
            Seed = options.Seed,
            MaxConsecutiveRepeats = options.MaxConsecutiveRepeats,
            NgramSize = options.NgramSize,
            NgramRepeatLimit = options.NgramRepeatLimit,
        };
        sampling.Validate();
        return sampling;
    }

    public void Dispose()
    {
        Prefetcher.Dispose();
        lock (BackendGate)
        {
            Forward.Dispose();
            if (_ownsBackend)
                Backend.Dispose();
        }
        Checkpoint.Dispose();
    }
}
