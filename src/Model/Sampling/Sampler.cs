using System.Diagnostics;
using System.Numerics;

namespace Pipeline.Model.Sampling;

/// <summary>
/// Picks next tokens from logits. One per session: it owns the RNG, the repetition history and scratch
/// buffers sized for the vocabulary, so <see cref="Sample"/> allocates nothing. Not thread-safe.
/// </summary>
/// <remarks>
/// <para>Exact rule for temperature T &gt; 0 (greedy at T = 0 is argmax, ties to the lowest id). As in
/// llama.cpp and mlx-lm, truncation sees the untempered distribution and temperature shapes only the
/// draw among what survives it:</para>
/// <list type="number">
/// <item>Weights: w = exp(logit - maxLogit) in double (exp((logit - maxLogit) / T) when top-p is off: then
/// no stage before the draw looks at them), quantized to an integer mass q = round(w · S) with
/// S = 2^(62 - ceil(log2 vocab)), so the whole vocabulary sums to at most 2^62. Integer masses make
/// every cumulative sum below exact and independent of summation order. The top token has q = S; a
/// token less likely than about 2^-(63 - ceil(log2 vocab)) times the top token (2.8e-14 for 262,144
/// tokens) gets q = 0 and is never drawn.</item>
/// <item>Top-k: keep the K highest logits, ties to the lowest id (-0 counts as +0).</item>
/// <item>Rank (for everything after top-k): by q, highest first, then by logit, then lowest id. That is
/// logit order, since q follows the logit; ranking by q first keeps every stage below a prefix of one
/// order by construction, whatever the platform's exp does in its last bit.</item>
/// <item>Top-p: Q = total mass of what top-k kept; keep the shortest rank-order prefix whose mass is
/// ≥ ceil(TopP · Q) (computed in double).</item>
/// <item>Min-p: keep tokens with (double)logit - maxLogit ≥ ln(MinP) (untempered p ≥ MinP · p_max),
/// decided from the logit rather than from q, so a tiny MinP keeps tokens whose untempered q would
/// round to 0 but whose tempered weight at T &gt; 1 is not negligible.</item>
/// <item>Temperature: with top-p on, the kept tokens are weighed again at T, quantized the same way
/// (at T = 1 the masses above are reused).</item>
/// <item>Draw: r = floor(u · kept mass) with u the next xoshiro256** output as a fraction of 2^64; the
/// token is the first kept token in id order whose cumulative (tempered) mass exceeds r. Exactly one RNG
/// output per call, no rejection step, and an order that does not depend on the logits, so the draw
/// moves smoothly with the masses: logits that differ in their last bits (a batched pass sums in another
/// order than a lone one) change the token only when r lies within that difference of a boundary, and
/// never shift the RNG stream of later draws. Every token owns a contiguous range of r, so its
/// probability is exact within 2^-64.</item>
/// </list>
/// <para>Every stage keeps a rank-order prefix, so the kept set is described by its mass alone and the
/// top-p cut is "find the rank position where the cumulative mass reaches the target". Nothing sorts the
/// vocabulary: top-k is a bounded heap; finding a position by mass buckets the masses by magnitude
/// (1,008 buckets, in rank order), then quickselects inside the one bucket that holds it. The draw then
/// walks the kept tokens in id order (at most K of them with top-k, else one pass over the vocabulary).</para>
/// </remarks>
public sealed class Sampler
{
    private const int SmallRange = 16;
    private const int BucketMantissaBits = 4;                             // 16 buckets per power of two
    private const int BucketCount = 63 << BucketMantissaBits;            // masses lie in [1, 2^62]

    private readonly int vocabSize;
    private readonly double massScale;     // S above
    private readonly double zeroBelow;     // scaled logits below this get q = 0 without calling exp
    private readonly double minPLogit;     // ln(MinP): min-p keeps logit - maxLogit ≥ this; -∞ when off
    private readonly int topK;             // 0 when off or ≥ vocab
    private readonly double temperature;
    private readonly long[] massById;      // [vocab] q per token id, when top-k is off
    private readonly long[] bucketMass;    // [BucketCount] total q per magnitude bucket, when top-k is off
    private readonly ulong[] keys;         // [K or vocab] candidate rank keys (logit, id); order is scratch
    private readonly long[] masses;        // [K or vocab] q parallel to keys
    private readonly RepetitionGuard guard;
    private Xoshiro256StarStar rng;
    private ulong seed;
    private int candidateCount;            // top-k on: candidates are keys/masses[0..candidateCount)
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
        minPLogit = options.MinP > 0 ? Math.Log(options.MinP) : double.NegativeInfinity;
        zeroBelow = -(scaleBits + 2) * Math.Log(2.0);   // exp(x)·S < 1/4 rounds to 0
        topK = options.TopK < vocabSize ? options.TopK : 0;
        temperature = options.Temperature;
        massById = topK > 0 ? [] : new long[vocabSize];
        bucketMass = topK > 0 ? [] : new long[BucketCount];
        keys = new ulong[topK > 0 ? topK : vocabSize];
        masses = new long[topK > 0 ? topK : vocabSize];
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
        long r = (long)rng.NextScaled((ulong)keptMass);
        return DrawInIdOrder(r + 1);
    }

    /// <summary>
    /// The first kept token in id order at which the cumulative mass reaches <paramref name="need"/>
    /// (1 ≤ need ≤ kept mass). Id order rather than rank order: two tokens whose logits nearly tie swap
    /// ranks under the last-bit differences of another summation order, and a rank-order walk would then
    /// hand a draw that falls on either of them to the other one.
    /// </summary>
    private int DrawInIdOrder(long need)
    {
        long cumulative = 0;
        if (topK > 0)
        {
            // At most K candidates: insertion-sort them by id (their rank order is no longer needed).
            for (int i = 1; i < candidateCount; i++)
            {
                ulong key = keys[i];
                long mass = masses[i];
                int j = i - 1;
                while (j >= 0 && TokenOf(keys[j]) > TokenOf(key))
                {
                    keys[j + 1] = keys[j];
                    masses[j + 1] = masses[j];
                    j--;
                }
                keys[j + 1] = key;
                masses[j + 1] = mass;
            }
            for (int i = 0; i < candidateCount; i++)
            {
                cumulative += masses[i];
                if (cumulative >= need)
                    return TokenOf(keys[i]);
            }
        }
        else
        {
            for (int id = 0; id < massById.Length; id++)
            {
                cumulative += massById[id];
                if (cumulative >= need)
                    return id;
            }
        }
        throw new InvalidOperationException($"draw {need} exceeds the kept mass {cumulative}");   // unreachable: need ≤ keptMass
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

    /// <summary>
    /// Weighs the candidates, truncates, and leaves only the survivors with nonzero (tempered) masses:
    /// top-k on, keys/masses[0..candidateCount); off, massById and bucketMass. Sets keptMass to their total.
    /// </summary>
    private void Truncate(ReadOnlySpan<float> logits, float maxLogit)
    {
        // Top-p needs the untempered masses; min-p only a logit threshold; top-k only the order.
        bool topP = Options.TopP < 1;
        double weighAt = topP ? 1.0 : temperature;
        long total = 0, passingMinP = 0;
        if (topK > 0)
        {
            SelectTopK(logits);
            int n = 0;
            for (int i = 0; i < topK; i++)
            {
                float logit = logits[TokenOf(keys[i])];
                bool passes = (double)logit - maxLogit >= minPLogit;
                long q = topP || passes ? Mass(logit, maxLogit, weighAt, zeroBelow) : 0;
                if (q == 0)
                    continue;
                keys[n] = keys[i];
                masses[n] = q;
                n++;
                total += q;
                passingMinP += passes ? q : 0;
            }
            candidateCount = n;
        }
        else
        {
            Array.Clear(bucketMass);
            for (int id = 0; id < logits.Length; id++)
            {
                bool passes = (double)logits[id] - maxLogit >= minPLogit;
                long q = topP || passes ? Mass(logits[id], maxLogit, weighAt, zeroBelow) : 0;
                massById[id] = q;
                if (q == 0)
                    continue;
                bucketMass[Bucket(q)] += q;
                total += q;
                passingMinP += passes ? q : 0;
            }
        }
        if (!topP)
        {
            keptMass = total;   // min-p already zeroed what it drops; the masses are tempered
            return;
        }

        // Min-p keeps a logit-order prefix, top-p the shortest prefix reaching its target: the shorter
        // (lighter) one is what survives both.
        long target = Math.Clamp((long)Math.Ceiling(Options.TopP * (double)total), 1, total);
        KeepPrefixAndTemper(logits, maxLogit, Math.Min(passingMinP, target));
    }

    /// <summary>
    /// Drops every candidate after the rank position where the cumulative untempered mass reaches
    /// <paramref name="need"/>, then weighs the rest at the temperature.
    /// </summary>
    private void KeepPrefixAndTemper(ReadOnlySpan<float> logits, float maxLogit, long need)
    {
        long total = 0;
        if (topK > 0)
        {
            // SelectByMass leaves the kept prefix in keys/masses[0..at].
            int at = SelectByMass(0, candidateCount, need);
            int n = 0;
            for (int i = 0; i <= at; i++)
            {
                long q = temperature == 1 ? masses[i] : Mass(LogitOf(keys[i]), maxLogit, temperature, zeroBelow);
                if (q == 0)
                    continue;
                keys[n] = keys[i];
                masses[n] = q;
                n++;
                total += q;
            }
            candidateCount = n;
        }
        else
        {
            var (last, _) = FindByMass(logits, need);
            long lastMass = massById[last];
            ulong lastKey = RankKey(logits[last], last);
            Array.Clear(bucketMass);
            for (int id = 0; id < logits.Length; id++)
            {
                long q = massById[id];
                if (q == 0)
                    continue;
                if (RanksBefore(lastMass, lastKey, q, RankKey(logits[id], id)))
                    q = 0;   // after the boundary
                else if (temperature != 1)
                    q = Mass(logits[id], maxLogit, temperature, zeroBelow);
                massById[id] = q;
                if (q == 0)
                    continue;
                bucketMass[Bucket(q)] += q;
                total += q;
            }
        }
        keptMass = total;
    }

    /// <summary>q at temperature <paramref name="t"/>; 0 without calling exp when the scaled logit is below <paramref name="floor"/>.</summary>
    private long Mass(float logit, float maxLogit, double t, double floor)
    {
        double scaled = ((double)logit - maxLogit) / t;
        return scaled < floor ? 0 : (long)Math.Round(Math.Exp(scaled) * massScale);
    }

    /// <summary>Monotone in q: the double's exponent and top mantissa bits, counted from q = 1.</summary>
    private static int Bucket(long q) =>
        (int)((BitConverter.DoubleToInt64Bits(q) >> (52 - BucketMantissaBits))
            - (BitConverter.DoubleToInt64Bits(1.0) >> (52 - BucketMantissaBits)));

    /// <summary>
    /// The first candidate in rank order at which the cumulative mass reaches <paramref name="need"/>
    /// (1 ≤ need ≤ total), and that cumulative mass.
    /// </summary>
    private (int Token, long MassThrough) FindByMass(ReadOnlySpan<float> logits, long need)
    {
        if (topK > 0)
        {
            int at = SelectByMass(0, candidateCount, need);
            return (TokenOf(keys[at]), SumMasses(0, at + 1));
        }

        // Buckets from the heaviest down: every token in a heavier bucket ranks before every token in a
        // lighter one, so only the bucket where the cumulative mass crosses `need` has to be ordered.
        long above = 0;
        int bucket = BucketCount - 1;
        while (above + bucketMass[bucket] < need)
            above += bucketMass[bucket--];

        int n = 0;
        for (int id = 0; id < logits.Length; id++)
        {
            long q = massById[id];
            if (q != 0 && Bucket(q) == bucket)
            {
                keys[n] = RankKey(logits[id], id);
                masses[n] = q;
                n++;
            }
        }
        int index = SelectByMass(0, n, need - above);
        return (TokenOf(keys[index]), above + SumMasses(0, index + 1));
    }

    private long SumMasses(int from, int to)
    {
        long sum = 0;
        for (int i = from; i < to; i++)
            sum += masses[i];
        return sum;
    }

    /// <summary>Bounded min-heap over rank keys: keys[0..K) end up holding the K best tokens (heap order).</summary>
    private void SelectTopK(ReadOnlySpan<float> logits)
    {
        int k = topK;
        for (int id = 0; id < k; id++)
        {
            keys[id] = RankKey(logits[id], id);
            SiftUp(id);
        }
        // Ids only grow, so a logit equal to the weakest kept one ranks after it: skip on <=.
        float weakest = LogitOf(keys[0]);
        for (int id = k; id < logits.Length; id++)
        {
            float x = logits[id];
            if (x <= weakest)
                continue;
            keys[0] = RankKey(x, id);
            SiftDown(k);
            weakest = LogitOf(keys[0]);
        }
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
        ulong pivotState = 0x5EEDUL; // fixed, so the work done is a function of the input alone
        while (hi - lo > SmallRange)
        {
            int p = lo + (int)(Xoshiro256StarStar.SplitMix64(ref pivotState) % (ulong)(hi - lo));
            Swap(p, hi - 1);
            long pivotMass = masses[hi - 1];
            ulong pivotKey = keys[hi - 1];
            int store = lo;
            long massAbove = 0;
            for (int i = lo; i < hi - 1; i++)
            {
                if (RanksBefore(masses[i], keys[i], pivotMass, pivotKey))
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
            while (j >= lo && RanksBefore(mass, key, masses[j], keys[j]))
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

    /// <summary>Test hook: the kept tokens (in no order) with their draw masses, and their total.</summary>
    internal ((int Token, long Mass)[] Kept, long KeptMass) KeptForTest(ReadOnlySpan<float> logits)
    {
        int argmax = ValidateAndFindMax(logits);
        Truncate(logits, logits[argmax]);
        var kept = new List<(int, long)>();
        if (topK > 0)
        {
            for (int i = 0; i < candidateCount; i++)
                kept.Add((TokenOf(keys[i]), masses[i]));
        }
        else
        {
            for (int id = 0; id < logits.Length; id++)
                if (massById[id] > 0)
                    kept.Add((id, massById[id]));
        }
        return ([.. kept], keptMass);
    }

    /// <summary>Test hook: the token a given uniform draw r ∈ [0, kept mass) selects, after <see cref="KeptForTest"/>.</summary>
    internal int DrawForTest(ReadOnlySpan<float> logits, long r) => FindByMass(logits, r + 1).Token;

    private static bool RanksBefore(long massA, ulong keyA, long massB, ulong keyB) =>
        massA > massB || (massA == massB && keyA > keyB);

    /// <summary>Orders (logit desc, id asc) as one unsigned compare: higher key = ranked first.</summary>
    internal static ulong RankKey(float logit, int id)
    {
        uint bits = BitConverter.SingleToUInt32Bits(logit == 0 ? 0f : logit); // -0 ranks like +0
        uint ordered = (bits & 0x8000_0000u) != 0 ? ~bits : bits | 0x8000_0000u;
        return ((ulong)ordered << 32) | ~(uint)id;
    }

    internal static int TokenOf(ulong key) => (int)~(uint)key;

    private static float LogitOf(ulong key)
    {
        uint ordered = (uint)(key >> 32);
        uint bits = (ordered & 0x8000_0000u) != 0 ? ordered & 0x7FFF_FFFFu : ~ordered;
        return BitConverter.UInt32BitsToSingle(bits);
    }
}
