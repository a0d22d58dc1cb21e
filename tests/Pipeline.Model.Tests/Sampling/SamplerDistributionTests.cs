using Pipeline.Model.Sampling;

namespace Pipeline.Model.Tests.Sampling;

/// <summary>
/// Sampled frequencies against the textbook softmax (double precision, no integer masses). Seeds are
/// fixed, so each test is deterministic; the threshold is the chi-square 0.999 quantile, i.e. a correct
/// sampler would fail one in a thousand such seeds, while a wrong temperature, a biased draw or an
/// off-by-one truncation is off by thousands.
/// </summary>
public class SamplerDistributionTests
{
    private const int Draws = 60_000;

    private static readonly float[] Logits = [2.1f, -0.4f, 1.3f, 0.9f, -2.2f, 1.3f, 0.2f, -1.1f, 2.6f, 0.5f, -0.1f, 1.7f];

    public static TheoryData<float, int, float, float, ulong> Cases => new()
    {
        { 1f, 0, 1f, 0f, 1 },          // plain softmax
        { 0.6f, 0, 1f, 0f, 2 },        // sharper
        { 2.5f, 0, 1f, 0f, 3 },        // flatter
        { 1f, 5, 1f, 0f, 4 },          // top-k alone (keeps 8, 0, 11, 2, 5: the 1.3 tie keeps both)
        { 1f, 4, 1f, 0f, 5 },          // top-k cutting through the 1.3 tie: id 2 stays, id 5 goes
        { 1f, 0, 0.8f, 0f, 6 },        // top-p alone
        { 0.8f, 0, 1f, 0.2f, 7 },      // min-p alone
        { 1.2f, 6, 0.9f, 0.1f, 8 },    // all three, Gemma-style
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void FrequenciesMatchTheTruncatedSoftmax(float temperature, int topK, float topP, float minP, ulong seed)
    {
        var options = new SamplingOptions { Temperature = temperature, TopK = topK, TopP = topP, MinP = minP, Seed = seed };
        var expected = SamplingReference.Textbook(Logits, options);
        var sampler = new Sampler(Logits.Length, options);

        var counts = new int[Logits.Length];
        for (int i = 0; i < Draws; i++)
            counts[sampler.Sample(Logits)]++;

        for (int token = 0; token < counts.Length; token++)
            Assert.True(counts[token] == 0 || expected.ContainsKey(token), $"token {token} was truncated but drawn {counts[token]} times");

        double chiSquare = expected.Sum(e => Square(counts[e.Key] - Draws * e.Value) / (Draws * e.Value));
        int degreesOfFreedom = expected.Count - 1;
        if (degreesOfFreedom == 0)
        {
            Assert.Equal(Draws, counts[expected.Keys.Single()]);
            return;
        }
        double critical = ChiSquareQuantile999(degreesOfFreedom);
        Assert.True(chiSquare < critical, $"chi-square {chiSquare:F2} >= {critical:F2} (df {degreesOfFreedom}); counts {string.Join(",", counts)}");
    }

    [Fact]
    public void AWrongDistributionFailsTheSameCheck()
    {
        // The check has teeth: frequencies drawn at temperature 1.1 are rejected against the softmax at 1.0.
        var sampler = new Sampler(Logits.Length, new SamplingOptions { Temperature = 1.1f, Seed = 9 });
        var truth = SamplingReference.Textbook(Logits, new SamplingOptions { Temperature = 1f });
        var counts = new int[Logits.Length];
        for (int i = 0; i < Draws; i++)
            counts[sampler.Sample(Logits)]++;
        double chiSquare = truth.Sum(e => Square(counts[e.Key] - Draws * e.Value) / (Draws * e.Value));
        Assert.True(chiSquare > ChiSquareQuantile999(truth.Count - 1));
    }

    [Fact]
    public void ExpectedTruncationsOfTheFixedLogits()
    {
        // Pins what the theory cases above exercise, so they cannot silently degrade to "keep everything".
        Assert.Equal([0, 2, 5, 8, 11], SamplingReference.Textbook(Logits, new SamplingOptions { Temperature = 1, TopK = 5 }).Keys.Order());
        Assert.Equal([0, 2, 8, 11], SamplingReference.Textbook(Logits, new SamplingOptions { Temperature = 1, TopK = 4 }).Keys.Order());
        Assert.InRange(SamplingReference.Textbook(Logits, new SamplingOptions { Temperature = 1, TopP = 0.8f }).Count, 3, 8);
        Assert.InRange(SamplingReference.Textbook(Logits, new SamplingOptions { Temperature = 0.8f, MinP = 0.2f }).Count, 3, 8);
    }

    /// <summary>Chi-square 0.999 quantiles for 1..11 degrees of freedom (standard tables).</summary>
    private static double ChiSquareQuantile999(int df) =>
        new[] { 10.828, 13.816, 16.266, 18.467, 20.515, 22.458, 24.322, 26.124, 27.877, 29.588, 31.264 }[df - 1];

    private static double Square(double x) => x * x;
}
