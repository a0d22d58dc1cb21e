using Pipeline.Model.Sampling;

namespace Pipeline.Model.Tests.Sampling;

public class RepetitionCutoffTests
{
    [Fact]
    public void ConsecutiveRepeatsStopAtTheNthIdenticalToken()
    {
        var sampler = new Sampler(10, new SamplingOptions { MaxConsecutiveRepeats = 3 });
        Assert.Equal(
            [SamplerStop.None, SamplerStop.None, SamplerStop.None, SamplerStop.None, SamplerStop.RepeatedToken, SamplerStop.RepeatedToken, SamplerStop.None],
            new[] { 5, 5, 7, 7, 7, 7, 5 }.Select(sampler.Observe));
    }

    [Fact]
    public void NgramBlockRepeatedMoreThanTheLimitStops()
    {
        // Limit 2: "1 2 3" may occur twice in a row; the ninth token completes a third occurrence.
        var sampler = new Sampler(10, new SamplingOptions { NgramSize = 3, NgramRepeatLimit = 2 });
        var stops = new[] { 1, 2, 3, 1, 2, 3, 1, 2, 3 }.Select(sampler.Observe).ToArray();
        Assert.Equal(Enumerable.Repeat(SamplerStop.None, 8).Append(SamplerStop.RepeatedNgram), stops);
    }

    [Fact]
    public void ShorterLoopsAreCaughtLongerOnesAreNot()
    {
        var options = new SamplingOptions { NgramSize = 3, NgramRepeatLimit = 2 };
        var pairs = new Sampler(10, options);
        Assert.Equal(SamplerStop.RepeatedNgram, new[] { 4, 8, 4, 8, 4, 8 }.Select(pairs.Observe).ToArray()[^1]);

        var fours = new Sampler(10, options);
        Assert.All(Enumerable.Repeat(new[] { 1, 2, 3, 4 }, 10).SelectMany(t => t).Select(fours.Observe), s => Assert.Equal(SamplerStop.None, s));
    }

    [Fact]
    public void AnInterruptionRestartsTheCount()
    {
        var sampler = new Sampler(10, new SamplingOptions { NgramSize = 2, NgramRepeatLimit = 2 });
        var stops = new[] { 1, 2, 1, 2, 9, 1, 2, 1, 2, 1, 2 }.Select(sampler.Observe).ToArray();
        Assert.Equal(SamplerStop.None, stops[..10].Distinct().Single());
        Assert.Equal(SamplerStop.RepeatedNgram, stops[10]);
    }

    [Fact]
    public void TokenRuleIsReportedBeforeTheNgramRule()
    {
        var sampler = new Sampler(10, new SamplingOptions { MaxConsecutiveRepeats = 3, NgramSize = 1, NgramRepeatLimit = 2 });
        Assert.Equal([SamplerStop.None, SamplerStop.None, SamplerStop.RepeatedToken], new[] { 3, 3, 3 }.Select(sampler.Observe));
    }

    [Theory]
    [InlineData(0, 1, 1, 2)]
    [InlineData(2, 2, 2, 3)]
    [InlineData(4, 3, 3, 3)]
    [InlineData(3, 5, 1, 2)]
    [InlineData(0, 6, 3, 4)]
    public void MatchesABruteForceDefinitionOnRandomStreams(int maxConsecutive, int ngramSize, int limit, int alphabet)
    {
        var options = new SamplingOptions { MaxConsecutiveRepeats = maxConsecutive, NgramSize = ngramSize, NgramRepeatLimit = limit };
        var sampler = new Sampler(alphabet, options);
        var random = new Random(ngramSize * 100 + limit);
        var history = new List<int>();
        for (int step = 0; step < 5000; step++)
        {
            // Mostly continue a recent loop, so repetitions of every length actually happen.
            int token = random.Next(4) != 0 && history.Count > ngramSize ? history[^(1 + random.Next(ngramSize))] : random.Next(alphabet);
            history.Add(token);
            Assert.Equal(BruteForce(history, options), sampler.Observe(token));
            if (step == 2500)
            {
                sampler.Reset();
                history.Clear();
            }
        }
    }

    [Fact]
    public void ObserveRejectsTokensOutsideTheVocabulary()
    {
        var sampler = new Sampler(10, SamplingOptions.Greedy);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => sampler.Observe(10));
        Assert.Contains("token", ex.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => sampler.Observe(-1));
    }

    private static SamplerStop BruteForce(List<int> history, SamplingOptions options)
    {
        int n = history.Count;
        int m = options.MaxConsecutiveRepeats;
        if (m > 0 && n >= m && history.Skip(n - m).Distinct().Count() == 1)
            return SamplerStop.RepeatedToken;
        for (int p = 1; p <= options.NgramSize; p++)
        {
            int span = p * (options.NgramRepeatLimit + 1);
            if (n < span)
                continue;
            var block = history.GetRange(n - p, p);
            bool repeated = true;
            for (int copy = 0; copy <= options.NgramRepeatLimit && repeated; copy++)
                repeated = history.GetRange(n - span + copy * p, p).SequenceEqual(block);
            if (repeated)
                return SamplerStop.RepeatedNgram;
        }
        return SamplerStop.None;
    }
}
