using System.Text.Json.Nodes;

namespace Pipeline.Host.Benchmarks;

/// <summary>What `pipeline bench` runs. Threads is the resolved count (never 0).</summary>
public sealed record BenchSettings(
    string ModelDirectory,
    int Threads,
    int PromptTokens,
    int DecodeTokens,
    int Repeats,
    bool MeasureBandwidth,
    int Sessions)
{
    /// <summary>
    /// The fixed prompt of llama.cpp's run.mjs: id i = 1000 + (i * 7919) mod (V - 2000), spread over
    /// the vocabulary and away from the special tokens at its start.
    /// </summary>
    public static int[] PromptIds(int count, int vocabSize)
    {
        var ids = new int[count];
        for (int i = 0; i < count; i++)
            ids[i] = vocabSize > 3000 ? 1000 + (int)((long)i * 7919 % (vocabSize - 2000)) : i % vocabSize;
        return ids;
    }

    /// <summary>Context the runs need: P + D + 1 rounded up to 256, as run.mjs sizes llama.cpp's.</summary>
    public int ContextSize => (PromptTokens + DecodeTokens + 1 + 255) / 256 * 256;
}

/// <summary>Median, min and max of a few runs (the median of an even count is the mean of the middle two, as run.mjs).</summary>
public readonly record struct Stat(double Median, double Min, double Max)
{
    public static Stat Of(IEnumerable<double> values)
    {
        double[] v = [.. values.Order()];
        if (v.Length == 0)
            return default;
        return new Stat((v[(v.Length - 1) / 2] + v[v.Length / 2]) / 2, v[0], v[^1]);
    }

    public JsonObject ToJson() => new() { ["median"] = Median, ["min"] = Min, ["max"] = Max };
}
