namespace Pipeline.Model.Sampling;

/// <summary>
/// The repetition cut-offs over the tokens a session generated. O(NgramSize) work and no allocation per
/// token: for every block length p it keeps how many of the newest tokens equal the token p places
/// earlier, so "one p-block repeated L+1 times back to back" is that count reaching p·L.
/// </summary>
internal sealed class RepetitionGuard
{
    private readonly int maxConsecutive;
    private readonly int ngramSize;
    private readonly int ngramLimit;
    private readonly int[] recent;         // [ngramSize] ring of the newest tokens
    private readonly long[] periodicRun;   // [ngramSize + 1] index p: newest tokens equal to the token p earlier (saturates at p·L)
    private long observed;
    private int lastToken;
    private int run;                       // identical tokens in a row ending at lastToken (saturates)

    public RepetitionGuard(SamplingOptions options)
    {
        maxConsecutive = options.MaxConsecutiveRepeats;
        ngramSize = options.NgramSize;
        ngramLimit = options.NgramRepeatLimit;
        recent = new int[ngramSize];
        periodicRun = new long[ngramSize + 1];
    }

    public SamplerStop Observe(int token)
    {
        run = observed > 0 && token == lastToken ? Math.Min(run + 1, int.MaxValue - 1) : 1;
        lastToken = token;

        bool ngramRepeated = false;
        for (int p = 1; p <= ngramSize; p++)
        {
            long needed = (long)p * ngramLimit;
            bool matches = observed >= p && recent[RingIndex(observed - p)] == token;
            periodicRun[p] = matches ? Math.Min(periodicRun[p] + 1, needed) : 0;
            ngramRepeated |= periodicRun[p] >= needed;
        }
        if (ngramSize > 0)
            recent[RingIndex(observed)] = token;
        observed++;

        if (maxConsecutive > 0 && run >= maxConsecutive)
            return SamplerStop.RepeatedToken;
        return ngramRepeated ? SamplerStop.RepeatedNgram : SamplerStop.None;
    }

    public void Clear()
    {
        observed = 0;
        lastToken = 0;
        run = 0;
        Array.Clear(recent);
        Array.Clear(periodicRun);
    }

    public HistorySnapshot Capture() =>
        new(observed, lastToken, run, (int[])recent.Clone(), (long[])periodicRun.Clone());

    public void Restore(HistorySnapshot snapshot)
    {
        if (snapshot.Recent.Length != recent.Length)
            throw new ArgumentException(
                $"Sampler state was captured with NgramSize {snapshot.Recent.Length}, this sampler has NgramSize {ngramSize}.",
                "state");
        observed = snapshot.Observed;
        lastToken = snapshot.LastToken;
        run = snapshot.Run;
        snapshot.Recent.CopyTo(recent, 0);
        snapshot.PeriodicRun.CopyTo(periodicRun, 0);
    }

    private int RingIndex(long position) => (int)(position % ngramSize);

    internal sealed record HistorySnapshot(long Observed, int LastToken, int Run, int[] Recent, long[] PeriodicRun);
}
