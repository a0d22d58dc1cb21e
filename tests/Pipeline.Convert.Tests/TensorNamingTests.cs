namespace Pipeline.Convert.Tests;

public class TensorNamingTests
{
    [Theory]
    [InlineData("model.language_model.layers.3.mlp.down_proj.weight", "language_model.model.layers.3.mlp.down_proj.weight")]
    [InlineData("model.language_model.embed_tokens.weight", "language_model.model.embed_tokens.weight")]
    [InlineData("model.vision_tower.encoder.layers.0.mlp.fc1.weight", "vision_tower.encoder.layers.0.mlp.fc1.weight")]
    [InlineData("model.embed_vision.embedding_projection.weight", "embed_vision.embedding_projection.weight")]
    [InlineData("lm_head.weight", "language_model.lm_head.weight")]
    [InlineData("language_model.model.norm.weight", "language_model.model.norm.weight")]
    [InlineData("vision_tower.patch_embedder.weight", "vision_tower.patch_embedder.weight")]
    public void ToMlxName_MapsHfPrefixes(string hf, string mlx) => Assert.Equal(mlx, TensorNaming.ToMlxName(hf));

    [Fact]
    public void ToMlxName_RefusesForeignTensors()
    {
        var e = Assert.Throws<ConvertException>(() => TensorNaming.ToMlxName("transformer.h.0.attn.c_attn.weight"));
        Assert.Contains("'transformer.h.0.attn.c_attn.weight'", e.Message);
    }

    [Theory]
    [InlineData("language_model.model.layers.12.self_attn.q_proj.weight", ModuleRole.QProj, 12)]
    [InlineData("language_model.model.layers.0.self_attn.v_proj.weight", ModuleRole.VProj, 0)]
    [InlineData("language_model.model.layers.5.self_attn.o_proj.weight", ModuleRole.OProj, 5)]
    [InlineData("language_model.model.layers.5.mlp.gate_proj.weight", ModuleRole.GateProj, 5)]
    [InlineData("language_model.model.layers.5.input_layernorm.weight", ModuleRole.InputNorm, 5)]
    [InlineData("language_model.model.layers.5.pre_feedforward_layernorm.weight", ModuleRole.PreFeedforwardNorm, 5)]
    [InlineData("language_model.model.layers.5.post_feedforward_layernorm.weight", ModuleRole.Other, 5)]
    [InlineData("language_model.model.layers.5.layer_scalar", ModuleRole.Other, 5)]
    public void Parse_ClassifiesLayerTensors(string name, ModuleRole role, int layer)
    {
        var parsed = TensorNaming.Parse(name);
        Assert.Equal(role, parsed.Role);
        Assert.Equal(layer, parsed.Layer);
    }

    [Fact]
    public void Parse_SplitsModuleAndParameter()
    {
        var parsed = TensorNaming.Parse("language_model.model.embed_tokens.weight");
        Assert.Equal("language_model.model.embed_tokens", parsed.Module);
        Assert.Equal("weight", parsed.Parameter);
        Assert.Equal(ModuleRole.Embedding, parsed.Role);
        Assert.Equal(ModuleRole.Tower, TensorNaming.Parse("vision_tower.encoder.weight").Role);
        Assert.Equal(ModuleRole.Other, TensorNaming.Parse("language_model.model.norm.weight").Role);
    }
}
