using Pipeline.Model.TestModels;

namespace Pipeline.Host.Tests;

/// <summary>make-test-model --layers: 31B shapes at another depth, for benchmarks at matching layer counts.</summary>
public sealed class MakeTestModelLayersTests
{
    [Fact]
    public void Twelve_layers_of_31b_keep_the_five_to_one_pattern_and_scale_the_bytes()
    {
        var twelve = TestModelPreset.Gemma31B.WithLayers(12);
        Assert.Equal(12, twelve.NumLayers);
        Assert.Equal([5, 11], Enumerable.Range(0, 12).Where(twelve.IsFullAttention));
        Assert.Equal(" --layers 12", twelve.LayersOption);
        Assert.Equal("", TestModelPreset.Small.LayersOption);

        long small = TestModelPlan.Create(TestModelPreset.Small, TestModelQuant.UdQ2Kxl).TotalBytes;
        long doubled = TestModelPlan.Create(twelve, TestModelQuant.UdQ2Kxl).TotalBytes;
        var plan = TestModelPlan.Create(twelve, TestModelQuant.UdQ2Kxl);
        Assert.StartsWith("31b ud-q2kxl: 12 layers", plan.Describe().First());
        // Six more layers, but the embedding (the tied head) only once.
        Assert.True(doubled > small && doubled < 2 * small, $"{doubled} vs {small}");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(7)]
    [InlineData(-6)]
    public void Layers_that_break_the_pattern_are_one_clear_error(int layers)
    {
        var e = Assert.Throws<ArgumentException>(() => TestModelPreset.Gemma31B.WithLayers(layers));
        Assert.Contains($"--layers {layers}", e.Message);
        Assert.Contains("multiple of 6", e.Message);
    }
}
