using System.IO.Compression;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Pipeline.Kernels;
using Pipeline.Kernels.Quantization;
using Pipeline.Model.Checkpoint;
using Pipeline.Model.TestModels;
using Pipeline.Model.Tests.Checkpoint;

namespace Pipeline.Model.Tests.TestModels;

/// <summary>The tiny preset generated once in both layouts with seed 5, shared by the tests below.</summary>
public sealed class TinyTestModels : IDisposable
{
    public const ulong Seed = 5;

    private readonly TempFolder _mlx = new();
    private readonly TempFolder _hf = new();

    public TinyTestModels()
    {
        TestModelGenerator.Generate(TestModelPreset.Tiny, TestModelQuant.UdQ2Kxl, Seed, _mlx.Path);
        TestModelGenerator.Generate(TestModelPreset.Tiny, TestModelQuant.Bf16, Seed, _hf.Path);
    }

    /// <summary>The ud-q2kxl folder (MLX layout).</summary>
    public string Mlx => _mlx.Path;

    /// <summary>The bf16 folder (Hugging Face layout).</summary>
    public string Hf => _hf.Path;

    public void Dispose()
    {
        _mlx.Dispose();
        _hf.Dispose();
    }
}

public class TestModelGeneratorTests(TinyTestModels tiny) : IClassFixture<TinyTestModels>
{
    [Fact]
    public void Tiny_UdQ2Kxl_LoadsBackWithTheRecipe()
    {
        using var checkpoint = Gemma4Checkpoint.Open(tiny.Mlx);
        Assert.Equal("language_model.model.", checkpoint.TextPrefix);
        Assert.Equal(new QuantParams(2, 64), checkpoint.Quantization!.Defaults);
        Assert.Equal([1, 106, 50], checkpoint.Generation.EosTokenIds);
        AssertQuantized(checkpoint.Embedding, 262144, 64, bits: 4);
        for (int i = 0; i < 6; i++)
        {
            var layer = checkpoint.Layer(i);
            bool full = i is 2 or 5;
            int headDim = full ? 64 : 32, kvHeads = full ? 1 : 2;
            Assert.Equal(full, checkpoint.Text.IsFullAttention(i));
            AssertQuantized(layer.QProj, 4 * headDim, 64, bits: 4);
            AssertQuantized(layer.KProj, kvHeads * headDim, 64, bits: 4);
            Assert.Equal(full, layer.VProj is null);
            if (!full)
                AssertQuantized(layer.VProj!, kvHeads * headDim, 64, bits: 4);
            var oProj = Assert.IsType<DenseWeight>(layer.OProj);
            Assert.Equal(ScalarType.BF16, oProj.Type);
            AssertQuantized(layer.Gate, 128, 64, bits: 2);
            AssertQuantized(layer.Up, 128, 64, bits: 2);
            AssertQuantized(layer.Down, 64, 128, bits: 3);
            AssertAllIn(layer.InputNorm, 0.5f, 1.5f);
            AssertAllIn(layer.PostFeedforwardNorm, 0.5f, 1.5f);
            AssertAllIn(layer.QNorm, 0.3f, 1.0f);
            AssertAllIn(layer.KNorm, 0.3f, 1.0f);
            Assert.InRange(layer.LayerScalar, 0.5f, 1.5f);
        }
        foreach (string file in new[] { "tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json" })
            Assert.True(File.Exists(Path.Combine(tiny.Mlx, file)), file + " is missing");
    }

    [Fact]
    public void Tiny_Bf16_LoadsBackDense_AndQuantizesToExactlyTheUdQ2KxlFolder()
    {
        using var hf = Gemma4Checkpoint.Open(tiny.Hf);
        using var mlx = Gemma4Checkpoint.Open(tiny.Mlx);
        Assert.Equal("model.language_model.", hf.TextPrefix);
        Assert.Null(hf.Quantization);
        Assert.IsType<DenseWeight>(hf.Embedding);
        Assert.IsType<DenseWeight>(hf.Layer(0).Down);

        // Both layouts hold the same numbers: MLX-quantizing the bf16 tensors gives the MLX folder's bytes.
        int quantizedModules = 0;
        foreach (string name in mlx.Tensors.Names)
        {
            if (TestModelPlan.IsVisionPath(name))
            {
                // The vision tower is bf16 in both layouts; Hugging Face's names carry "model.".
                Assert.True(mlx.Tensors.Bytes(name).SequenceEqual(hf.Tensors.Bytes("model." + name)), name);
                continue;
            }
            string path = name["language_model.model.".Length..];
            if (name.EndsWith(".scales", StringComparison.Ordinal))
            {
                string module = name[..^".scales".Length];
                var source = hf.Tensors.Get("model.language_model." + path[..^".scales".Length] + ".weight");
                var bits = mlx.Quantization!.Resolve(module, scalesPresent: true)!.Value;
                var q = MlxAffine.Quantize(Bf16ToFloats(hf.Tensors.Bytes(source.Name)),
                    (int)source.Shape[0], (int)source.Shape[1], bits.Bits, bits.GroupSize, ScalarType.BF16);
                Assert.True(q.PackedBytes().SequenceEqual(mlx.Tensors.Bytes(module + ".weight")), module + ".weight");
                Assert.True(q.Scales.AsSpan().SequenceEqual(mlx.Tensors.Bytes(module + ".scales")), module + ".scales");
                Assert.True(q.Biases.AsSpan().SequenceEqual(mlx.Tensors.Bytes(module + ".biases")), module + ".biases");
                quantizedModules++;
            }
            else if (mlx.Tensors.Get(name).DType == TensorDType.BF16 && !name.EndsWith(".biases", StringComparison.Ordinal))
            {
                Assert.True(mlx.Tensors.Bytes(name).SequenceEqual(hf.Tensors.Bytes("model.language_model." + path)), name);
            }
        }
        Assert.Equal(35, quantizedModules);
    }

    [Theory]
    [InlineData(TestModelQuant.UdQ2Kxl, "ud-q2kxl")]
    [InlineData(TestModelQuant.Bf16, "bf16")]
    public void TinyPlan_HasExactlyTheTensorsOfTheTinyAFixture(TestModelQuant quant, string fixtureLayout)
    {
        // tiny-a is text only: the tiny preset without its vision tower.
        var plan = TestModelPlan.Create(TestModelPreset.Tiny with { Vision = null }, quant);
        using var fixture = SafetensorsSet.Open(CheckpointFixtures.TinyA(fixtureLayout));

        var expected = fixture.Names.Order(StringComparer.Ordinal)
            .Select(n => $"{n} {fixture.Get(n).DType} {fixture.Get(n).ShapeText}");
        var actual = plan.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal)
            .Select(n => plan.Tensors.Single(t => t.Name == n))
            .Select(t => $"{t.Name} {t.DType} {TensorInfo.FormatShape(t.Shape)}");
        Assert.Equal(expected, actual);
        Assert.Equal(fixture.TotalBytes, plan.TotalBytes);
    }

    [Fact]
    public void TinyConfig_MatchesTheTinyAFixture()
    {
        var plan = TestModelPlan.Create(TestModelPreset.Tiny with { Vision = null }, TestModelQuant.UdQ2Kxl);
        var ours = JsonNode.Parse(TestModelConfig.ToJson(plan, seed: 3))!.AsObject();
        var theirs = JsonNode.Parse(File.ReadAllText(Path.Combine(CheckpointFixtures.TinyA("ud-q2kxl"), "config.json")))!.AsObject();

        Assert.True(JsonNode.DeepEquals(theirs["quantization"], ours["quantization"]), "quantization differs");
        Assert.True(JsonNode.DeepEquals(theirs["quantization_config"], ours["quantization_config"]), "quantization_config differs");
        Assert.Equal(Canonical(theirs["text_config"]!), Canonical(ours["text_config"]!));
        foreach (string key in new[] { "architectures", "model_type", "eos_token_id", "bos_token_id", "tie_word_embeddings", "dtype" })
            Assert.True(JsonNode.DeepEquals(theirs[key], ours[key]), key + " differs");
    }

    [Fact]
    public void ShardedOutput_WritesAnIndex_AndLoadsBackWithTheSameTensors()
    {
        using var folder = new TempFolder();
        var plan = TestModelPlan.Create(TestModelPreset.Tiny, TestModelQuant.UdQ2Kxl, maxShardBytes: 64 << 10);
        TestModelGenerator.Generate(plan, TinyTestModels.Seed, folder.Path);

        // The 9 MB embedding alone (a tensor larger than the limit still gets a file), then the layers.
        Assert.InRange(plan.Shards.Count, 4, 10);
        Assert.Equal("model-00001-of-" + plan.Shards.Count.ToString("D5", System.Globalization.CultureInfo.InvariantCulture) + ".safetensors", plan.Shards[0].FileName);
        Assert.True(File.Exists(folder.File("model.safetensors.index.json")));
        Assert.False(File.Exists(folder.File("model.safetensors")));
        using var sharded = Gemma4Checkpoint.Open(folder.Path);
        using var single = SafetensorsSet.Open(tiny.Mlx);
        Assert.Equal(plan.Shards.Count, sharded.Tensors.Files.Count);
        Assert.Equal(single.Names.Order(), sharded.Tensors.Names.Order());
        foreach (string name in single.Names)
            Assert.True(single.Bytes(name).SequenceEqual(sharded.Tensors.Bytes(name)), name);
    }

    [Fact]
    public void SameSeed_GivesTheSameBytes()
    {
        using var again = new TempFolder();
        TestModelGenerator.Generate(TestModelPreset.Tiny, TestModelQuant.UdQ2Kxl, TinyTestModels.Seed, again.Path);

        var files = Directory.GetFiles(tiny.Mlx).Select(f => Path.GetFileName(f)).Order().ToList();
        Assert.Equal(files, Directory.GetFiles(again.Path).Select(f => Path.GetFileName(f)).Order());
        foreach (string file in files)
            Assert.Equal(Hash(Path.Combine(tiny.Mlx, file)), Hash(again.File(file)));
    }

    [Fact]
    public void AnotherSeed_OrAnotherTensor_GivesOtherValues()
    {
        float[] Row(ulong seed, string path, long row)
        {
            var values = new float[256];
            WeightRandom.FillRow(values, seed, path, row, WeightInit.Projection, 256);
            return values;
        }

        var reference = Row(5, "layers.0.mlp.up_proj.weight", 3);
        Assert.Equal(reference, Row(5, "layers.0.mlp.up_proj.weight", 3));
        Assert.NotEqual(reference, Row(6, "layers.0.mlp.up_proj.weight", 3));
        Assert.NotEqual(reference, Row(5, "layers.0.mlp.gate_proj.weight", 3));
        Assert.NotEqual(reference, Row(5, "layers.0.mlp.up_proj.weight", 4));
    }

    [Fact]
    public void Tiny_WeightsHaveTheIntendedScales()
    {
        using var set = SafetensorsSet.Open(tiny.Hf);
        const string p = "model.language_model.";

        AssertMoments(set, p + "embed_tokens.weight", std: 3 / MathF.Sqrt(64));
        AssertMoments(set, p + "layers.1.mlp.down_proj.weight", std: 1 / MathF.Sqrt(128));
        AssertMoments(set, p + "layers.2.self_attn.o_proj.weight", std: 1 / MathF.Sqrt(256));
        AssertMoments(set, p + "layers.4.mlp.gate_proj.weight", std: 1 / MathF.Sqrt(64));
        var norm = Bf16ToFloats(set.Bytes(p + "norm.weight"));
        Assert.All(norm, v => Assert.InRange(v, 0.5f, 1.5f));
        Assert.InRange(norm.Average(), 0.85, 1.15);
    }

    [Fact]
    public void Gemma31BPlan_HasThe31BShapesAndSize_WithoutWritingAnything()
    {
        var plan = TestModelPlan.Create(TestModelPreset.Gemma31B, TestModelQuant.UdQ2Kxl);
        var shapes = plan.Tensors.ToDictionary(t => t.Name, t => $"{t.DType} {TensorInfo.FormatShape(t.Shape)}");
        const string p = "language_model.model.";

        Assert.InRange(plan.TotalBytes, 17_300_000_000L, 17_500_000_000L);
        Assert.Equal("U32 [262144, 672]", shapes[p + "embed_tokens.weight"]);
        Assert.Equal("BF16 [262144, 84]", shapes[p + "embed_tokens.scales"]);
        Assert.Equal("BF16 [5376]", shapes[p + "norm.weight"]);
        foreach (int sliding in new[] { 0, 30, 58 })
        {
            string l = $"{p}layers.{sliding}.";
            Assert.Equal("U32 [8192, 672]", shapes[l + "self_attn.q_proj.weight"]);
            Assert.Equal("U32 [4096, 672]", shapes[l + "self_attn.k_proj.weight"]);
            Assert.Equal("U32 [4096, 672]", shapes[l + "self_attn.v_proj.weight"]);
            Assert.Equal("BF16 [4096, 84]", shapes[l + "self_attn.v_proj.biases"]);
            Assert.Equal("BF16 [5376, 8192]", shapes[l + "self_attn.o_proj.weight"]);
            Assert.Equal("BF16 [256]", shapes[l + "self_attn.q_norm.weight"]);
            Assert.Equal("U32 [21504, 336]", shapes[l + "mlp.gate_proj.weight"]);
            Assert.Equal("U32 [21504, 336]", shapes[l + "mlp.up_proj.weight"]);
            Assert.Equal("U32 [5376, 2016]", shapes[l + "mlp.down_proj.weight"]);
            Assert.Equal("BF16 [5376, 336]", shapes[l + "mlp.down_proj.scales"]);
            Assert.Equal("BF16 [1]", shapes[l + "layer_scalar"]);
        }
        foreach (int full in new[] { 5, 11, 59 })
        {
            string l = $"{p}layers.{full}.";
            Assert.Equal("U32 [16384, 672]", shapes[l + "self_attn.q_proj.weight"]);
            Assert.Equal("U32 [2048, 672]", shapes[l + "self_attn.k_proj.weight"]);
            Assert.False(shapes.ContainsKey(l + "self_attn.v_proj.weight"));
            Assert.Equal("BF16 [5376, 16384]", shapes[l + "self_attn.o_proj.weight"]);
            Assert.Equal("BF16 [512]", shapes[l + "self_attn.k_norm.weight"]);
        }
        Assert.Equal(10, Enumerable.Range(0, 60).Count(TestModelPreset.Gemma31B.IsFullAttention));
        Assert.DoesNotContain(shapes.Keys, n => n.Contains("layers.60.", StringComparison.Ordinal));
        // embed (weight, scales, biases) + 50 sliding layers x 26 + 10 full layers x 23 (no v_proj) + final norm
        Assert.Equal(3 + 50 * 26 + 10 * 23 + 1, shapes.Count);
        Assert.Equal(4, plan.Shards.Count);
        Assert.All(plan.Shards, s => Assert.True(s.ByteLength <= TestModelPlan.MaxShardBytes));
        Assert.StartsWith("total: ", plan.Describe().Last());
        Assert.Contains("17.37 GB", plan.Describe().Last());
    }

    [Fact]
    public void Gemma31BConfig_IsAcceptedByTheCheckpointConfigLoader()
    {
        using var folder = new TempFolder();
        var plan = TestModelPlan.Create(TestModelPreset.Gemma31B, TestModelQuant.UdQ2Kxl);
        File.WriteAllText(folder.File("config.json"), TestModelConfig.ToJson(plan, seed: 0));

        var config = Gemma4ModelConfig.Load(folder.File("config.json"));

        var text = config.Text;
        Assert.Equal((5376, 60, 21504, 32, 16, 256, 512), (text.HiddenSize, text.NumHiddenLayers, text.IntermediateSize,
            text.NumAttentionHeads, text.NumKeyValueHeads, text.SlidingHeadDim, text.GlobalHeadDim));
        Assert.Equal(4, text.NumGlobalKeyValueHeads);
        Assert.Equal(1024, text.SlidingWindow);
        Assert.Equal(262144, text.VocabSize);
        Assert.Equal(262144, text.MaxPositionEmbeddings);
        Assert.Equal([1, 106], config.EosTokenIds);
        Assert.True(text.IsFullAttention(59));
        Assert.False(text.HasValueProjection(59));
        Assert.Equal(new QuantParams(3, 64), config.Quantization!.Resolve("language_model.model.layers.17.mlp.down_proj", scalesPresent: true));
        Assert.Equal(new QuantParams(2, 64), config.Quantization.Resolve("language_model.model.layers.17.mlp.up_proj", scalesPresent: true));
        Assert.Null(config.Quantization.Resolve("language_model.model.layers.17.self_attn.o_proj", scalesPresent: false));
    }

    [Fact]
    public void SmallPlan_Has31BLayersButSixOfThem()
    {
        var plan = TestModelPlan.Create(TestModelPreset.Small, TestModelQuant.UdQ2Kxl);
        Assert.Equal(6, plan.Preset.NumLayers);
        Assert.Equal([false, false, false, false, false, true], Enumerable.Range(0, 6).Select(plan.Preset.IsFullAttention));
        Assert.InRange(plan.TotalBytes, 2_400_000_000L, 2_500_000_000L);
        Assert.Single(plan.Shards);
        Assert.Equal("model.safetensors", plan.Shards[0].FileName);
    }

    [Fact]
    public void Generate_RefusesAFolderThatIsNotEmpty()
    {
        using var folder = new TempFolder();
        File.WriteAllText(folder.File("notes.txt"), "keep me");
        var ex = Assert.Throws<IOException>(
            () => TestModelGenerator.Generate(TestModelPreset.Tiny, TestModelQuant.UdQ2Kxl, 1, folder.Path));
        Assert.Contains(folder.Path, ex.Message);
        Assert.Contains("is not empty", ex.Message);
        Assert.Single(Directory.GetFiles(folder.Path));
    }

    [Fact]
    public void CancelledGeneration_LeavesTheFolderEmpty()
    {
        using var folder = new TempFolder();
        using var cancel = new CancellationTokenSource();
        long reported = 0;

        Assert.ThrowsAny<OperationCanceledException>(() => TestModelGenerator.Generate(
            TestModelPreset.Tiny, TestModelQuant.UdQ2Kxl, 1, folder.Path,
            (written, total) =>
            {
                reported = written;
                cancel.Cancel(); // after the first block of the embedding
            },
            cancel.Token));

        Assert.InRange(reported, 1, 9_000_000);
        Assert.Empty(Directory.EnumerateFileSystemEntries(folder.Path));
    }

    [Fact]
    public void GeneratedFolder_CarriesTheShippedTokenizerFiles()
    {
        string data = Path.Combine(CheckpointFixtures.RepoRoot, "src", "Tokenizer", "Data");

        using (var gz = new GZipStream(File.OpenRead(Path.Combine(data, "tokenizer.json.gz")), CompressionMode.Decompress))
        using (var expected = new MemoryStream())
        {
            gz.CopyTo(expected);
            Assert.True(expected.ToArray().AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(tiny.Hf, "tokenizer.json"))));
        }
        foreach (string file in new[] { "chat_template.jinja", "tokenizer_config.json", "generation_config.json" })
            Assert.Equal(File.ReadAllText(Path.Combine(data, file)), File.ReadAllText(Path.Combine(tiny.Hf, file)));
    }

    [Theory]
    [InlineData("huge", "unknown test-model preset 'huge' (known: tiny, mid, small, 31b)")]
    public void UnknownPreset_IsRefusedByName(string name, string message)
    {
        var ex = Assert.Throws<ArgumentException>(() => TestModelPreset.Parse(name));
        Assert.StartsWith(message, ex.Message);
    }

    [Fact]
    public void UnknownQuant_IsRefusedByName()
    {
        var ex = Assert.Throws<ArgumentException>(() => TestModelQuants.Parse("q4_k"));
        Assert.StartsWith("unknown test-model quantization 'q4_k' (known: ud-q2kxl, bf16)", ex.Message);
    }

    private static void AssertQuantized(LinearWeight weight, int rows, int cols, int bits)
    {
        var q = Assert.IsType<QuantizedWeight>(weight);
        Assert.Equal((rows, cols, bits, 64, ScalarType.BF16), (q.Rows, q.Cols, q.Bits, q.GroupSize, q.ScaleType));
    }

    private static void AssertAllIn(DenseWeight vector, float low, float high)
    {
        for (int i = 0; i < vector.Cols; i++)
            Assert.InRange(Scalars.Load(vector.Data, i, vector.Type), low, high);
    }

    private static void AssertMoments(SafetensorsSet set, string name, float std)
    {
        var values = Bf16ToFloats(set.Bytes(name));
        double sum = 0, sumSquares = 0, largest = 0;
        foreach (float v in values)
        {
            sum += v;
            sumSquares += (double)v * v;
            largest = Math.Max(largest, Math.Abs(v));
        }
        double mean = sum / values.Length;
        double actualStd = Math.Sqrt(sumSquares / values.Length - mean * mean);
        Assert.InRange(mean, -0.05 * std, 0.05 * std);
        Assert.InRange(actualStd, 0.97 * std, 1.03 * std);
        Assert.InRange(largest, 2.5 * std, 3.5 * std); // Irwin-Hall of four: at most sqrt(12) sigma
    }

    private static float[] Bf16ToFloats(ReadOnlySpan<byte> bytes)
    {
        var bits = MemoryMarshal.Cast<byte, ushort>(bytes);
        var values = new float[bits.Length];
        for (int i = 0; i < bits.Length; i++)
            values[i] = Scalars.Bf16ToFloat(bits[i]);
        return values;
    }

    private static string Hash(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));

    /// <summary>Compact JSON with numbers normalized (10000.0 and 10000 compare equal).</summary>
    private static string Canonical(JsonNode node) => node switch
    {
        JsonObject o => "{" + string.Join(",", o.Select(kv => kv.Key + ":" + (kv.Value is null ? "null" : Canonical(kv.Value)))) + "}",
        JsonArray a => "[" + string.Join(",", a.Select(v => v is null ? "null" : Canonical(v))) + "]",
        JsonValue v when v.GetValueKind() == System.Text.Json.JsonValueKind.Number =>
            v.GetValue<double>().ToString("R", System.Globalization.CultureInfo.InvariantCulture),
        _ => node.ToJsonString(),
    };
}
