using System.Text.Json.Nodes;
using Pipeline.Kernels;
using Pipeline.Model.Checkpoint;

namespace Pipeline.Model.Tests.Checkpoint;

public class CheckpointValidationTests
{
    private const string P = "language_model.model.";

    private static CheckpointFormatException OpenFails(SyntheticCheckpoint model, TempFolder temp)
    {
        model.WriteTo(temp.Path);
        return Assert.Throws<CheckpointFormatException>(() => Gemma4Checkpoint.Open(temp.Path).Dispose());
    }

    [Fact]
    public void SyntheticModel_LoadsInBothLayouts()
    {
        foreach (bool quantized in new[] { true, false })
        {
            using var temp = new TempFolder();
            var model = SyntheticCheckpoint.Create(quantized);
            model.WriteTo(temp.Path);
            using var checkpoint = Gemma4Checkpoint.Open(temp.Path);
            Assert.Equal(quantized, checkpoint.Layer(0).Down is QuantizedWeight);
            Assert.Null(checkpoint.Layer(1).VProj);
            Assert.NotNull(checkpoint.Layer(0).VProj);
        }
    }

    [Fact]
    public void MissingTensor_NamesItAndTheFile()
    {
        using var temp = new TempFolder();
        var model = SyntheticCheckpoint.Create();
        model.Remove(P + "layers.1.mlp.up_proj.weight");
        var error = OpenFails(model, temp);
        Assert.Equal(P + "layers.1.mlp.up_proj.weight", error.TensorName);
        Assert.Equal($"{temp.File("model.safetensors")}: tensor '{P}layers.1.mlp.up_proj.weight': tensor is missing from the checkpoint", error.Message);
    }

    [Fact]
    public void MissingScalesOfAModuleTheConfigQuantizes_NamesTheScales()
    {
        using var temp = new TempFolder();
        var model = SyntheticCheckpoint.Create();
        model.Remove(P + "layers.0.mlp.down_proj.scales");
        var error = OpenFails(model, temp);
        Assert.Equal($"{temp.File("model.safetensors")}: tensor '{P}layers.0.mlp.down_proj.scales': tensor is missing from the checkpoint", error.Message);
    }

    [Fact]
    public void Bits7_IsRefusedNamingTheModule()
    {
        using var temp = new TempFolder();
        var model = SyntheticCheckpoint.Create();
        model.Quantization![P + "layers.0.mlp.down_proj"] = SyntheticCheckpoint.Override(7);
        var error = OpenFails(model, temp);
        Assert.Equal(temp.File("config.json"), error.FilePath);
        Assert.Null(error.TensorName);
        Assert.Equal($"{temp.File("config.json")}: field 'quantization.{P}layers.0.mlp.down_proj.bits' is 7; supported bits: 2, 3, 4, 5, 6, 8", error.Message);
    }

    [Fact]
    public void GroupSize48_IsRefused()
    {
        using var temp = new TempFolder();
        var model = SyntheticCheckpoint.Create();
        model.Quantization!["group_size"] = 48;
        var error = OpenFails(model, temp);
        Assert.Equal($"{temp.File("config.json")}: field 'quantization.group_size' is 48; supported group sizes: 32, 64, 128", error.Message);
    }

    [Fact]
    public void NonAffineMode_IsNotSupported()
    {
        using var temp = new TempFolder();
        var model = SyntheticCheckpoint.Create();
        model.Quantization![P + "embed_tokens"]!["mode"] = "mxfp4";
        var error = OpenFails(model, temp);
        Assert.Equal($"{temp.File("config.json")}: field 'quantization.{P}embed_tokens.mode' is 'mxfp4'; quantization mode 'mxfp4' is not supported (only 'affine')", error.Message);
    }

    [Fact]
    public void ConfigBitsThatDisagreeWithThePackedShape_NameTensorExpectedAndActual()
    {
        using var temp = new TempFolder();
        var model = SyntheticCheckpoint.Create();
        // The tensors are 3-bit ([64, 12] words); the config claims 4-bit.
        model.Quantization![P + "layers.0.mlp.down_proj"] = SyntheticCheckpoint.Override(4);
        var error = OpenFails(model, temp);
        Assert.Equal(P + "layers.0.mlp.down_proj.weight", error.TensorName);
        Assert.Equal(
            $"{temp.File("model.safetensors")}: tensor '{P}layers.0.mlp.down_proj.weight': shape [64, 12] but 4-bit group-64 quantization of a [64, 128] matrix needs [64, 16]",
            error.Message);
    }

    [Fact]
    public void ScalesOfTheWrongGroupCount_AreRefused()
    {
        using var temp = new TempFolder();
        var model = SyntheticCheckpoint.Create();
        model.Replace(P + "layers.1.self_attn.q_proj.scales", TensorDType.BF16, 256, 2);
        var error = OpenFails(model, temp);
        Assert.Equal(
            $"{temp.File("model.safetensors")}: tensor '{P}layers.1.self_attn.q_proj.scales': shape [256, 2] but 4-bit group-64 quantization of a [256, 64] matrix needs [256, 1]",
            error.Message);
    }

    [Fact]
    public void DenseWeightOfTheWrongShape_NamesConfigShape()
    {
        using var temp = new TempFolder();
        var model = SyntheticCheckpoint.Create();
        model.Replace(P + "layers.1.self_attn.o_proj.weight", TensorDType.BF16, 64, 128);
        var error = OpenFails(model, temp);
        Assert.Equal($"{temp.File("model.safetensors")}: tensor '{P}layers.1.self_attn.o_proj.weight': shape [64, 128] but the config implies [64, 256]", error.Message);
    }

    [Fact]
    public void NormOfTheWrongLength_IsRefused()
    {
        using var temp = new TempFolder();
        var model = SyntheticCheckpoint.Create();
        model.Replace(P + "layers.1.self_attn.k_norm.weight", TensorDType.BF16, 32);
        var error = OpenFails(model, temp);
        Assert.Equal($"{temp.File("model.safetensors")}: tensor '{P}layers.1.self_attn.k_norm.weight': shape [32] but the config implies [64]", error.Message);
    }

    [Fact]
    public void OverrideFalseWithScalesPresent_IsRefused()
    {
        using var temp = new TempFolder();
        var model = SyntheticCheckpoint.Create();
        model.Quantization![P + "layers.0.mlp.gate_proj"] = false;
        var error = OpenFails(model, temp);
        Assert.Equal($"{temp.File("model.safetensors")}: tensor '{P}layers.0.mlp.gate_proj.scales': present, but quantization marks module '{P}layers.0.mlp.gate_proj' as not quantized", error.Message);
    }

    [Fact]
    public void PackedWeightWithoutScales_IsRefused()
    {
        using var temp = new TempFolder();
        var model = SyntheticCheckpoint.Create();
        model.Remove(P + "layers.0.mlp.gate_proj.scales");
        model.Remove(P + "layers.0.mlp.gate_proj.biases");
        var error = OpenFails(model, temp);
        Assert.Equal($"{temp.File("model.safetensors")}: tensor '{P}layers.0.mlp.gate_proj.weight': dtype U32 (packed) but no quantization applies: '{P}layers.0.mlp.gate_proj.scales' is missing", error.Message);
    }

    [Fact]
    public void ScalesWithoutAQuantizationSection_AreRefused()
    {
        using var temp = new TempFolder();
        var model = SyntheticCheckpoint.Create();
        model.Config.Remove("quantization");
        var error = OpenFails(model, temp);
        Assert.Equal(P + "embed_tokens.scales", error.TensorName);
        Assert.EndsWith("a quantized module's scales, but config.json has no \"quantization\" or \"quantization_config\" section", error.Message);
    }

    [Fact]
    public void QuantizationConfigFallback_IsUsedWhenQuantizationIsAbsent()
    {
        using var temp = new TempFolder();
        var model = SyntheticCheckpoint.Create();
        var section = model.Quantization!;
        model.Config.Remove("quantization");
        model.WriteTo(temp.Path);
        var config = JsonNode.Parse(File.ReadAllText(temp.File("config.json")))!.AsObject();
        config["quantization_config"] = section;
        File.WriteAllText(temp.File("config.json"), config.ToJsonString());
        using var checkpoint = Gemma4Checkpoint.Open(temp.Path);
        Assert.Equal("quantization_config", checkpoint.Quantization!.Field);
        Assert.Equal(3, Assert.IsType<QuantizedWeight>(checkpoint.Layer(1).Down).Bits);
    }

    [Fact]
    public void OverrideTrueAndPartialOverrides_FollowMlx()
    {
        using var temp = new TempFolder();
        var model = SyntheticCheckpoint.Create();
        // `true`: top-level parameters (2-bit); an object without bits: MLX's default of 4.
        model.Quantization![P + "layers.0.mlp.gate_proj"] = true;
        model.Quantization![P + "layers.0.self_attn.q_proj"] = new JsonObject { ["group_size"] = 64 };
        model.WriteTo(temp.Path);
        using var checkpoint = Gemma4Checkpoint.Open(temp.Path);
        Assert.Equal(2, Assert.IsType<QuantizedWeight>(checkpoint.Layer(0).Gate).Bits);
        Assert.Equal(4, Assert.IsType<QuantizedWeight>(checkpoint.Layer(0).QProj).Bits);
    }

    [Fact]
    public void UnknownModelType_IsRefusedNamingTheValue()
    {
        using var temp = new TempFolder();
        var model = SyntheticCheckpoint.Create();
        model.Config["model_type"] = "llama";
        var error = OpenFails(model, temp);
        Assert.Equal($"{temp.File("config.json")}: field 'model_type' is 'llama'; model_type 'llama' is not supported (supported: gemma4, gemma4_text)", error.Message);
    }

    [Fact]
    public void MissingModelType_IsRefused()
    {
        using var temp = new TempFolder();
        var model = SyntheticCheckpoint.Create();
        model.Config.Remove("model_type");
        Assert.Equal($"{temp.File("config.json")}: field 'model_type' is missing", OpenFails(model, temp).Message);
    }

    [Fact]
    public void UnknownTextModelType_IsRefused()
    {
        using var temp = new TempFolder();
        var model = SyntheticCheckpoint.Create();
        model.Config["text_config"]!["model_type"] = "gemma3_text";
        Assert.EndsWith("field 'text_config.model_type' is 'gemma3_text'; model_type 'gemma3_text' is not supported (expected gemma4_text)", OpenFails(model, temp).Message);
    }

    [Fact]
    public void TextOnlyModelWithBareModelPrefix_Loads()
    {
        using var temp = new TempFolder();
        var model = SyntheticCheckpoint.Create(quantized: false, prefix: "model.", modelType: "gemma4_text");
        model.WriteTo(temp.Path);
        using var checkpoint = Gemma4Checkpoint.Open(temp.Path);
        Assert.Equal("model.", checkpoint.TextPrefix);
        Assert.Equal("gemma4_text", checkpoint.Config.ModelType);
        Assert.Null(checkpoint.Vision);
        Assert.Equal(SyntheticCheckpoint.Vocab, checkpoint.Embedding.Rows);
    }

    [Fact]
    public void NoRecognisedEmbedding_ListsTheNamesTried()
    {
        using var temp = new TempFolder();
        var model = SyntheticCheckpoint.Create();
        model.Remove(P + "embed_tokens.weight");
        var error = OpenFails(model, temp);
        Assert.Equal(
            $"{temp.File("model.safetensors")}: tensor 'embed_tokens.weight': tensor is missing from the checkpoint (looked for language_model.model.embed_tokens.weight, model.language_model.embed_tokens.weight, model.embed_tokens.weight)",
            error.Message);
    }

    [Fact]
    public void UntiedEmbeddings_LoadTheOutputHead()
    {
        using var temp = new TempFolder();
        var model = SyntheticCheckpoint.Create(quantized: false, prefix: "model.language_model.");
        model.Config["tie_word_embeddings"] = false;
        var missing = Assert.Throws<CheckpointFormatException>(() => { model.WriteTo(temp.Path); Gemma4Checkpoint.Open(temp.Path).Dispose(); });
        Assert.Equal("lm_head.weight", missing.TensorName);

        model.Add("lm_head.weight", TensorDType.BF16, SyntheticCheckpoint.Vocab, SyntheticCheckpoint.Hidden);
        model.WriteTo(temp.Path);
        using var checkpoint = Gemma4Checkpoint.Open(temp.Path);
        Assert.NotSame(checkpoint.Embedding, checkpoint.LmHead);
        Assert.Equal(checkpoint.Tensors.Get("lm_head.weight").Data, Assert.IsType<DenseWeight>(checkpoint.LmHead).Data);
    }

    [Fact]
    public void IntegerNormTensor_IsRefused()
    {
        using var temp = new TempFolder();
        var model = SyntheticCheckpoint.Create();
        model.Replace(P + "norm.weight", TensorDType.I32, 64);
        Assert.EndsWith($"tensor '{P}norm.weight': dtype I32 but a float type (BF16, F16, F32) is required", OpenFails(model, temp).Message);
    }

    [Fact]
    public void MissingConfig_IsRefused()
    {
        using var temp = new TempFolder();
        var error = Assert.Throws<CheckpointFormatException>(() => Gemma4Checkpoint.Open(temp.Path));
        Assert.Equal($"{temp.File("config.json")}: file does not exist", error.Message);
    }
}
