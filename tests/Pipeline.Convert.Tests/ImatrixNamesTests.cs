namespace Pipeline.Convert.Tests;

public class ImatrixNamesTests
{
    [Theory]
    [InlineData("blk.0.attn_q.weight", "language_model.model.layers.0.self_attn.q_proj")]
    [InlineData("blk.11.attn_k.weight", "language_model.model.layers.11.self_attn.k_proj")]
    [InlineData("blk.3.attn_v.weight", "language_model.model.layers.3.self_attn.v_proj")]
    [InlineData("blk.3.attn_output.weight", "language_model.model.layers.3.self_attn.o_proj")]
    [InlineData("blk.59.ffn_gate.weight", "language_model.model.layers.59.mlp.gate_proj")]
    [InlineData("blk.59.ffn_up.weight", "language_model.model.layers.59.mlp.up_proj")]
    [InlineData("blk.59.ffn_down.weight", "language_model.model.layers.59.mlp.down_proj")]
    public void LlamaNames_MapToMlxModulesAndBack(string llama, string module)
    {
        var mapped = ImatrixNames.ToModule(llama);
        Assert.NotNull(mapped);
        Assert.Equal(module, mapped.Value.Module);
        Assert.Equal(llama, ImatrixNames.ToLlamaName(mapped.Value.Layer, mapped.Value.Role));
    }

    [Theory]
    [InlineData("output.weight")]
    [InlineData("blk.0.attn_q_norm.weight")]
    [InlineData("token_embd.weight")]
    public void OtherNames_AreNotDecoderLinears(string llama) => Assert.Null(ImatrixNames.ToModule(llama));

    private static ConversionPlan Plan() => ConversionPlan.Build(
        [
            new SourceTensor("model.language_model.layers.0.self_attn.q_proj.weight", "BF16", [128, 64]),
            new SourceTensor("model.language_model.layers.0.mlp.down_proj.weight", "BF16", [64, 128]),
        ], null);

    [Fact]
    public void Importances_AreMeanSquaresPerModule_IgnoringNonLinears()
    {
        var imatrix = new ImatrixFile(
            [
                new ImatrixEntry("blk.0.attn_q.weight", [.. Enumerable.Repeat(6f, 64)], 3),
                new ImatrixEntry("output.weight", [1f, 2f], 1),
            ], [], 1, 1);
        var importances = ImatrixNames.Importances(imatrix, Plan(), "im.gguf");
        Assert.Equal(["language_model.model.layers.0.self_attn.q_proj"], importances.Keys);
        Assert.All(importances["language_model.model.layers.0.self_attn.q_proj"], v => Assert.Equal(2f, v));
    }

    [Fact]
    public void SizeMismatch_IsRefusedNamingTheEntry()
    {
        var imatrix = new ImatrixFile([new ImatrixEntry("blk.0.ffn_down.weight", new float[100], 1)], [], 1, 1);
        var e = Assert.Throws<ConvertException>(() => ImatrixNames.Importances(imatrix, Plan(), "im.gguf"));
        Assert.Equal("im.gguf: imatrix entry 'blk.0.ffn_down.weight' has 100 values but language_model.model.layers.0.mlp.down_proj takes 128 inputs (shape [64, 128])", e.Message);
    }

    [Fact]
    public void EntryForAMissingModule_IsRefusedNamingTheEntry()
    {
        var imatrix = new ImatrixFile([new ImatrixEntry("blk.7.attn_q.weight", new float[64], 1)], [], 1, 1);
        var e = Assert.Throws<ConvertException>(() => ImatrixNames.Importances(imatrix, Plan(), "im.gguf"));
        Assert.StartsWith("im.gguf: imatrix entry 'blk.7.attn_q.weight' names language_model.model.layers.7.self_attn.q_proj, which the checkpoint does not have", e.Message);
    }
}
