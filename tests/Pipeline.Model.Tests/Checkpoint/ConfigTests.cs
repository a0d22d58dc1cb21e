using System.Text.Json.Nodes;
using Pipeline.Model.Checkpoint;

namespace Pipeline.Model.Tests.Checkpoint;

public class ConfigTests
{
    private static Gemma4ModelConfig Load(JsonObject config, TempFolder temp)
    {
        File.WriteAllText(temp.File("config.json"), config.ToJsonString());
        return Gemma4ModelConfig.Load(temp.File("config.json"));
    }

    private static CheckpointFormatException LoadFails(JsonObject config, TempFolder temp) =>
        Assert.Throws<CheckpointFormatException>(() => Load(config, temp));

    [Fact]
    public void ThirtyOneBShapes_GiveThePerLayerGeometry()
    {
        using var temp = new TempFolder();
        var config = SyntheticCheckpoint.Create().Config;
        var text = config["text_config"]!.AsObject();
        text["hidden_size"] = 5376;
        text["num_hidden_layers"] = 60;
        text["intermediate_size"] = 21504;
        text["num_attention_heads"] = 32;
        text["num_key_value_heads"] = 16;
        text["head_dim"] = 256;
        text["num_global_key_value_heads"] = 4;
        text["global_head_dim"] = 512;
        text["sliding_window"] = 1024;
        text["vocab_size"] = 262144;
        text["max_position_embeddings"] = 262144;
        text.Remove("layer_types"); // Hugging Face's default pattern: full iff (i+1) % 6 == 0

        var parsed = Load(config, temp).Text;
        for (int i = 0; i < 60; i++)
        {
            bool full = (i + 1) % 6 == 0;
            Assert.Equal(full, parsed.IsFullAttention(i));
            Assert.Equal(full ? 512 : 256, parsed.HeadDim(i));
            Assert.Equal(full ? 4 : 16, parsed.KvHeads(i));
            Assert.Equal(full ? 128 : 256, parsed.RopeDims(i));
            Assert.Equal(!full, parsed.HasValueProjection(i));
            Assert.Equal(full ? 1e6 : 1e4, parsed.Rope(i).Theta);
        }
        Assert.Equal(32 * 512, parsed.QueryDim(59));
        Assert.Equal(4 * 512, parsed.KvDim(59));
        Assert.Throws<ArgumentOutOfRangeException>(() => parsed.IsFullAttention(60));
    }

    [Fact]
    public void WithoutKEqV_FullLayersKeepTheirVProjAndKvHeads()
    {
        using var temp = new TempFolder();
        var config = SyntheticCheckpoint.Create().Config;
        config["text_config"]!["attention_k_eq_v"] = false;
        var text = Load(config, temp).Text;
        Assert.True(text.HasValueProjection(1));
        Assert.Equal(2, text.KvHeads(1));
        Assert.Equal(64, text.HeadDim(1));
    }

    [Fact]
    public void VisionConfig_IsParsedWhenPresent()
    {
        using var temp = new TempFolder();
        var config = SyntheticCheckpoint.Create().Config;
        config["vision_config"] = new JsonObject
        {
            ["model_type"] = "gemma4_vision",
            ["hidden_size"] = 1152,
            ["intermediate_size"] = 4304,
            ["num_hidden_layers"] = 27,
            ["num_attention_heads"] = 16,
            ["num_key_value_heads"] = 16,
            ["head_dim"] = 72,
            ["patch_size"] = 16,
            ["pooling_kernel_size"] = 3,
            ["position_embedding_size"] = 10240,
            ["rms_norm_eps"] = 1e-6,
            ["standardize"] = true,
            ["rope_parameters"] = new JsonObject { ["rope_type"] = "default", ["rope_theta"] = 100.0 },
        };
        config["image_token_id"] = 258880;
        var vision = Load(config, temp).Vision!;
        Assert.Equal((1152, 4304, 27, 16, 72), (vision.HiddenSize, vision.IntermediateSize, vision.NumHiddenLayers, vision.NumAttentionHeads, vision.HeadDim));
        Assert.Equal((16, 3, 10240), (vision.PatchSize, vision.PoolingKernelSize, vision.PositionEmbeddingSize));
        Assert.True(vision.Standardize);
        Assert.Equal(100.0, vision.RopeTheta);
        Assert.Equal(258880, vision.ImageTokenId);
        Assert.Equal(255999, vision.BeginOfImageTokenId);
    }

    [Fact]
    public void WrongFieldType_NamesTheFieldAndValue()
    {
        using var temp = new TempFolder();
        var config = SyntheticCheckpoint.Create().Config;
        config["text_config"]!["hidden_size"] = "64";
        Assert.Equal($"{temp.File("config.json")}: field 'text_config.hidden_size' must be an integer, found \"64\"", LoadFails(config, temp).Message);
    }

    [Fact]
    public void MissingRequiredField_IsNamed()
    {
        using var temp = new TempFolder();
        var config = SyntheticCheckpoint.Create().Config;
        config["text_config"]!.AsObject().Remove("vocab_size");
        Assert.Equal($"{temp.File("config.json")}: field 'text_config.vocab_size' is missing", LoadFails(config, temp).Message);
    }

    [Fact]
    public void LayerTypesOfTheWrongLength_AreRefused()
    {
        using var temp = new TempFolder();
        var config = SyntheticCheckpoint.Create().Config;
        config["text_config"]!["layer_types"] = new JsonArray("sliding_attention");
        Assert.EndsWith("field 'text_config.layer_types' has 1 entries but num_hidden_layers = 2", LoadFails(config, temp).Message);
        config["text_config"]!["layer_types"] = new JsonArray("sliding_attention", "chunked_attention");
        Assert.EndsWith("field 'text_config.layer_types' entry 1 is \"chunked_attention\"; expected \"sliding_attention\" or \"full_attention\"", LoadFails(config, temp).Message);
    }

    [Fact]
    public void UnsupportedVariants_AreRefusedRatherThanMisloaded()
    {
        using var temp = new TempFolder();
        var config = SyntheticCheckpoint.Create().Config;
        config["text_config"]!["hidden_size_per_layer_input"] = 256;
        Assert.EndsWith("field 'text_config.hidden_size_per_layer_input' = 256 (per-layer embeddings) is not supported", LoadFails(config, temp).Message);
        config["text_config"]!["hidden_size_per_layer_input"] = 0;
        config["text_config"]!["enable_moe_block"] = true;
        Assert.EndsWith("field 'text_config.enable_moe_block' = true (mixture-of-experts) is not supported", LoadFails(config, temp).Message);
        config["text_config"]!["enable_moe_block"] = false;
        config["text_config"]!["rope_parameters"]!["full_attention"]!["rope_type"] = "yarn";
        Assert.EndsWith("field 'text_config.rope_parameters.full_attention.rope_type' 'yarn' is not supported (supported: default, proportional)", LoadFails(config, temp).Message);
        config["text_config"]!["rope_parameters"]!["full_attention"]!["rope_type"] = "proportional";
        config["text_config"]!["hidden_activation"] = "silu";
        Assert.EndsWith("field 'text_config.hidden_activation' 'silu' is not supported (supported: gelu_pytorch_tanh)", LoadFails(config, temp).Message);
    }

    [Fact]
    public void KvHeadsThatDoNotDivideHeads_AreRefused()
    {
        using var temp = new TempFolder();
        var config = SyntheticCheckpoint.Create().Config;
        config["text_config"]!["num_global_key_value_heads"] = 3;
        Assert.EndsWith("field 'text_config.num_global_key_value_heads' = 3 does not divide num_attention_heads = 4 (layer 1)", LoadFails(config, temp).Message);
    }

    [Fact]
    public void BadJson_IsRefused()
    {
        using var temp = new TempFolder();
        File.WriteAllText(temp.File("config.json"), "{\"model_type\": \"gemma4\"");
        var error = Assert.Throws<CheckpointFormatException>(() => Gemma4ModelConfig.Load(temp.File("config.json")));
        Assert.StartsWith($"{temp.File("config.json")}: not valid JSON (", error.Message);
    }

    [Fact]
    public void GenerationConfig_BadFieldIsNamed()
    {
        using var temp = new TempFolder();
        File.WriteAllText(temp.File("generation_config.json"), """{"eos_token_id": [1, 106], "top_k": "sixty-four"}""");
        var error = Assert.Throws<CheckpointFormatException>(() => GenerationConfig.Load(temp.Path, [1], 2));
        Assert.Equal($"{temp.File("generation_config.json")}: field 'top_k' must be an integer, found \"sixty-four\"", error.Message);

        File.WriteAllText(temp.File("generation_config.json"), """{"eos_token_id": [1, "x"]}""");
        error = Assert.Throws<CheckpointFormatException>(() => GenerationConfig.Load(temp.Path, [1], 2));
        Assert.Equal($"{temp.File("generation_config.json")}: field 'eos_token_id' must be a non-negative integer or a list of them, found [1, \"x\"]", error.Message);

        File.WriteAllText(temp.File("generation_config.json"), """{"top_p": 1.5}""");
        error = Assert.Throws<CheckpointFormatException>(() => GenerationConfig.Load(temp.Path, [1], 2));
        Assert.Equal($"{temp.File("generation_config.json")}: field 'top_p' must be in (0, 1], found 1.5", error.Message);
    }

    [Fact]
    public void GenerationConfig_AbsentFileFallsBackToConfigTokens()
    {
        using var temp = new TempFolder();
        var generation = GenerationConfig.Load(temp.Path, [1, 106], 2);
        Assert.Equal([1, 106], generation.EosTokenIds);
        Assert.Equal(2, generation.BosTokenId);
        Assert.Null(generation.Temperature);
        Assert.Null(generation.TopK);
    }

    [Fact]
    public void GenerationConfig_SingleEosAndMinP()
    {
        using var temp = new TempFolder();
        File.WriteAllText(temp.File("generation_config.json"), """{"eos_token_id": 106, "min_p": 0.05, "do_sample": false}""");
        var generation = GenerationConfig.Load(temp.Path, [1], null);
        Assert.Equal([106], generation.EosTokenIds);
        Assert.Equal(0.05f, generation.MinP);
        Assert.False(generation.DoSample);
        Assert.Null(generation.BosTokenId);
    }

    [Fact]
    public void Checkpoint_WithBadGenerationConfig_IsRefused()
    {
        using var temp = new TempFolder();
        var model = SyntheticCheckpoint.Create();
        model.WriteTo(temp.Path);
        File.WriteAllText(temp.File("generation_config.json"), """{"temperature": -1}""");
        var error = Assert.Throws<CheckpointFormatException>(() => Gemma4Checkpoint.Open(temp.Path));
        Assert.Equal($"{temp.File("generation_config.json")}: field 'temperature' must be >= 0, found -1", error.Message);
    }
}
