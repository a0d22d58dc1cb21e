namespace Pipeline.Model.Sampling;

/// <summary>
/// A snapshot of a <see cref="Sampler"/>'s RNG and cut-off history, taken by <see cref="Sampler.Capture"/>.
/// Restoring it into a sampler with the same cut-off settings replays the same tokens for the same logits.
/// Immutable; restoring it twice gives the same state twice.
/// </summary>
public sealed class SamplerState
{
    internal SamplerState(
        (ulong, ulong, ulong, ulong) rngState, ulong seed, SamplingOptions cutoffs, RepetitionGuard.HistorySnapshot history)
    {
        RngState = rngState;
        Seed = seed;
        Cutoffs = cutoffs;
        History = history;
    }

    internal (ulong S0, ulong S1, ulong S2, ulong S3) RngState { get; }

    /// <summary>The seed the sampler was last (re)seeded with; for a null <see cref="SamplingOptions.Seed"/>, the one it drew.</summary>
    public ulong Seed { get; }

    internal SamplingOptions Cutoffs { get; }

    internal RepetitionGuard.HistorySnapshot History { get; }
}
