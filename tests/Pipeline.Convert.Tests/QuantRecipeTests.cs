namespace Pipeline.Convert.Tests;

public class QuantRecipeTests
{
    [Theory]
    [InlineData(1, 2)]
    [InlineData(2, 2)]
    [InlineData(3, 3)]
    [InlineData(4, 4)]
    [InlineData(5, 5)]
    [InlineData(6, 6)]
    [InlineData(7, 8)]
    [InlineData(8, 8)]
    [InlineData(10, 8)]
    public void SnapBits_PicksAWidthMlxPacks(int bits, int expected) =>
        Assert.Equal(expected, QuantRecipe.SnapBits(bits));

    [Fact]
    public void Unsloth_AtTwoBits_IsTheSeedTable()
    {
        var recipe = QuantRecipe.Create("unsloth", 2, 64);
        Assert.Equal(4, recipe.BitsFor(ModuleRole.Embedding));
        Assert.Equal(4, recipe.BitsFor(ModuleRole.QProj));
        Assert.Equal(4, recipe.BitsFor(ModuleRole.KProj));
        Assert.Equal(4, recipe.BitsFor(ModuleRole.VProj));
        Assert.Equal(2, recipe.BitsFor(ModuleRole.GateProj));
        Assert.Equal(2, recipe.BitsFor(ModuleRole.UpProj));
        Assert.Equal(3, recipe.BitsFor(ModuleRole.DownProj));
        Assert.Null(recipe.BitsFor(ModuleRole.OProj));
        Assert.Null(recipe.BitsFor(ModuleRole.InputNorm));
        Assert.Null(recipe.BitsFor(ModuleRole.Other));
        Assert.Null(recipe.BitsFor(ModuleRole.Tower));
    }

    [Fact]
    public void Unsloth_AtFiveBits_SnapsSevenToEight()
    {
        var recipe = QuantRecipe.Create("unsloth", 5, 64);
        Assert.Equal(8, recipe.BitsFor(ModuleRole.QProj)); // 5+2 = 7 -> 8
        Assert.Equal(6, recipe.BitsFor(ModuleRole.DownProj));
        Assert.Equal(5, recipe.BitsFor(ModuleRole.UpProj));
    }

    [Fact]
    public void Uniform_QuantizesEveryLinearAtBaseBits()
    {
        var recipe = QuantRecipe.Create("uniform", 3, 32);
        foreach (var role in new[] { ModuleRole.Embedding, ModuleRole.QProj, ModuleRole.OProj, ModuleRole.GateProj, ModuleRole.DownProj })
            Assert.Equal(3, recipe.BitsFor(role));
        Assert.Null(recipe.BitsFor(ModuleRole.PreFeedforwardNorm));
        Assert.Equal(8, QuantRecipe.Create("uniform", 7, 64).BitsFor(ModuleRole.UpProj));
    }

    [Fact]
    public void UnknownRecipe_IsRefusedByName()
    {
        var e = Assert.Throws<ConvertException>(() => QuantRecipe.Create("gptq", 2, 64));
        Assert.Contains("unknown quantization recipe 'gptq'", e.Message);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(9)]
    [InlineData(0)]
    public void BitsOutsideTwoToEight_AreRefused(int bits)
    {
        var e = Assert.Throws<ConvertException>(() => QuantRecipe.Create("unsloth", bits, 64));
        Assert.Equal($"--q-bits {bits} is outside 2..8", e.Message);
    }

    [Fact]
    public void UnsupportedGroupSize_IsRefused()
    {
        var e = Assert.Throws<ConvertException>(() => QuantRecipe.Create("unsloth", 2, 48));
        Assert.StartsWith("--q-group-size 48 is not supported", e.Message);
    }
}
