using Pipeline.Model.Sampling;

namespace Pipeline.Model.Tests.Sampling;

/// <summary>
/// The sampler's documented rule written the slow, obvious way: sort the whole vocabulary, then walk
/// it. Tests compare the fast sampler against this exactly.
/// </summary>
internal static class SamplingReference
{
    /// <summary>Kept tokens in rank order with their integer masses (the documented rule, full sort).</summary>
    public static (int Token, long Mass)[] Kept(float[] logits, SamplingOptions options)
    {
        int vocab = logits.Length;
        int[] order = RankOrder(logits);
        double max = logits[order[0]];
        int vocabBits = 0;
        while ((1L << vocabBits) < vocab)
            vocabBits++;
        double scale = Math.Pow(2, 62 - vocabBits);
        var mass = new long[vocab];
        foreach (int id in order)
            mass[id] = (long)Math.Round(Math.Exp(((double)logits[id] - max) / options.Temperature) * scale);

        int count = options.TopK > 0 ? Math.Min(options.TopK, vocab) : vocab;
        long total = 0;
        for (int i = 0; i < count; i++)
            total += mass[order[i]];

        if (options.TopP < 1)
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

        long minPMass = (long)Math.Ceiling(options.MinP * scale);
        return order.Take(count)
            .Where(id => mass[id] > 0 && mass[id] >= minPMass)
            .Select(id => (id, mass[id]))
            .ToArray();
    }

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
    /// The textbook definition in plain double probabilities (no integer masses): softmax of logits / T,
    /// top-k, renormalize, nucleus over the sorted cumulative sum, min-p against the top probability.
    /// Returns token → renormalized probability.
    /// </summary>
    public static Dictionary<int, double> Textbook(float[] logits, SamplingOptions options)
    {
        int[] order = RankOrder(logits);
        double max = logits[order[0]];
        int count = options.TopK > 0 ? Math.Min(options.TopK, logits.Length) : logits.Length;
        var weight = order.Take(count).Select(id => Math.Exp(((double)logits[id] - max) / options.Temperature)).ToArray();
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
        double keptTotal = kept.Sum(i => probability[i]);
        return kept.ToDictionary(i => order[i], i => probability[i] / keptTotal);
    }

    /// <summary>All ids by logit descending, ties by id ascending.</summary>
    public static int[] RankOrder(float[] logits)
    {
        int[] order = Enumerable.Range(0, logits.Length).ToArray();
        Array.Sort(order, (a, b) =>
        {
            int byLogit = logits[b].CompareTo(logits[a]);
            return byLogit != 0 ? byLogit : a.CompareTo(b);
        });
        return order;
    }
}
