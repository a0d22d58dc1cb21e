using System.Text.Json.Nodes;
using Pipeline.Model.Checkpoint;

namespace Pipeline.Convert.Tests;

public class ConverterTests
{
    [Fact]
    public void TinyA_Unsloth2_ReproducesTheFixtureByteForByte()
    {
        using var temp = TestPaths.NewTempFolder();
        var warnings = new List<string>();
        string output = Converter.Run(new ConvertOptions
        {
            InputDir = TestPaths.TinyBf16,
            OutputDir = Path.Combine(temp.Path, "out"),
            Quantize = true,
            Recipe = "unsloth",
            Bits = 2,
        }, progress: null, warnings.Add);

        using var expected = SafetensorsSet.Open(TestPaths.TinyQuantized);
        using var actual = SafetensorsSet.Open(output);
        Assert.Equal(expected.Names.Order(StringComparer.Ordinal), actual.Names.Order(StringComparer.Ordinal));
        foreach (string name in expected.Names)
        {
            var e = expected.Get(name);
            var a = actual.Get(name);
            Assert.Equal(e.DType, a.DType);
            Assert.Equal(e.Shape, a.Shape);
            Assert.True(expected.Bytes(name).SequenceEqual(actual.Bytes(name)), $"tensor {name} differs");
        }

        var expectedConfig = JsonNode.Parse(File.ReadAllText(Path.Combine(TestPaths.TinyQuantized, "config.json")))!;
        var actualConfig = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "config.json")))!;
        Assert.True(JsonNode.DeepEquals(expectedConfig["quantization"], actualConfig["quantization"]));
        Assert.True(JsonNode.DeepEquals(expectedConfig["quantization_config"], actualConfig["quantization_config"]));
        Assert.True(JsonNode.DeepEquals(expectedConfig, actualConfig));
        foreach (string file in new[] { "chat_template.jinja", "generation_config.json", "tokenizer_config.json" })
            Assert.Equal(File.ReadAllBytes(Path.Combine(TestPaths.TinyBf16, file)), File.ReadAllBytes(Path.Combine(output, file)));
        Assert.Contains(warnings, w => w.Contains("tokenizer.json is missing"));

        // The index names every tensor; the folder loads as a Gemma-4 checkpoint.
        var index = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "model.safetensors.index.json")))!;
        Assert.Equal(expected.Names.Order(StringComparer.Ordinal), index["weight_map"]!.AsObject().Select(p => p.Key));
        Assert.All(index["weight_map"]!.AsObject(), p => Assert.Equal("model.safetensors", (string?)p.Value));
        Assert.Equal(actual.TotalBytes, (long)index["metadata"]!["total_size"]!);
        using var checkpoint = Gemma4Checkpoint.Open(output);
        Assert.Equal(4, Assert.IsType<Pipeline.Kernels.QuantizedWeight>(checkpoint.Layer(0).QProj).Bits);
        Assert.Equal([Path.GetFileName(output)], Directory.GetFileSystemEntries(temp.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void OutputLargerThanTheShardLimit_IsSplitIntoNamedShardsWithAnIndex()
    {
        using var temp = TestPaths.NewTempFolder();
        var options = new ConvertOptions
        {
            InputDir = MalformedInputTests.SmallModel(temp.Path),
            OutputDir = Path.Combine(temp.Path, "out"),
            Quantize = true,
            Recipe = "unsloth",
            Bits = 2,
            MaxShardBytes = 6000,
        };
        string output = Converter.Run(options, null, _ => { });
        using var single = TestPaths.NewTempFolder();
        string reference = Converter.Run(options with { OutputDir = Path.Combine(single.Path, "one"), MaxShardBytes = 5L << 30 }, null, _ => { });

        var files = Directory.GetFiles(output, "*.safetensors").Select(Path.GetFileName).Order().ToList();
        Assert.True(files.Count >= 3, string.Join(", ", files));
        Assert.Equal(Enumerable.Range(1, files.Count).Select(i => $"model-{i:D5}-of-{files.Count:D5}.safetensors"), files);
        using var sharded = SafetensorsSet.Open(output);
        using var whole = SafetensorsSet.Open(reference);
        Assert.Equal(whole.Names.Order(StringComparer.Ordinal), sharded.Names.Order(StringComparer.Ordinal));
        foreach (string name in whole.Names)
            Assert.True(whole.Bytes(name).SequenceEqual(sharded.Bytes(name)), name);
        // Names run in sorted order across the shards.
        var order = sharded.Files.SelectMany(f => f.Tensors.Keys).ToList();
        Assert.Equal(order.Order(StringComparer.Ordinal), order);
    }
}
