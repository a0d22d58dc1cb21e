using Akka.Configuration;
using Pipeline.Actors.Faults;

namespace Pipeline.Actors;

/// <summary>
/// The <c>pipeline { ... }</c> section of config/akka.hocon (see that file for what each key means),
/// read once when the actors start. Invalid values throw one <see cref="ConfigurationException"/>
/// naming the key and the value.
/// </summary>
public sealed record PipelineSettings
{
    public const string Section = "pipeline";

    /// <summary>Number of layer-group executors when <see cref="LayerGroupRanges"/> is empty (layers split evenly).</summary>
    public int LayerGroups { get; init; } = 1;

    /// <summary>Explicit contiguous ranges "first-end" (end exclusive) covering every layer, e.g. ["0-2", "2-6"].</summary>
    public IReadOnlyList<string> LayerGroupRanges { get; init; } = [];

    /// <summary>Executors run every step pending in their mailbox as one pass (off: one step per pass).</summary>
    public bool Batching { get; init; } = true;

    /// <summary>
    /// Longest time an executor holds a pass for the sessions of its previous pass to send their next
    /// step, so concurrent decoders keep sharing one read of the weights (at most a tenth of the last
    /// pass's duration; zero = run whatever is pending at once).
    /// </summary>
    public TimeSpan BatchGatherWait { get; init; } = TimeSpan.FromMilliseconds(20);

    /// <summary>Most rows (tokens over all steps) one executor pass holds.</summary>
    public int MaxBatchRows { get; init; } = 512;

    /// <summary>Prompt tokens per prefill step; cancellation is checked between steps.</summary>
    public int PrefillChunk { get; init; } = 64;

    /// <summary>Extra positions each sliding ring keeps beyond the window (lets a failed step be retried and turns truncate back).</summary>
    public int SlidingCacheReserve { get; init; } = 64;

    /// <summary>Cache slots a session starts with per layer (buffers double as needed).</summary>
    public int InitialCacheCapacity { get; init; } = 256;

    /// <summary>Longest context a session may reach; 0 = the model's max_position_embeddings.</summary>
    public int MaxContext { get; init; }

    /// <summary>Tries per step or stage request lost to a failing actor before the turn ends with an error event.</summary>
    public int MaxStepRetries { get; init; } = 5;

    /// <summary>Restarts of a session's actor in a row within a turn (without a new token in between) before the turn ends with an error event.</summary>
    public int MaxTurnRestarts { get; init; } = 8;

    /// <summary>Routees of the tokenizer pool.</summary>
    public int TokenizerPoolSize { get; init; } = 2;

    /// <summary>Longest wait for any one stage answer before the turn ends with an error event (a guard, not a retry).</summary>
    public TimeSpan StepTimeout { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Prompt and completion text on turn spans (off: only counts and ids).</summary>
    public bool RecordContent { get; init; }

    /// <summary>Dispatcher of the layer-group executors (kernel work; never the default dispatcher).</summary>
    public string KernelDispatcher { get; init; } = "pipeline.dispatchers.kernel";

    /// <summary>Dispatcher of the tokenizer, sampler and detokenizer (CPU-bound stage work).</summary>
    public string StageDispatcher { get; init; } = "pipeline.dispatchers.stage";

    /// <summary>Test-only fault injection per role (empty: off).</summary>
    public IReadOnlyDictionary<ActorRole, RoleFault> Faults { get; init; } = new Dictionary<ActorRole, RoleFault>();

    public int FaultSeed { get; init; }

    public static PipelineSettings FromConfig(Config config)
    {
        ArgumentNullException.ThrowIfNull(config);
        var section = config.GetConfig(Section)
            ?? throw new ConfigurationException($"the '{Section}' section is missing from the actor system's configuration (config/akka.hocon)");
        var defaults = new PipelineSettings();
        var settings = new PipelineSettings
        {
            LayerGroups = Positive(section, "layer-groups", defaults.LayerGroups),
            LayerGroupRanges = section.GetStringList("layer-group-ranges", []).ToArray(),
            Batching = section.GetBoolean("batching", defaults.Batching),
            MaxBatchRows = Positive(section, "max-batch-rows", defaults.MaxBatchRows),
            PrefillChunk = Positive(section, "prefill-chunk", defaults.PrefillChunk),
            SlidingCacheReserve = NonNegative(section, "sliding-cache-reserve", defaults.SlidingCacheReserve),
            InitialCacheCapacity = Positive(section, "initial-cache-capacity", defaults.InitialCacheCapacity),
            MaxContext = NonNegative(section, "max-context", defaults.MaxContext),
            MaxStepRetries = Positive(section, "max-step-retries", defaults.MaxStepRetries),
            MaxTurnRestarts = NonNegative(section, "max-turn-restarts", defaults.MaxTurnRestarts),
            TokenizerPoolSize = Positive(section, "tokenizer-pool-size", defaults.TokenizerPoolSize),
            StepTimeout = section.GetTimeSpan("step-timeout", defaults.StepTimeout),
            BatchGatherWait = Duration(section, "batch-gather-wait", defaults.BatchGatherWait),
            RecordContent = section.GetBoolean("tracing.record-content", defaults.RecordContent),
            KernelDispatcher = section.GetString("kernel-dispatcher", defaults.KernelDispatcher),
            StageDispatcher = section.GetString("stage-dispatcher", defaults.StageDispatcher),
            Faults = ReadFaults(section),
            FaultSeed = section.GetInt("faults.seed", 0),
        };
        if (settings.PrefillChunk > settings.MaxBatchRows)
            throw new ConfigurationException(
                $"pipeline.prefill-chunk = {settings.PrefillChunk} must not exceed pipeline.max-batch-rows = {settings.MaxBatchRows}");
        if (settings.StepTimeout <= TimeSpan.Zero)
            throw new ConfigurationException($"pipeline.step-timeout = {settings.StepTimeout} must be positive");
        return settings;
    }

    /// <summary>
    /// The contiguous layer ranges [first, end) of the executors for a model of <paramref name="layers"/>
    /// layers: <see cref="LayerGroupRanges"/> when given, else <see cref="LayerGroups"/> even splits.
    /// </summary>
    public IReadOnlyList<(int First, int End)> ResolveLayerGroups(int layers)
    {
        var ranges = new List<(int First, int End)>();
        if (LayerGroupRanges.Count == 0)
        {
            if (LayerGroups > layers)
                throw new ConfigurationException($"pipeline.layer-groups = {LayerGroups} exceeds the model's {layers} layers");
            for (int g = 0; g < LayerGroups; g++)
                ranges.Add(((int)((long)g * layers / LayerGroups), (int)((long)(g + 1) * layers / LayerGroups)));
            return ranges;
        }
        foreach (string text in LayerGroupRanges)
        {
            var parts = text.Split('-', StringSplitOptions.TrimEntries);
            if (parts.Length != 2 || !int.TryParse(parts[0], out int first) || !int.TryParse(parts[1], out int end) || end <= first)
                throw new ConfigurationException($"pipeline.layer-group-ranges entry '{text}' is not 'first-end' with end > first (end exclusive)");
            int expected = ranges.Count == 0 ? 0 : ranges[^1].End;
            if (first != expected)
                throw new ConfigurationException(
                    $"pipeline.layer-group-ranges entry '{text}' starts at layer {first}; ranges must be contiguous from 0 (expected {expected})");
            ranges.Add((first, end));
        }
        if (ranges[^1].End != layers)
            throw new ConfigurationException($"pipeline.layer-group-ranges end at layer {ranges[^1].End}; the model has {layers} layers");
        return ranges;
    }

    private static IReadOnlyDictionary<ActorRole, RoleFault> ReadFaults(Config section)
    {
        var faults = new Dictionary<ActorRole, RoleFault>();
        if (!section.GetBoolean("faults.enabled", false))
            return faults;
        foreach (var role in Enum.GetValues<ActorRole>())
        {
            string path = $"faults.{role.ConfigName()}";
            if (!section.HasPath(path))
                continue;
            double probability = section.GetDouble($"{path}.probability", 0);
            if (!(probability >= 0 && probability <= 1))
                throw new ConfigurationException($"pipeline.{path}.probability = {probability} must be in [0, 1]");
            string mode = section.GetString($"{path}.mode", "throw");
            var parsed = mode switch
            {
                "throw" => FaultMode.Throw,
                "kill" => FaultMode.Kill,
                _ => throw new ConfigurationException($"pipeline.{path}.mode = '{mode}' must be 'throw' or 'kill'"),
            };
            faults[role] = new RoleFault(probability, parsed);
        }
        return faults;
    }

    /// <summary>A zero or positive duration such as 20ms (Akka's parser refuses negative ones with a bare FormatException).</summary>
    private static TimeSpan Duration(Config section, string key, TimeSpan fallback)
    {
        try
        {
            return section.GetTimeSpan(key, fallback, allowInfinite: false);
        }
        catch (FormatException)
        {
            throw new ConfigurationException($"pipeline.{key} = {section.GetString(key)} must be a duration of zero or more, e.g. 20ms");
        }
    }

    private static int Positive(Config section, string key, int fallback)
    {
        int value = section.GetInt(key, fallback);
        return value > 0 ? value : throw new ConfigurationException($"pipeline.{key} = {value} must be positive");
    }

    private static int NonNegative(Config section, string key, int fallback)
    {
        int value = section.GetInt(key, fallback);
        return value >= 0 ? value : throw new ConfigurationException($"pipeline.{key} = {value} must not be negative");
    }
}
