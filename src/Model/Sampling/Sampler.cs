using System.Diagnostics;
using System.Numerics;

namespace Pipeline.Model.Sampling;

/// <summary>
/// Picks next tokens from logits. One per session: it owns the RNG, the repetition history and scratch
/// buffers sized for the vocabulary, so <see cref="Sample"/> allocates nothing. Not thread-safe.
/// </summary>
/// <remarks>
/// <para>Exact rule for temperature T &gt; 0 (greedy at T = 0 is argmax, ties to the lowest id):</para>
/// <list type="number">
/// <item>Rank: tokens are ordered by logit, highest first, ties to the lowest id (-0 counts as +0).</item>
/// <item>Weights: w = exp((logit - maxLogit) / T) in double, quantized to an integer mass
/// q = round(w · S) with S = 2^(62 - ceil(log2 vocab)), so the whole vocabulary sums to at most 2^62.
/// Integer masses make every cumulative sum below exact and independent of summation order. The top
/// token has q = S; a token less likely than about 2^-(63 - ceil(log2 vocab)) times the top token
/// (2.8e-14 for 262,144 tokens) gets q = 0 and is never drawn.</item>
/// <item>Top-k: keep the first K tokens in rank order.</item>
/// <item>Top-p: Q = total mass of what top-k kept; keep the shortest rank-order prefix whose mass is
/// ≥ ceil(TopP · Q) (computed in double).</item>
/// <item>Min-p: keep tokens with q ≥ ceil(MinP · S) (p ≥ MinP · p_max; S is the top token's mass).
/// Min-p keeps a rank prefix too, so it intersects with the top-p prefix.</item>
/// <item>Draw: r uniform in [0, kept mass) from xoshiro256**; the token is the first in rank order
/// whose cumulative kept mass exceeds r. Exactly one RNG draw per call (rarely more, to stay unbiased).</item>
/// </list>
/// <para>Nothing sorts the vocabulary: top-k uses a bounded heap; top-p and the draw use a
/// quickselect that partitions by rank and carries masses, so it finds the prefix in expected linear time.</para>
/// </remarks>
public sealed class Sampler
{
    private const int SmallRange = 16;

    private readonly int vocabSize;
    private readonly double massScale;     // S above
    private readonly double skipBelow;     // scaled logits below this have exp(x)·S < 1/4, so q = 0 without calling exp
    private readonly long minPMass;        // ceil(MinP · S); 0 when off
    private readonly int topK;             // 0 when off or ≥ vocab
    private readonly double temperature;
    private readonly ulong[] keys;         // [vocab] scratch: rank keys of candidates (logit, id), arrangement changes
    private readonly long[] masses;        // [vocab] scratch: quantized masses, parallel to keys
    private readonly RepetitionGuard guard;
    private Xoshiro256StarStar rng;
    private ulong seed;
    private int keptCount;
    private long keptMass;

    public Sampler(int vocabSize, SamplingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (vocabSize < 1)
            throw new ArgumentOutOfRangeException(nameof(vocabSize), vocabSize, "vocabSize must be at least 1.");
        options.Validate();

        this.vocabSize = vocabSize;
        Options = options;
        int vocabBits = vocabSize == 1 ? 0 : BitOperations.Log2((uint)(vocabSize - 1)) + 1;
        int scaleBits = 62 - vocabBits;
        massScale = Math.ScaleB(1.0, scaleBits);
        skipBelow = -(scaleBits + 2) * Math.Log(2.0);
        minPMass = (long)Math.Ceiling(options.MinP * massScale);
        topK = options.TopK < vocabSize ? options.TopK : 0;
        temperature = options.Temperature;
        keys = new ulong[vocabSize];
        masses = new long[vocabSize];
        guard = new RepetitionGuard(options);
        Reseed();
    }

    public SamplingOptions Options { get; }

    public int VocabSize => vocabSize;

    /// <summary>Next token from <paramref name="logits"/> ([vocab]). Allocates nothing.</summary>
    public int Sample(ReadOnlySpan<float> logits)
    {
        int argmax = ValidateAndFindMax(logits);
        if (temperature == 0)
            return argmax;
        Truncate(logits, logits[argmax]);
        return DrawAt((long)rng.NextBelow((ulong)keptMass));
    }

    /// <summary>
    /// Feeds one generated token to the repetition cut-offs. Returns why generation should end, or
    /// <see cref="SamplerStop.None"/>. Keeps reporting while the repetition continues.
    /// </summary>
    public SamplerStop Observe(int token)
    {
        if ((uint)token >= (uint)vocabSize)
            throw new ArgumentOutOfRangeException(nameof(token), token, $"token must be in [0, {vocabSize}).");
        return guard.Observe(token);
    }

    /// <summary>Clears the repetition history and reseeds: from <see cref="SamplingOptions.Seed"/>, else with a fresh random seed.</summary>
    public void Reset()
    {
        guard.Clear();
        Reseed();
    }

    /// <summary>Snapshot of the RNG and repetition history, for replaying a session.</summary>
    public SamplerState Capture() => new(rng.State, seed, Options, guard.Capture());

    /// <summary>Returns to a snapshot taken by <see cref="Capture"/> on a sampler with the same cut-off settings.</summary>
    public void Restore(SamplerState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        var mine = Options;
        var theirs = state.Cutoffs;
        if (mine.MaxConsecutiveRepeats != theirs.MaxConsecutiveRepeats
            || mine.NgramSize != theirs.NgramSize
            || mine.NgramRepeatLimit != theirs.NgramRepeatLimit)
            throw new ArgumentException(
                $"Sampler state has cut-offs (MaxConsecutiveRepeats {theirs.MaxConsecutiveRepeats}, NgramSize {theirs.NgramSize}, "
                + $"NgramRepeatLimit {theirs.NgramRepeatLimit}); this sampler has ({mine.MaxConsecutiveRepeats}, "
                + $"{mine.NgramSize}, {mine.NgramRepeatLimit}).",
                nameof(state));
        guard.Restore(state.History);
        var (s0, s1, s2, s3) = state.RngState;
        rng = Xoshiro256StarStar.FromState(s0, s1, s2, s3);
        seed = state.Seed;
    }

    private void Reseed()
    {
        seed = Options.Seed ?? (ulong)Random.Shared.NextInt64(long.MinValue, long.MaxValue);
        rng = Xoshiro256StarStar.FromSeed(seed);
    }

    /// <summary>Checks length and values; returns the first index of the highest logit.</summary>
    private int ValidateAndFindMax(ReadOnlySpan<float> logits)
    {
        if (logits.Length != vocabSize)
            throw new ArgumentException($"logits has length {logits.Length}, expected the vocabulary size {vocabSize}.", nameof(logits));
        int best = 0;
        float bestValue = float.NegativeInfinity;
        for (int i = 0; i < logits.Length; i++)
        {
            float x = logits[i];
            if (x > bestValue)
            {
                best = i;
                bestValue = x;
            }
            else if (!(x <= bestValue))
            {
                throw BadLogit(i, x);
            }
        }
        if (float.IsPositiveInfinity(bestValue))
            throw BadLogit(best, bestValue);
        if (float.IsNegativeInfinity(bestValue))
            throw new ArgumentException("logits are all -Infinity; no token can be sampled.", nameof(logits));
        return best;

        static ArgumentException BadLogit(int index, float value) =>
            new($"logits[{index}] is {value}; logits must be finite or -Infinity.", nameof(logits));
    }

    /// <summary>Leaves the kept tokens in keys/masses[0..keptCount) (any arrangement) and their total in keptMass.</summary>
    private void Truncate(ReadOnlySpan<float> logits, float maxLogit)
    {
        int count = topK > 0 ? SelectTopK(logits) : vocabSize;
        int n = 0;
        long total = 0;
        for (int i = 0; i < count; i++)
        {
            int id = topK > 0 ? TokenOf(keys[i]) : i;
            long q = Mass(logits[id], maxLogit);
            if (q == 0)
                continue;
            keys[n] = topK > 0 ? keys[i] : RankKey(logits[id], id);
            masses[n] = q;
            total += q;
            n++;
        }

        long kept = total;
        if (minPMass > 0)
        {
            int m = 0;
            kept = 0;
            for (int i = 0; i < n; i++)
            {
                if (masses[i] < minPMass)
                    continue;
                keys[m] = keys[i];
                masses[m] = masses[i];
                kept += masses[i];
                m++;
            }
            n = m;
        }

        if (Options.TopP < 1)
        {
            long target = Math.Clamp((long)Math.Ceiling(Options.TopP * (double)total), 1, total);
            if (kept > target)
            {
                n = SelectByMass(0, n, target) + 1;
                kept = 0;
                for (int i = 0; i < n; i++)
                    kept += masses[i];
            }
        }

        keptCount = n;
        keptMass = kept;
    }

    private long Mass(float logit, float maxLogit)
    {
        double scaled = ((double)logit - maxLogit) / temperature;
        return scaled < skipBelow ? 0 : (long)Math.Round(Math.Exp(scaled) * massScale);
    }

    /// <summary>Bounded min-heap over rank keys: keys[0..K) end up holding the K best tokens (heap order).</summary>
    private int SelectTopK(ReadOnlySpan<float> logits)
    {
        int k = topK;
        for (int id = 0; id < k; id++)
        {
            keys[id] = RankKey(logits[id], id);
            SiftUp(id);
        }
        for (int id = k; id < logits.Length; id++)
        {
            ulong key = RankKey(logits[id], id);
            if (key > keys[0])
            {
                keys[0] = key;
                SiftDown(k);
            }
        }
        return k;
    }

    private void SiftUp(int i)
    {
        ulong key = keys[i];
        while (i > 0)
        {
            int parent = (i - 1) >> 1;
            if (keys[parent] <= key)
                break;
            keys[i] = keys[parent];
            i = parent;
        }
        keys[i] = key;
    }

    private void SiftDown(int size)
    {
        ulong key = keys[0];
        int i = 0;
        while (true)
        {
            int child = 2 * i + 1;
            if (child >= size)
                break;
            if (child + 1 < size && keys[child + 1] < keys[child])
                child++;
            if (keys[child] >= key)
                break;
            keys[i] = keys[child];
            i = child;
        }
        keys[i] = key;
    }

    /// <summary>
    /// Rearranges [lo, hi) so that [lo, b] is the shortest highest-ranked run whose mass reaches
    /// <paramref name="need"/>, and b holds its lowest-ranked token; returns b. Needs 1 ≤ need ≤ mass of the range.
    /// </summary>
    private int SelectByMass(int lo, int hi, long need)
    {
        Debug.Assert(need >= 1);
        ulong pivotState = 0x5EEDUL; // fixed: the run is a function of the input alone
        while (hi - lo > SmallRange)
        {
            int p = lo + (int)(Xoshiro256StarStar.SplitMix64(ref pivotState) % (ulong)(hi - lo));
            Swap(p, hi - 1);
            ulong pivot = keys[hi - 1];
            int store = lo;
            long massAbove = 0;
            for (int i = lo; i < hi - 1; i++)
            {
                if (keys[i] > pivot)
                {
                    massAbove += masses[i];
                    Swap(i, store);
                    store++;
                }
            }
            Swap(store, hi - 1);

            if (massAbove >= need)
            {
                hi = store;
            }
            else if (massAbove + masses[store] >= need)
            {
                return store;
            }
            else
            {
                need -= massAbove + masses[store];
                lo = store + 1;
            }
        }

        SortDescending(lo, hi);
        for (int i = lo; i < hi; i++)
        {
            need -= masses[i];
            if (need <= 0)
                return i;
        }
        throw new UnreachableException("SelectByMass was asked for more mass than its range holds.");
    }

    private void SortDescending(int lo, int hi)
    {
        for (int i = lo + 1; i < hi; i++)
        {
            ulong key = keys[i];
            long mass = masses[i];
            int j = i - 1;
            while (j >= lo && keys[j] < key)
            {
                keys[j + 1] = keys[j];
                masses[j + 1] = masses[j];
                j--;
            }
            keys[j + 1] = key;
            masses[j + 1] = mass;
        }
    }

    private void Swap(int a, int b)
    {
        (keys[a], keys[b]) = (keys[b], keys[a]);
        (masses[a], masses[b]) = (masses[b], masses[a]);
    }

    /// <summary>Test hook: runs the truncation and returns the kept tokens (arbitrary order) and masses.</summary>
    internal (int Token, long Mass)[] KeptForTest(ReadOnlySpan<float> logits)
    {
        int argmax = ValidateAndFindMax(logits);
        Truncate(logits, logits[argmax]);
        var kept = new (int, long)[keptCount];
        for (int i = 0; i < keptCount; i++)
            kept[i] = (TokenOf(keys[i]), masses[i]);
        return kept;
    }

    /// <summary>Test hook: the token a given uniform draw r ∈ [0, kept mass) selects, after <see cref="KeptForTest"/>.</summary>
    internal int DrawForTest(long r) => DrawAt(r);

    internal long KeptMassForTest => keptMass;

    private int DrawAt(long r) => TokenOf(keys[SelectByMass(0, keptCount, r + 1)]);

    /// <summary>Orders (logit desc, id asc) as one unsigned compare: higher key = ranked first.</summary>
    internal static ulong RankKey(float logit, int id)
    {
        uint bits = BitConverter.SingleToUInt32Bits(logit == 0 ? 0f : logit); // -0 ranks like +0
        uint ordered = (bits & 0x8000_0000u) != 0 ? ~bits : bits | 0x8000_0000u;
        return ((ulong)ordered << 32) | ~(uint)id;
    }

    internal static int TokenOf(ulong key) => (int)~(uint)key;
}
