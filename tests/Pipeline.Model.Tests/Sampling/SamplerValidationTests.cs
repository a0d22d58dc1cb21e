using Pipeline.Model.Sampling;

namespace Pipeline.Model.Tests.Sampling;

public class SamplerValidationTests
{
    public static TheoryData<SamplingOptions, string, string> BadOptions => new()
    {
        { new SamplingOptions { Temperature = -0.5f }, "Temperature", "-0.5" },
        { new SamplingOptions { Temperature = float.NaN }, "Temperature", "NaN" },
        { new SamplingOptions { Temperature = float.PositiveInfinity }, "Temperature", "Infinity" },
        { new SamplingOptions { TopK = -1 }, "TopK", "-1" },
        { new SamplingOptions { TopP = 0f }, "TopP", "0" },
        { new SamplingOptions { TopP = 1.5f }, "TopP", "1.5" },
        { new SamplingOptions { TopP = float.NaN }, "TopP", "NaN" },
        { new SamplingOptions { MinP = 1f }, "MinP", "1" },
        { new SamplingOptions { MinP = -0.1f }, "MinP", "-0.1" },
        { new SamplingOptions { MaxConsecutiveRepeats = 1 }, "MaxConsecutiveRepeats", "1" },
        { new SamplingOptions { MaxConsecutiveRepeats = -2 }, "MaxConsecutiveRepeats", "-2" },
        { new SamplingOptions { NgramSize = -1, NgramRepeatLimit = 2 }, "NgramSize", "-1" },
        { new SamplingOptions { NgramSize = 3, NgramRepeatLimit = -2 }, "NgramRepeatLimit", "-2" },
        { new SamplingOptions { NgramSize = 3 }, "NgramRepeatLimit", "0" },
        { new SamplingOptions { NgramRepeatLimit = 3 }, "NgramSize", "0" },
    };

    [Theory]
    [MemberData(nameof(BadOptions))]
    public void BadOptionsNameTheFieldAndValue(SamplingOptions options, string field, string value)
    {
        var ex = Assert.Throws<ArgumentException>(() => new Sampler(10, options));
        Assert.Contains(field, ex.Message);
        Assert.Contains(value, ex.Message);
    }

    [Fact]
    public void GenerationConfigValuesAreValidatedUnderTheirJsonNames()
    {
        var ex = Assert.Throws<ArgumentException>(() => SamplingOptions.FromGenerationDefaults(1f, 64, 1.5f, null));
        Assert.Contains("top_p", ex.Message);
        Assert.Contains("1.5", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => SamplingOptions.FromGenerationDefaults(-1f, null, null, null));
        Assert.Contains("temperature", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => SamplingOptions.FromGenerationDefaults(null, -3, null, null));
        Assert.Contains("top_k", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => SamplingOptions.FromGenerationDefaults(null, null, null, 1f));
        Assert.Contains("min_p", ex.Message);
    }

    [Fact]
    public void GenerationConfigMapping()
    {
        // Gemma-4's generation_config.json: temperature 1.0, top_k 64, top_p 0.95.
        Assert.Equal(new SamplingOptions { Temperature = 1, TopK = 64, TopP = 0.95f }, SamplingOptions.FromGenerationDefaults(1f, 64, 0.95f, null));
        Assert.Equal(new SamplingOptions { Temperature = 1 }, SamplingOptions.FromGenerationDefaults(null, null, null, null));
        Assert.Equal(new SamplingOptions { Temperature = 0, TopK = 0, MinP = 0.1f }, SamplingOptions.FromGenerationDefaults(0f, 0, 1f, 0.1f));
        Assert.Equal(0f, SamplingOptions.Greedy.Temperature);
    }

    [Fact]
    public void BadLogitsNameTheProblem()
    {
        var sampler = new Sampler(4, new SamplingOptions { Temperature = 1 });
        var greedy = new Sampler(4, SamplingOptions.Greedy);

        var ex = Assert.Throws<ArgumentException>(() => sampler.Sample(new float[5]));
        Assert.Contains("length 5", ex.Message);
        Assert.Contains("4", ex.Message);

        foreach (var s in new[] { sampler, greedy })
        {
            ex = Assert.Throws<ArgumentException>(() => s.Sample([0f, 1f, float.NaN, 2f]));
            Assert.Contains("logits[2]", ex.Message);
            Assert.Contains("NaN", ex.Message);
            ex = Assert.Throws<ArgumentException>(() => s.Sample([float.NaN, 1f, 0f, 2f]));
            Assert.Contains("logits[0]", ex.Message);
            ex = Assert.Throws<ArgumentException>(() => s.Sample([0f, float.PositiveInfinity, 0f, 2f]));
            Assert.Contains("logits[1]", ex.Message);
            ex = Assert.Throws<ArgumentException>(() => s.Sample([float.NegativeInfinity, float.NegativeInfinity, float.NegativeInfinity, float.NegativeInfinity]));
            Assert.Contains("-Infinity", ex.Message);
        }
    }

    [Fact]
    public void BadVocabularySizeIsRejected()
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => new Sampler(0, SamplingOptions.Greedy));
        Assert.Contains("vocabSize", ex.Message);
    }

    [Fact]
    public void TopKAtOrAboveTheVocabularyIsOff()
    {
        float[] logits = [1f, 2f, 3f];
        foreach (int k in new[] { 3, 4, 1000 })
            Assert.Equal(3, new Sampler(3, new SamplingOptions { Temperature = 1, TopK = k }).KeptForTest(logits).Kept.Length);
    }
}
