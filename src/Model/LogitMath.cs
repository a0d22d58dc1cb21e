namespace Pipeline.Model;

/// <summary>Summaries of a logit vector: logsumexp and the top k, without sorting the vocabulary.</summary>
public static class LogitMath
{
    /// <summary>log(sum(exp(logits))): exp(x - max) in f32, summed in double.</summary>
    public static double LogSumExp(ReadOnlySpan<float> logits)
    {
        float max = float.NegativeInfinity;
        foreach (float value in logits)
            max = MathF.Max(max, value);
        double sum = 0;
        foreach (float value in logits)
            sum += MathF.Exp(value - max);
        return max + Math.Log(sum);
    }

    /// <summary>
    /// Fills <paramref name="ids"/> with the indices of the largest logits, largest first (ties: lower
    /// id first). Keeps a sorted buffer of ids.Length candidates: O(vocab) for small k.
    /// </summary>
    public static void TopK(ReadOnlySpan<float> logits, Span<int> ids)
    {
        int k = Math.Min(ids.Length, logits.Length);
        int count = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            float value = logits[i];
            if (count == k && !(value > logits[ids[k - 1]]))
                continue;
            int at = count < k ? count++ : k - 1;
            while (at > 0 && value > logits[ids[at - 1]])
            {
                ids[at] = ids[at - 1];
                at--;
            }
            ids[at] = i;
        }
    }

    /// <summary>Index of the largest logit (lowest index on ties).</summary>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++)
        {
            if (logits[i] > logits[best])
                best = i;
        }
        return best;
    }
}
