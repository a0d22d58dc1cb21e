using System.Text.Json.Nodes;
using Pipeline.Kernels;
using Pipeline.Model.Checkpoint;

namespace Pipeline.Model.Tests.Checkpoint;

public class SafetensorsSetTests
{
    /// <summary>Splits a folder's model.safetensors into shards plus an index (streamed, tensor by tensor).</summary>
    private static Dictionary<string, string> Shard(string sourceDir, string targetDir, int shards)
    {
        foreach (var file in Directory.GetFiles(sourceDir).Where(f => !f.EndsWith(".safetensors", StringComparison.Ordinal)))
            File.Copy(file, Path.Combine(targetDir, Path.GetFileName(file)));
        using var source = SafetensorsFile.Open(Path.Combine(sourceDir, "model.safetensors"));
        var names = source.Tensors.Keys.ToList();
        var weightMap = new Dictionary<string, string>();
        for (int s = 0; s < shards; s++)
        {
            string shardName = $"model-{s + 1:00000}-of-{shards:00000}.safetensors";
            var mine = names.Where((_, i) => i % shards == s).ToList();
            var specs = mine.Select(n => new TensorSpec(n, source.Tensors[n].DType, source.Tensors[n].Shape)).ToList();
            using var writer = new SafetensorsWriter(Path.Combine(targetDir, shardName), specs);
            foreach (var name in mine)
            {
                if (source.Tensors[name].ByteLength > 0)
                    writer.WriteTensor(name, source.Bytes(name));
                weightMap[name] = shardName;
            }
            writer.Finish();
        }
        var map = new JsonObject();
        foreach (var (name, shard) in weightMap)
            map[name] = shard;
        var index = new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = 0 }, ["weight_map"] = map };
        File.WriteAllText(Path.Combine(targetDir, SafetensorsSet.IndexFileName), index.ToJsonString());
        return weightMap;
    }

    [Fact]
    public void ShardedTinyA_LoadsTheSameWeightsAsTheSingleFile()
    {
        using var temp = new TempFolder();
        Shard(CheckpointFixtures.TinyA("ud-q2kxl"), temp.Path, shards: 3);
        using var single = Gemma4Checkpoint.Open(CheckpointFixtures.TinyA("ud-q2kxl"));
        using var sharded = Gemma4Checkpoint.Open(temp.Path);

        Assert.Equal(3, sharded.Tensors.Files.Count);
        Assert.Equal(single.Tensors.Names.Order(), sharded.Tensors.Names.Order());
        Assert.Equal(single.TotalWeightBytes, sharded.TotalWeightBytes);
        foreach (var name in single.Tensors.Names)
            Assert.True(single.Tensors.Bytes(name).SequenceEqual(sharded.Tensors.Bytes(name)), name);

        for (int i = 0; i < single.Text.NumHiddenLayers; i++)
        {
            var a = Assert.IsType<QuantizedWeight>(single.Layer(i).Down);
            var b = Assert.IsType<QuantizedWeight>(sharded.Layer(i).Down);
            Assert.Equal((a.Rows, a.Cols, a.Bits), (b.Rows, b.Cols, b.Bits));
            Assert.NotEqual(a.Packed, b.Packed); // a different mapping, same bytes
            Assert.Equal(single.Layer(i).LayerScalar, sharded.Layer(i).LayerScalar);
        }
    }

    [Fact]
    public void IndexNamingAMissingShard_IsRefused()
    {
        using var temp = new TempFolder();
        var weightMap = Shard(CheckpointFixtures.TinyA("ud-q2kxl"), temp.Path, shards: 2);
        File.Delete(temp.File("model-00002-of-00002.safetensors"));
        string firstTensor = weightMap.First(e => e.Value == "model-00002-of-00002.safetensors").Key;

        var error = Assert.Throws<CheckpointFormatException>(() => SafetensorsSet.Open(temp.Path));
        string index = temp.File(SafetensorsSet.IndexFileName);
        Assert.Equal(index, error.FilePath);
        Assert.Equal(firstTensor, error.TensorName);
        Assert.Equal(
            $"{index}: tensor '{firstTensor}': shard 'model-00002-of-00002.safetensors' named by the index does not exist ({temp.File("model-00002-of-00002.safetensors")})",
            error.Message);
    }

    [Fact]
    public void IndexEntryAbsentFromItsShard_IsRefused()
    {
        using var temp = new TempFolder();
        SafetensorsWriter.Write(temp.File("a.safetensors"), [(new TensorSpec("x", TensorDType.U8, [1]), new byte[1])]);
        File.WriteAllText(temp.File(SafetensorsSet.IndexFileName), """{"weight_map": {"x": "a.safetensors", "y": "a.safetensors"}}""");
        var error = Assert.Throws<CheckpointFormatException>(() => SafetensorsSet.Open(temp.Path));
        Assert.Equal($"{temp.File(SafetensorsSet.IndexFileName)}: tensor 'y': the index places this tensor in shard 'a.safetensors', which does not contain it", error.Message);
    }

    [Fact]
    public void ShardOutsideTheFolder_IsRefused()
    {
        using var temp = new TempFolder();
        File.WriteAllText(temp.File(SafetensorsSet.IndexFileName), """{"weight_map": {"x": "../a.safetensors"}}""");
        var error = Assert.Throws<CheckpointFormatException>(() => SafetensorsSet.Open(temp.Path));
        Assert.Equal("x", error.TensorName);
        Assert.EndsWith("shard '../a.safetensors' must be a plain file name in the checkpoint folder", error.Message);
    }

    [Fact]
    public void BadIndexJson_IsRefused()
    {
        using var temp = new TempFolder();
        File.WriteAllText(temp.File(SafetensorsSet.IndexFileName), """{"weight_map": {"x": "a.safetensors",}}""");
        var error = Assert.Throws<CheckpointFormatException>(() => SafetensorsSet.Open(temp.Path));
        Assert.StartsWith($"{temp.File(SafetensorsSet.IndexFileName)}: index is not valid JSON (", error.Message);
    }

    [Fact]
    public void FolderWithoutWeights_IsRefused()
    {
        using var temp = new TempFolder();
        var error = Assert.Throws<CheckpointFormatException>(() => SafetensorsSet.Open(temp.Path));
        Assert.Equal($"{temp.Path}: neither model.safetensors nor model.safetensors.index.json exists in this folder", error.Message);
    }

    [Fact]
    public void SameTensorInTwoShardsOutsideTheIndex_IsRefused()
    {
        using var temp = new TempFolder();
        SafetensorsWriter.Write(temp.File("a.safetensors"), [(new TensorSpec("x", TensorDType.U8, [1]), new byte[1]), (new TensorSpec("dup", TensorDType.U8, [1]), new byte[1])]);
        SafetensorsWriter.Write(temp.File("b.safetensors"), [(new TensorSpec("y", TensorDType.U8, [1]), new byte[1]), (new TensorSpec("dup", TensorDType.U8, [1]), new byte[1])]);
        File.WriteAllText(temp.File(SafetensorsSet.IndexFileName), """{"weight_map": {"x": "a.safetensors", "y": "b.safetensors"}}""");
        var error = Assert.Throws<CheckpointFormatException>(() => SafetensorsSet.Open(temp.Path));
        Assert.Equal($"{temp.File("b.safetensors")}: tensor 'dup': tensor also appears in shard 'a.safetensors'", error.Message);
    }
}
