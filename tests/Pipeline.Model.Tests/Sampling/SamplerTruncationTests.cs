using Pipeline.Model.Sampling;

namespace Pipeline.Model.Tests.Sampling;

public class SamplerTruncationTests
{
    private static readonly SamplingOptions[] SmallVocabOptions = BuildOptionGrid();

    private static SamplingOptions[] BuildOptionGrid()
    {
        var grid = new List<SamplingOptions>();
        foreach (float temperature in new[] { 0.3f, 1f, 2.5f })
            foreach (int topK in new[] { 0, 1, 5, 64 })
                foreach (float topP in new[] { 1f, 0.95f, 0.5f, 0.01f })
                    foreach (float minP in new[] { 0f, 1e-20f, 0.05f, 0.5f })
                        grid.Add(new SamplingOptions { Temperature = temperature, TopK = topK, TopP = topP, MinP = minP });
        return [.. grid];
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(7)]
    [InlineData(17)]
    [InlineData(100)]
    [InlineData(1000)]
    public void KeptSetAndMassesEqualTheFullSortReference(int vocab)
    {
        int seed = vocab;
        foreach (string kind in LogitGenerators.Kinds)
        {
            float[] logits = LogitGenerators.Make(kind, vocab, seed++);
            foreach (var options in SmallVocabOptions)
                AssertMatchesReference(logits, options, $"{kind} V={vocab} {options}");
        }
    }

    public static TheoryData<string, int, float, float, float> LargeVocabCases => new()
    {
        { "softcapped", 64, 0.95f, 0f, 1f },      // Gemma's generation_config
        { "softcapped", 0, 0.95f, 0f, 1f },       // top-p over the whole vocabulary
        { "softcapped", 0, 1f, 0.05f, 0.7f },     // min-p alone
        { "softcapped", 0, 1f, 0f, 1f },          // plain temperature
        { "ties", 0, 0.5f, 0f, 1f },
        { "ties", 100_000, 0.9f, 0.01f, 1.3f },   // a large top-k through the heap
        { "masked", 40, 0.8f, 0.1f, 0.5f },
        { "ascending", 0, 0.99f, 0f, 0.01f },
        { "flat", 0, 0.3f, 0f, 1f },              // nucleus of ~78,643 equal tokens: lowest ids win
        { "wide", 262_143, 0.999f, 0f, 1f },
    };

    [Theory]
    [MemberData(nameof(LargeVocabCases))]
    public void KeptSetAndMassesEqualTheFullSortReferenceAtGemmaVocab(string kind, int topK, float topP, float minP, float temperature)
    {
        const int Vocab = 262_144;
        float[] logits = LogitGenerators.Make(kind, Vocab, topK + (int)(topP * 1000));
        var options = new SamplingOptions { Temperature = temperature, TopK = topK, TopP = topP, MinP = minP };
        AssertMatchesReference(logits, options, $"{kind} V={Vocab} {options}");
    }

    [Fact]
    public void IntegerMassesAgreeWithTheTextbookDoubleDefinition()
    {
        // Quantizing to integer masses must not change what is kept (away from exact boundary
        // coincidences, which continuous random logits do not hit) nor the probabilities beyond 1e-12.
        int seed = 7;
        foreach (int vocab in new[] { 5, 50, 2000 })
        {
            foreach (string kind in new[] { "gaussian", "wide", "softcapped", "masked" })
            {
                float[] logits = LogitGenerators.Make(kind, vocab, seed++);
                foreach (var options in SmallVocabOptions)
                {
                    var textbook = SamplingReference.Textbook(logits, options);
                    var kept = new Sampler(vocab, options).KeptForTest(logits).Kept;
                    double keptMass = kept.Sum(k => (double)k.Mass);
                    string context = $"{kind} V={vocab} {options}";
                    foreach (var (token, mass) in kept)
                    {
                        Assert.True(textbook.TryGetValue(token, out double p), $"{context}: token {token} kept only by the sampler");
                        Assert.True(Math.Abs(mass / keptMass - p) <= 1e-12, $"{context}: token {token} p {mass / keptMass} vs {p}");
                    }
                    var keptTokens = kept.Select(k => k.Token).ToHashSet();
                    foreach (var (token, p) in textbook)
                        Assert.True(p < 1e-13 || keptTokens.Contains(token), $"{context}: token {token} (p {p}) dropped by the sampler");
                }
            }
        }
    }

    [Fact]
    public void TopPKeepsAtLeastTheTopToken()
    {
        float[] logits = [0f, 10f, 0f, 9.999f];
        var sampler = new Sampler(4, new SamplingOptions { Temperature = 1, TopP = 1e-6f });
        var (kept, keptMass) = sampler.KeptForTest(logits);
        Assert.Equal([(1, keptMass)], kept);
    }

    [Fact]
    public void TopKBreaksTiesTowardTheLowestIds()
    {
        float[] logits = [1f, 3f, 2f, 3f, 3f, 2f];
        var kept = new Sampler(6, new SamplingOptions { Temperature = 1, TopK = 2 }).KeptForTest(logits).Kept;
        Assert.Equal([1, 3], kept.Select(k => k.Token).Order());
    }

    [Fact]
    public void MinPAndTopPTruncateTheUntemperedDistributionAndTemperatureWeighsWhatIsLeft()
    {
        // Min-p: p_i / p_max = exp(l_i - l_max) whatever T: exp(-1) = 0.37 passes min_p 0.3, exp(-2) = 0.14 fails.
        // (Temperature first would keep all three at T = 2: ratios 0.61 and 0.37.)
        float[] logits = [5f, 4f, 3f];
        foreach (float t in new[] { 0.5f, 1f, 2f })
        {
            var (kept, keptMass) = new Sampler(3, new SamplingOptions { Temperature = t, MinP = 0.3f }).KeptForTest(logits);
            Assert.Equal([0, 1], kept.Select(k => k.Token).Order());
            var byToken = kept.ToDictionary(k => k.Token, k => (double)k.Mass);
            Assert.Equal(Math.Exp(-1.0 / t), byToken[1] / byToken[0], 12);   // drawn with the tempered weights
            Assert.Equal(keptMass, kept.Sum(k => k.Mass));
        }

        // Top-p 0.8 over softmax([2, 1, 0]) = (0.665, 0.245, 0.090) keeps two tokens at any T.
        // (Temperature first at T = 0.25 gives (0.982, 0.018, 0.0003) and would keep one.)
        float[] nucleus = [2f, 1f, 0f];
        foreach (float t in new[] { 0.25f, 1f, 3f })
        {
            var kept = new Sampler(3, new SamplingOptions { Temperature = t, TopP = 0.8f, TopK = t == 3f ? 2 : 0 }).KeptForTest(nucleus).Kept;
            Assert.Equal([0, 1], kept.Select(k => k.Token).Order());
            var byToken = kept.ToDictionary(k => k.Token, k => (double)k.Mass);
            Assert.Equal(Math.Exp(-1.0 / t), byToken[1] / byToken[0], 12);
        }
    }

    [Fact]
    public void GreedyIsArgmaxWithTiesToTheLowestId()
    {
        var sampler = new Sampler(6, SamplingOptions.Greedy);
        Assert.Equal(2, sampler.Sample([1f, 2f, 7f, float.NegativeInfinity, 7f, -3f]));
        Assert.Equal(0, sampler.Sample([0f, -0f, 0f, -1f, -2f, -3f]));
        Assert.Equal(5, sampler.Sample([float.NegativeInfinity, float.NegativeInfinity, -9f, -9.5f, -10f, -1f]));

        var random = new Random(3);
        var big = new float[262_144];
        for (int round = 0; round < 3; round++)
        {
            for (int i = 0; i < big.Length; i++)
                big[i] = (float)LogitGenerators.Gaussian(random);
            int expected = SamplingReference.RankOrder(big)[0];
            Assert.Equal(expected, new Sampler(big.Length, SamplingOptions.Greedy).Sample(big));
        }
    }

    [Fact]
    public void RankKeyOrdersLikeLogitThenId()
    {
        var random = new Random(11);
        float[] values = [float.NegativeInfinity, -1e30f, -2.5f, -1f, -float.Epsilon, -0f, 0f, float.Epsilon, 0.5f, 1f, 3e38f];
        for (int trial = 0; trial < 20_000; trial++)
        {
            float a = values[random.Next(values.Length)];
            float b = trial % 2 == 0 ? values[random.Next(values.Length)] : (float)LogitGenerators.Gaussian(random);
            int ia = random.Next(262_144), ib = random.Next(262_144);
            int expected = a != b ? b.CompareTo(a) : ia.CompareTo(ib);   // < 0 when (a, ia) ranks first
            int actual = Sampler.RankKey(b, ib).CompareTo(Sampler.RankKey(a, ia));
            Assert.Equal(Math.Sign(expected), Math.Sign(actual));
            Assert.Equal(ia, Sampler.TokenOf(Sampler.RankKey(a, ia)));
        }
    }

    private static void AssertMatchesReference(float[] logits, SamplingOptions options, string context)
    {
        var expected = SamplingReference.Kept(logits, options);
        var sampler = new Sampler(logits.Length, options);
        var (actual, actualMass) = sampler.KeptForTest(logits);

        Assert.True(expected.Length == actual.Length, $"{context}: kept {actual.Length} tokens, reference kept {expected.Length}");
        Assert.Equal(expected.OrderBy(k => k.Token), actual.OrderBy(k => k.Token));
        long expectedMass = expected.Sum(k => k.Mass);
        Assert.Equal(expectedMass, actualMass);

        // The draw: every r picks the same token as walking the sorted reference. Probe both ends,
        // every boundary of the first few tokens, and random points.
        var probes = new List<long> { 0, expectedMass - 1 };
        long cumulative = 0;
        foreach (var (_, mass) in expected.Take(8))
        {
            cumulative += mass;
            probes.Add(cumulative - 1);
            if (cumulative < expectedMass)
                probes.Add(cumulative);
        }
        var random = new Random(expected.Length);
        for (int i = 0; i < 8; i++)
            probes.Add(random.NextInt64(expectedMass));
        foreach (long r in probes)
            Assert.True(SamplingReference.Draw(expected, r) == sampler.DrawForTest(logits, r), $"{context}: draw r={r}");
    }
}
