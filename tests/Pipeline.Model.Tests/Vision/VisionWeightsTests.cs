using System.Text.Json.Nodes;
using Pipeline.Kernels;
using Pipeline.Model.Checkpoint;
using Pipeline.Model.Tests.Checkpoint;
using Pipeline.Model.Vision;

namespace Pipeline.Model.Tests.Vision;

[Collection(TinyVisionCollection.Name)]
public class VisionWeightsTests(TinyVisionModels models)
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TinyTower_LoadsFromBothLayouts(bool huggingFace)
    {
        using var checkpoint = Gemma4Checkpoint.Open(huggingFace ? models.Hf : models.Mlx);
        var config = checkpoint.Vision!;
        Assert.Equal((32, 2, 64, 2, 2, 16), (config.HiddenSize, config.NumHiddenLayers, config.IntermediateSize, config.NumAttentionHeads, config.NumKeyValueHeads, config.HeadDim));
        Assert.Equal((16, 3, 1024, 100.0, true, false), (config.PatchSize, config.PoolingKernelSize, config.PositionEmbeddingSize, config.RopeTheta, config.Standardize, config.UseClippedLinears));
        Assert.Equal((258880, 255999, 258882), (config.ImageTokenId, config.BeginOfImageTokenId, config.EndOfImageTokenId));
        Assert.Equal(huggingFace, checkpoint.TryGetTensor("model.vision_tower.std_bias", out _));

        var weights = Gemma4VisionWeights.Load(checkpoint);
        AssertDense(weights.InputProjection, 32, 768);
        AssertDense(weights.PositionTable, 2048, 32);
        Assert.Equal(2, weights.Layers.Count);
        foreach (var layer in weights.Layers)
        {
            AssertDense(layer.QProj, 32, 32);
            AssertDense(layer.KProj, 32, 32);
            AssertDense(layer.VProj, 32, 32);
            AssertDense(layer.OProj, 32, 32);
            AssertDense(layer.Gate, 64, 32);
            AssertDense(layer.Up, 64, 32);
            AssertDense(layer.Down, 32, 64);
            AssertDense(layer.QNorm, 1, 16);
            AssertDense(layer.InputNorm, 1, 32);
        }
        AssertDense(weights.StdBias!, 1, 32);
        AssertDense(weights.StdScale!, 1, 32);
        AssertDense(weights.Projection, 64, 32);
    }

    [Fact]
    public void MissingLayer_IsNamed()
    {
        using var folder = CopyWithVisionConfig(models.Mlx, v => v["num_hidden_layers"] = 3);
        using var checkpoint = Gemma4Checkpoint.Open(folder.Path);
        var ex = Assert.Throws<CheckpointFormatException>(() => Gemma4VisionWeights.Load(checkpoint));
        Assert.Equal("vision_tower.encoder.layers.2.input_layernorm.weight", ex.TensorName);
        Assert.Contains("missing", ex.Message);
    }

    [Fact]
    public void WrongShape_IsNamed()
    {
        using var folder = CopyWithVisionConfig(models.Mlx, v => v["intermediate_size"] = 48);
        using var checkpoint = Gemma4Checkpoint.Open(folder.Path);
        var ex = Assert.Throws<CheckpointFormatException>(() => Gemma4VisionWeights.Load(checkpoint));
        Assert.Equal("vision_tower.encoder.layers.0.mlp.gate_proj.linear.weight", ex.TensorName);
        Assert.Contains("[64, 32] but vision_config implies [48, 32]", ex.Message);
    }

    [Fact]
    public void UnsupportedVariants_AreRefused()
    {
        using (var folder = CopyWithVisionConfig(models.Mlx, v => v["use_clipped_linears"] = true))
        using (var checkpoint = Gemma4Checkpoint.Open(folder.Path))
            Assert.Contains("use_clipped_linears", Assert.Throws<CheckpointFormatException>(() => Gemma4VisionWeights.Load(checkpoint)).Message);
        using (var folder = CopyWithVisionConfig(models.Mlx, v => v["head_dim"] = 18))
        using (var checkpoint = Gemma4Checkpoint.Open(folder.Path))
            Assert.Contains("multiple of 4", Assert.Throws<CheckpointFormatException>(() => Gemma4VisionWeights.Load(checkpoint)).Message);
    }

    [Fact]
    public void TextOnlyCheckpoint_HasNoTower()
    {
        using var checkpoint = Gemma4Checkpoint.Open(CheckpointFixtures.TinyA("ud-q2kxl"));
        Assert.Null(checkpoint.Vision);
        var ex = Assert.Throws<CheckpointFormatException>(() => Gemma4VisionWeights.Load(checkpoint));
        Assert.Contains("no vision_config", ex.Message);
    }

    private static void AssertDense(DenseWeight weight, int rows, int cols)
    {
        Assert.Equal((rows, cols, ScalarType.BF16), (weight.Rows, weight.Cols, weight.Type));
    }

    /// <summary>A copy of a generated folder with its vision_config edited.</summary>
    private static TempFolder CopyWithVisionConfig(string source, Action<JsonObject> edit)
    {
        var folder = new TempFolder();
        foreach (string file in Directory.GetFiles(source))
            File.Copy(file, folder.File(Path.GetFileName(file)));
        var config = JsonNode.Parse(File.ReadAllText(folder.File("config.json")))!.AsObject();
        edit(config["vision_config"]!.AsObject());
        File.WriteAllText(folder.File("config.json"), config.ToJsonString());
        return folder;
    }
}
