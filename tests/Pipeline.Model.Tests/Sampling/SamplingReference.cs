using System.Numerics;
using Pipeline.Model.Sampling;

namespace Pipeline.Model.Tests.Sampling;

/// <summary>
/// The sampler's documented rule written the slow, obvious way: sort the whole vocabulary, then walk
/// it. Tests compare the fast sampler against this exactly.
/// </summary>
internal static class SamplingReference
{
    /// <summary>Kept tokens in draw order with their integer draw masses (the documented rule, full sort).</summary>
    public static (int Token, long Mass)[] Kept(float[] logits, SamplingOptions options)
    {
        int vocab = logits.Length;
        int[] order = RankOrder(logits);
        double max = logits[order[0]];
        int vocabBits = 0;
        while ((1L << vocabBits) < vocab)
            vocabBits++;
        double scale = Math.Pow(2, 62 - vocabBits);
        long MassAt(int id, double t) => (long)Math.Round(Math.Exp(((double)logits[id] - max) / t) * scale);

        // Top-p sees untempered masses; min-p a logit threshold; without top-p the masses are taken
        // at the temperature directly (no stage before the draw looks at them).
        bool topP = options.TopP < 1;
        double minPLogit = options.MinP > 0 ? Math.Log(options.MinP) : double.NegativeInfinity;
        bool PassesMinP(int id) => (double)logits[id] - max >= minPLogit;
        var mass = new long[vocab];
        foreach (int id in order)
            mass[id] = topP || PassesMinP(id) ? MassAt(id, topP ? 1.0 : options.Temperature) : 0;

        // Top-k by logit; everything after it ranks by mass, then logit, then id (the same order
        // whenever exp is monotone, and the sampler's documented tie-break when it is not).
        int count = options.TopK > 0 ? Math.Min(options.TopK, vocab) : vocab;
        order = ByMass(order[..count], mass);
        long total = 0;
        for (int i = 0; i < count; i++)
            total += mass[order[i]];

        if (topP)
        {
            long target = Math.Clamp((long)Math.Ceiling(options.TopP * (double)total), 1, total);
            long cumulative = 0;
            for (int i = 0; i < count; i++)
            {
                cumulative += mass[order[i]];
                if (cumulative >= target)
                {
                    count = i + 1;
                    break;
                }
            }
        }

        int[] kept = order.Take(count).Where(id => mass[id] > 0 && PassesMinP(id)).ToArray();
        if (topP)
        {
            foreach (int id in kept)
                mass[id] = MassAt(id, options.Temperature);
            kept = ByMass(kept, mass).Where(id => mass[id] > 0).ToArray();
        }
        return kept.Select(id => (id, mass[id])).ToArray();
    }

    /// <summary><paramref name="rankOrdered"/> stably re-sorted by mass, highest first.</summary>
    private static int[] ByMass(int[] rankOrdered, long[] mass) =>
        SortDescendingStable(rankOrdered.Select(id => mass[id]).ToArray()).Select(position => rankOrdered[position]).ToArray();

    /// <summary>The token a uniform r ∈ [0, kept mass) picks: first in rank order whose cumulative mass exceeds r.</summary>
    public static int Draw((int Token, long Mass)[] keptInRankOrder, long r)
    {
        long cumulative = 0;
        foreach (var (token, mass) in keptInRankOrder)
        {
            cumulative += mass;
            if (r < cumulative)
                return token;
        }
        throw new ArgumentOutOfRangeException(nameof(r));
    }

    /// <summary>
    /// The textbook definition in plain double probabilities (no integer masses): softmax of the logits,
    /// top-k, renormalize, nucleus over the sorted cumulative sum, min-p against the top probability;
    /// then the survivors' logits / T renormalized. Returns token → probability of being drawn.
    /// </summary>
    public static Dictionary<int, double> Textbook(float[] logits, SamplingOptions options)
    {
        int[] order = RankOrder(logits);
        double max = logits[order[0]];
        int count = options.TopK > 0 ? Math.Min(options.TopK, logits.Length) : logits.Length;
        var weight = order.Take(count).Select(id => Math.Exp((double)logits[id] - max)).ToArray();
        double total = weight.Sum();
        var probability = weight.Select(w => w / total).ToArray();

        int keep = count;
        if (options.TopP < 1)
        {
            double cumulative = 0;
            for (int i = 0; i < count; i++)
            {
                cumulative += probability[i];
                if (cumulative >= options.TopP)
                {
                    keep = i + 1;
                    break;
                }
            }
        }

        var kept = Enumerable.Range(0, keep).Where(i => probability[i] >= options.MinP * probability[0]).ToArray();
        var tempered = kept.ToDictionary(i => order[i], i => Math.Exp(((double)logits[order[i]] - max) / options.Temperature));
        double keptTotal = tempered.Values.Sum();
        return tempered.ToDictionary(pair => pair.Key, pair => pair.Value / keptTotal);
    }

    /// <summary>All ids by logit descending, ties by id ascending.</summary>
    public static int[] RankOrder(float[] logits)
    {
        return SortDescendingStable(logits);
    }

    /// <summary>Indices of <paramref name="values"/> from largest to smallest value; equal values (-0 = +0) by index.</summary>
    private static int[] SortDescendingStable<T>(T[] values) where T : INumber<T>
    {
        T[] negated = values.Select(v => T.IsZero(v) ? T.Zero : -v).ToArray();
        int[] index = Enumerable.Range(0, values.Length).ToArray();
        Array.Sort(negated, index);
        for (int start = 0; start < index.Length;)
        {
            int end = start + 1;
            while (end < index.Length && negated[end] == negated[start])
                end++;
            Array.Sort(index, start, end - start);
            start = end;
        }
        return index;
    }
}
