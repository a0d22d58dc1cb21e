namespace Pipeline.Model.Tests.Sampling;

/// <summary>Random logits of the shapes that stress a sampler: ties, -Infinity, ±0, sorted runs, flat, softcapped.</summary>
internal static class LogitGenerators
{
    public static readonly string[] Kinds = ["gaussian", "wide", "ties", "masked", "zeros", "ascending", "flat", "softcapped"];

    public static float[] Make(string kind, int vocab, int seed)
    {
        var random = new Random(seed);
        var logits = new float[vocab];
        for (int i = 0; i < vocab; i++)
        {
            double g = Gaussian(random);
            logits[i] = kind switch
            {
                "gaussian" => (float)g,
                "wide" => (float)(6 * g),
                "ties" => MathF.Round((float)g * 2) / 2,                       // a handful of levels, many equal logits
                "masked" => random.NextDouble() < 0.3 ? float.NegativeInfinity : (float)(3 * g),
                "zeros" => random.Next(3) switch { 0 => 0f, 1 => -0f, _ => (float)g },
                "ascending" => i * 0.001f,                                   // worst order for naive pivots
                "flat" => 1.5f,
                "softcapped" => (float)(30 * Math.Tanh(8 * g / 30)),          // the shape Gemma's final softcap gives
                _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
            };
        }
        if (kind == "masked")
            logits[random.Next(vocab)] = 0.5f;                                // at least one finite logit
        return logits;
    }

    public static double Gaussian(Random random)
    {
        double u1 = 1 - random.NextDouble();
        double u2 = random.NextDouble();
        return Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }
}
