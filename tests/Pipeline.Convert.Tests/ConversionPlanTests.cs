using System.Text.Json.Nodes;
using Pipeline.Kernels;

namespace Pipeline.Convert.Tests;

public class ConversionPlanTests
{
    private static ConversionPlan TinyPlan(string recipe = "unsloth", int bits = 2, int group = 64) =>
        ConversionPlan.Build(
            SafetensorsHeaders.Read(Path.Combine(TestPaths.TinyBf16, "model.safetensors")),
            QuantRecipe.Create(recipe, bits, group));

    [Fact]
    public void Unsloth2_OnTinyA_PlansExactlyTheFixtureTensors()
    {
        var plan = TinyPlan();
        var expected = SafetensorsHeaders.Read(Path.Combine(TestPaths.TinyQuantized, "model.safetensors"))
            .OrderBy(t => t.Name, StringComparer.Ordinal)
            .Select(t => $"{t.Name} {t.DType} [{string.Join(',', t.Shape)}]");
        var actual = plan.Outputs.Select(o => $"{o.Name} {o.DType} [{string.Join(',', o.Shape)}]");
        Assert.Equal(expected, actual);
    }

    [Fact]
    public void Unsloth2_OnTinyA_QuantizationBlockEqualsTheFixtureConfig()
    {
        var fixture = JsonNode.Parse(File.ReadAllText(Path.Combine(TestPaths.TinyQuantized, "config.json")))!;
        var block = TinyPlan().QuantizationConfig();
        Assert.True(JsonNode.DeepEquals(fixture["quantization"], block), block!.ToJsonString());
        Assert.True(JsonNode.DeepEquals(fixture["quantization_config"], block));
    }

    [Fact]
    public void Uniform_QuantizesOProjAndWritesNoOverridesAtOneWidth()
    {
        var plan = TinyPlan("uniform", 4, 64);
        var oProj = plan.Tensors.Single(t => t.Target.Full == "language_model.model.layers.0.self_attn.o_proj.weight");
        Assert.Equal(new QuantSpec(4, 64), oProj.Quant);
        var block = plan.QuantizationConfig()!;
        Assert.Equal(["group_size", "bits", "mode"], block.Select(p => p.Key));
    }

    [Fact]
    public void RowsThatDoNotSplitIntoGroups_StayDense()
    {
        var plan = ConversionPlan.Build(
            [new SourceTensor("model.language_model.layers.0.mlp.gate_proj.weight", "BF16", [128, 96])],
            QuantRecipe.Create("unsloth", 2, 64));
        Assert.Null(plan.Tensors[0].Quant);
        Assert.Equal("BF16", plan.Outputs.Single().DType);
    }

    [Fact]
    public void WithoutRecipe_NothingIsQuantizedAndTheOutputTypeApplies()
    {
        var plan = ConversionPlan.Build(
            [new SourceTensor("model.language_model.layers.0.mlp.gate_proj.weight", "BF16", [128, 64])], null, ScalarType.F32);
        var output = plan.Outputs.Single();
        Assert.Equal("language_model.model.layers.0.mlp.gate_proj.weight", output.Name);
        Assert.Equal("F32", output.DType);
        Assert.Equal([128L, 64L], output.Shape);
        Assert.Null(plan.QuantizationConfig());
    }

    [Fact]
    public void OutputType_AppliesToScalesAndBiasesToo()
    {
        var plan = ConversionPlan.Build(
            [new SourceTensor("model.language_model.layers.0.mlp.gate_proj.weight", "BF16", [128, 64])],
            QuantRecipe.Create("unsloth", 2, 64), ScalarType.F16);
        Assert.Equal(["F16", "F16", "U32"], plan.Outputs.Select(o => o.DType));
    }

    [Theory]
    [InlineData("I8")]
    [InlineData("F64")]
    [InlineData("U32")]
    public void NonFloatInput_IsRefusedNamingTheTensor(string dtype)
    {
        var e = Assert.Throws<ConvertException>(() => ConversionPlan.Build(
            [new SourceTensor("model.language_model.norm.weight", dtype, [64])], QuantRecipe.Create("unsloth", 2, 64)));
        Assert.Equal($"tensor 'model.language_model.norm.weight' has dtype {dtype}; the converter reads BF16, F16 or F32 only", e.Message);
    }

    [Fact]
    public void VisionTower_IsKeptInItsDtypeUnderItsMlxName()
    {
        var plan = ConversionPlan.Build(
            [new SourceTensor("model.vision_tower.encoder.layers.0.self_attn.q_proj.weight", "BF16", [128, 128])],
            QuantRecipe.Create("uniform", 4, 64));
        var output = plan.Outputs.Single();
        Assert.Equal("vision_tower.encoder.layers.0.self_attn.q_proj.weight", output.Name);
        Assert.Equal("BF16", output.DType);
    }

    [Fact]
    public void DryRunTable_ListsEveryTensorAndTheTotal()
    {
        var plan = TinyPlan();
        var writer = new StringWriter();
        plan.WriteTable(writer);
        var lines = writer.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(plan.Tensors.Count + 2, lines.Length);
        var embed = lines.Single(l => l.StartsWith("language_model.model.embed_tokens.weight ", StringComparison.Ordinal));
        Assert.Matches(@"262144x64\s+4\s+64\s+9437184$", embed);
        var oProj = lines.Single(l => l.StartsWith("language_model.model.layers.2.self_attn.o_proj.weight ", StringComparison.Ordinal));
        Assert.Matches(@"64x256\s+bf16\s+-\s+32768$", oProj);
        Assert.StartsWith($"total: {plan.Tensors.Count} tensors, {plan.TotalOutputBytes} bytes", lines[^1]);
        Assert.Equal(new FileInfo(Path.Combine(TestPaths.TinyQuantized, "model.safetensors")).Length - 8 - 18448, plan.TotalOutputBytes);
    }

    [Fact]
    public void Shards_SplitAtTheLimitKeepingNameOrder()
    {
        var plan = TinyPlan();
        var shards = plan.Shards(4 * 1024 * 1024);
        Assert.True(shards.Count >= 3);
        Assert.Equal(plan.Outputs, shards.SelectMany(s => s));
        foreach (var shard in shards.Where(s => s.Count > 1))
            Assert.True(shard.Sum(o => o.Bytes) <= 4 * 1024 * 1024);
        Assert.Single(plan.Shards(5L << 30));
        Assert.Equal("model.safetensors", ConversionPlan.ShardFileName(0, 1));
        Assert.Equal("model-00002-of-00003.safetensors", ConversionPlan.ShardFileName(1, 3));
    }
}

public class ConversionPlan31BTests
{
    /// <summary>
    /// The full 31B shapes, planned without writing anything: unsloth at 2 bits turns make-test-model's bf16
    /// layout into exactly the tensors of its UD-Q2_K_XL layout (an independent rendering of the seed recipe).
    /// </summary>
    [Fact]
    public void Unsloth2_On31BShapes_MatchesTheSeedLayoutAndSize()
    {
        var bf16 = Pipeline.Model.TestModels.TestModelPlan.Create(
            Pipeline.Model.TestModels.TestModelPreset.Gemma31B, Pipeline.Model.TestModels.TestModelQuant.Bf16);
        var seed = Pipeline.Model.TestModels.TestModelPlan.Create(
            Pipeline.Model.TestModels.TestModelPreset.Gemma31B, Pipeline.Model.TestModels.TestModelQuant.UdQ2Kxl);
        var plan = ConversionPlan.Build(
            bf16.Tensors.Select(t => new SourceTensor(t.Name, t.DType.ToString(), t.Shape)),
            QuantRecipe.Create("unsloth", 2, 64));

        var expected = seed.Tensors.OrderBy(t => t.Name, StringComparer.Ordinal).Select(t => $"{t.Name} {t.DType} [{string.Join(',', t.Shape)}]");
        Assert.Equal(expected, plan.Outputs.Select(o => $"{o.Name} {o.DType} [{string.Join(',', o.Shape)}]"));
        Assert.Equal(seed.TotalBytes, plan.TotalOutputBytes);
        Assert.InRange(plan.TotalOutputBytes, 17.3e9, 17.5e9);
        Assert.Equal(4, plan.Shards(5L << 30).Count);
    }
}
