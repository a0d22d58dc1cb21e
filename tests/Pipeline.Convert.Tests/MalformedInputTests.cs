using System.Text.Json.Nodes;
using Pipeline.Kernels;
using Pipeline.Model.Checkpoint;

namespace Pipeline.Convert.Tests;

/// <summary>Every bad input fails with one clear message and leaves nothing next to the requested output.</summary>
public class MalformedInputTests
{
    /// <summary>A small Gemma-4 folder: tiny-a's config and layer 0's attention tensors, in one file or two shards.</summary>
    internal static string SmallModel(string root, bool sharded = false, string normDType = "BF16")
    {
        string folder = Path.Combine(root, "in");
        Directory.CreateDirectory(folder);
        File.Copy(Path.Combine(TestPaths.TinyBf16, "config.json"), Path.Combine(folder, "config.json"));
        var rng = new Random(5);
        (TensorSpec, byte[]) Tensor(string name, TensorDType type, params long[] shape)
        {
            var spec = new TensorSpec(name, type, shape);
            var bytes = new byte[spec.ByteLength];
            if (type == TensorDType.BF16)
            {
                for (int i = 0; i < bytes.Length; i += 2)
                    BitConverter.TryWriteBytes(bytes.AsSpan(i), Scalars.FloatToBf16((float)rng.NextDouble() - 0.5f));
            }
            return (spec, bytes);
        }
        TensorDTypes.TryParse(normDType, out var normType);
        var first = new[]
        {
            Tensor("model.language_model.layers.0.input_layernorm.weight", normType, 64),
            Tensor("model.language_model.layers.0.self_attn.k_proj.weight", TensorDType.BF16, 64, 64),
        };
        var second = new[]
        {
            Tensor("model.language_model.layers.0.self_attn.q_proj.weight", TensorDType.BF16, 128, 64),
            Tensor("model.language_model.layers.0.self_attn.v_proj.weight", TensorDType.BF16, 64, 64),
        };
        if (!sharded)
        {
            SafetensorsWriter.Write(Path.Combine(folder, "model.safetensors"), [.. first, .. second]);
            return folder;
        }
        SafetensorsWriter.Write(Path.Combine(folder, "model-00001-of-00002.safetensors"), first);
        SafetensorsWriter.Write(Path.Combine(folder, "model-00002-of-00002.safetensors"), second);
        var map = new JsonObject();
        foreach (var (spec, _) in first)
            map[spec.Name] = "model-00001-of-00002.safetensors";
        foreach (var (spec, _) in second)
            map[spec.Name] = "model-00002-of-00002.safetensors";
        File.WriteAllText(Path.Combine(folder, "model.safetensors.index.json"), new JsonObject { ["weight_map"] = map }.ToJsonString());
        return folder;
    }

    private static ConvertOptions Options(string input, string root) => new()
    {
        InputDir = input,
        OutputDir = Path.Combine(root, "out"),
        Quantize = true,
        Recipe = "unsloth",
        Bits = 2,
    };

    /// <summary>Runs a conversion expected to fail; checks nothing but the input is left in the folder.</summary>
    private static Exception Fails(TempFolder temp, ConvertOptions options, CancellationToken cancel = default, TextWriter? progress = null)
    {
        var e = Record.Exception(() => Converter.Run(options, progress, _ => { }, cancel));
        Assert.NotNull(e);
        Assert.Equal(["in"], Directory.GetFileSystemEntries(temp.Path).Select(Path.GetFileName).Where(n => n != "imatrix.gguf"));
        return e;
    }

    [Fact]
    public void ShardedInput_Converts()
    {
        using var temp = TestPaths.NewTempFolder();
        string output = Converter.Run(Options(SmallModel(temp.Path, sharded: true), temp.Path), null, _ => { });
        using var set = SafetensorsSet.Open(output);
        Assert.Equal(10, set.Count); // q, k, v as weight/scales/biases, plus the norm
    }

    [Fact]
    public void MissingShard_IsRefused()
    {
        using var temp = TestPaths.NewTempFolder();
        string input = SmallModel(temp.Path, sharded: true);
        File.Delete(Path.Combine(input, "model-00002-of-00002.safetensors"));
        var e = Assert.IsType<CheckpointFormatException>(Fails(temp, Options(input, temp.Path)));
        Assert.Contains("shard 'model-00002-of-00002.safetensors' named by the index does not exist", e.Message);
    }

    [Theory]
    [InlineData("F64")]
    [InlineData("I32")]
    [InlineData("U8")]
    public void NonFloatTensor_IsRefused(string dtype)
    {
        using var temp = TestPaths.NewTempFolder();
        var e = Assert.IsType<ConvertException>(Fails(temp, Options(SmallModel(temp.Path, normDType: dtype), temp.Path)));
        Assert.Equal($"tensor 'model.language_model.layers.0.input_layernorm.weight' has dtype {dtype}; the converter reads BF16, F16 or F32 only", e.Message);
    }

    [Fact]
    public void ImatrixSizeMismatch_IsRefused()
    {
        using var temp = TestPaths.NewTempFolder();
        string input = SmallModel(temp.Path);
        string imatrix = Path.Combine(temp.Path, "imatrix.gguf");
        new ImatrixFile([new ImatrixEntry("blk.0.attn_k.weight", new float[32], 1)], [], 1, 1).Write(imatrix);
        var e = Assert.IsType<ConvertException>(Fails(temp, Options(input, temp.Path) with { ImatrixPath = imatrix }));
        Assert.Equal($"{imatrix}: imatrix entry 'blk.0.attn_k.weight' has 32 values but language_model.model.layers.0.self_attn.k_proj takes 64 inputs (shape [64, 64])", e.Message);
    }

    [Fact]
    public void UnknownRecipe_IsRefused()
    {
        using var temp = TestPaths.NewTempFolder();
        var e = Assert.IsType<ConvertException>(Fails(temp, Options(SmallModel(temp.Path), temp.Path) with { Recipe = "ud" }));
        Assert.Equal("unknown quantization recipe 'ud' (known: unsloth, uniform)", e.Message);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(9)]
    public void BitsOutsideRange_AreRefused(int bits)
    {
        using var temp = TestPaths.NewTempFolder();
        var e = Assert.IsType<ConvertException>(Fails(temp, Options(SmallModel(temp.Path), temp.Path) with { Bits = bits }));
        Assert.Equal($"--q-bits {bits} is outside 2..8", e.Message);
    }

    [Fact]
    public void AlreadyQuantizedInput_IsRefused()
    {
        using var temp = TestPaths.NewTempFolder();
        string input = SmallModel(temp.Path);
        File.Copy(Path.Combine(TestPaths.TinyQuantized, "config.json"), Path.Combine(input, "config.json"), overwrite: true);
        var e = Assert.IsType<ConvertException>(Fails(temp, Options(input, temp.Path)));
        Assert.EndsWith("the input is already quantized (config.json has \"quantization\"); convert from the bf16/f16/f32 original", e.Message);
    }

    [Fact]
    public void MissingConfig_IsRefused()
    {
        using var temp = TestPaths.NewTempFolder();
        string input = SmallModel(temp.Path);
        File.Delete(Path.Combine(input, "config.json"));
        var e = Assert.IsType<ConvertException>(Fails(temp, Options(input, temp.Path)));
        Assert.EndsWith("config.json is missing from the input folder", e.Message);
    }

    [Fact]
    public void ExistingOutput_IsRefusedAndLeftAlone()
    {
        using var temp = TestPaths.NewTempFolder();
        var options = Options(SmallModel(temp.Path), temp.Path);
        Directory.CreateDirectory(options.OutputDir);
        File.WriteAllText(Path.Combine(options.OutputDir, "keep.txt"), "mine");
        var e = Assert.Throws<ConvertException>(() => Converter.Run(options, null, _ => { }));
        Assert.Equal($"output {options.OutputDir} already exists; choose a new folder", e.Message);
        Assert.Equal("mine", File.ReadAllText(Path.Combine(options.OutputDir, "keep.txt")));
    }

    [Fact]
    public void FailureWhileWriting_RemovesTheStagingFolder()
    {
        using var temp = TestPaths.NewTempFolder();
        using var cancel = new CancellationTokenSource();
        // The first progress update cancels: the conversion stops with tensors half written.
        var progress = new CancellingWriter(cancel);
        var e = Fails(temp, Options(SmallModel(temp.Path), temp.Path), cancel.Token, progress);
        Assert.IsType<OperationCanceledException>(e);
        Assert.True(progress.Cancelled);
    }

    private sealed class CancellingWriter(CancellationTokenSource source) : StringWriter
    {
        public bool Cancelled { get; private set; }

        public override void Write(string? value)
        {
            Cancelled = true;
            source.Cancel();
        }
    }
}
