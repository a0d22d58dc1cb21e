using Pipeline.Model.Tests.Checkpoint;

namespace Pipeline.Model.Tests.Forward;

/// <summary>
/// Two engines on tiny-a (UD-Q2_K_XL): <see cref="Default"/> (one block per prompt, rings of window +
/// 64) and <see cref="Small"/> (blocks of 7, rings of exactly the 16-token window, caches starting
/// at 8 slots so every layer grows several times).
/// </summary>
public sealed class TinyEngines : IDisposable
{
    public static string ModelDirectory => CheckpointFixtures.TinyA("ud-q2kxl");

    public Engine Default { get; } = Engine.Load(ModelDirectory);

    public Engine Small { get; } = Engine.Load(ModelDirectory, new EngineOptions
    {
        MaxBatchRows = 7,
        MaxLogitRows = 3,
        SlidingCacheReserve = 0,
        InitialCacheCapacity = 8,
    });

    public static TheoryData<string> SequenceNames() =>
        new("bos_only", "text_short", "chat_brief_example", "chat_template", "chat_multiturn", "random_3w", "random_6w");

    public void Dispose()
    {
        Default.Dispose();
        Small.Dispose();
    }
}
