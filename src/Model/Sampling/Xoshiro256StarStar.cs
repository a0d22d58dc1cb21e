namespace Pipeline.Model.Sampling;

/// <summary>
/// xoshiro256** (Blackman and Vigna), seeded through SplitMix64. Written out here rather than using
/// System.Random(seed), whose sequence is not promised to stay the same across .NET versions: the same
/// seed must give the same tokens on every runtime.
/// </summary>
internal struct Xoshiro256StarStar
{
    private ulong s0, s1, s2, s3;

    public static Xoshiro256StarStar FromSeed(ulong seed)
    {
        // SplitMix64 spreads any seed (including 0) into a state that is never all zeros.
        var rng = default(Xoshiro256StarStar);
        rng.s0 = SplitMix64(ref seed);
        rng.s1 = SplitMix64(ref seed);
        rng.s2 = SplitMix64(ref seed);
        rng.s3 = SplitMix64(ref seed);
        return rng;
    }

    public static Xoshiro256StarStar FromState(ulong s0, ulong s1, ulong s2, ulong s3)
    {
        if ((s0 | s1 | s2 | s3) == 0)
            throw new ArgumentException("xoshiro256** state must not be all zeros.");
        return new Xoshiro256StarStar { s0 = s0, s1 = s1, s2 = s2, s3 = s3 };
    }

    public readonly (ulong S0, ulong S1, ulong S2, ulong S3) State => (s0, s1, s2, s3);

    public static ulong SplitMix64(ref ulong x)
    {
        x += 0x9E3779B97F4A7C15UL;
        ulong z = x;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public ulong Next()
    {
        ulong result = ulong.RotateLeft(s1 * 5, 7) * 9;
        ulong t = s1 << 17;
        s2 ^= s0;
        s3 ^= s1;
        s1 ^= s2;
        s0 ^= s3;
        s2 ^= t;
        s3 = ulong.RotateLeft(s3, 45);
        return result;
    }

    /// <summary>
    /// floor(u · bound) for the next output read as a fraction u in [0, 1): one output per call, no
    /// rejection, so the result moves smoothly with <paramref name="bound"/> (a bound changed by a
    /// factor 1 + e moves the result by at most e · bound + 1). Each value in [0, bound) is hit by
    /// floor(2^64 / bound) or one more of the 2^64 outputs, spread evenly, so any run of n consecutive
    /// values gets n / bound of the probability within 2^-64.
    /// </summary>
    public ulong NextScaled(ulong bound)
    {
        if (bound == 0)
            throw new ArgumentOutOfRangeException(nameof(bound), bound, "bound must be positive.");
        return Math.BigMul(Next(), bound, out _);
    }
}
