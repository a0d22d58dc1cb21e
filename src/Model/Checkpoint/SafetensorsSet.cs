using System.Text.Json;

namespace Pipeline.Model.Checkpoint;

/// <summary>
/// All safetensors files of a checkpoint folder: either one <c>model.safetensors</c> or the shards
/// listed by <c>model.safetensors.index.json</c> ({"weight_map": {tensor: shard file}}).
/// </summary>
public sealed class SafetensorsSet : IDisposable
{
    public const string SingleFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";

    private readonly List<SafetensorsFile> _files;
    private readonly Dictionary<string, TensorInfo> _tensors;

    private SafetensorsSet(string directory, string sourcePath, List<SafetensorsFile> files, Dictionary<string, TensorInfo> tensors)
    {
        Directory = directory;
        SourcePath = sourcePath;
        _files = files;
        _tensors = tensors;
    }

    public string Directory { get; }

    /// <summary>model.safetensors, or the index for a sharded checkpoint: the file errors about missing tensors name.</summary>
    public string SourcePath { get; }
    public IReadOnlyList<SafetensorsFile> Files => _files;
    public IEnumerable<string> Names => _tensors.Keys;
    public int Count => _tensors.Count;

    /// <summary>Sum of all tensor bytes over all files.</summary>
    public long TotalBytes => _tensors.Values.Sum(t => t.ByteLength);

    public static SafetensorsSet Open(string directory)
    {
        directory = Path.GetFullPath(directory);
        string indexPath = Path.Combine(directory, IndexFileName);
        string singlePath = Path.Combine(directory, SingleFileName);
        if (File.Exists(indexPath))
            return OpenIndexed(directory, indexPath);
        if (File.Exists(singlePath))
        {
            var file = SafetensorsFile.Open(singlePath);
            return new SafetensorsSet(directory, singlePath, [file], new Dictionary<string, TensorInfo>(file.Tensors, StringComparer.Ordinal));
        }
        throw new CheckpointFormatException(directory, null, $"neither {SingleFileName} nor {IndexFileName} exists in this folder");
    }

    public TensorInfo Get(string name) =>
        _tensors.TryGetValue(name, out var info)
            ? info
            : throw new CheckpointFormatException(SourcePath, name, "tensor is missing from the checkpoint");

    public bool TryGet(string name, out TensorInfo info) => _tensors.TryGetValue(name, out info!);

    public ReadOnlySpan<byte> Bytes(string name) => SafetensorsFile.BytesOf(Get(name));


    private static SafetensorsSet OpenIndexed(string directory, string indexPath)
    {
        var weightMap = ReadWeightMap(indexPath);
        var files = new List<SafetensorsFile>();
        try
        {
            var shardByName = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            foreach (var (tensor, shard) in weightMap)
            {
                if (shardByName.ContainsKey(shard))
                    continue;
                string shardPath = Path.Combine(directory, shard);
                if (!File.Exists(shardPath))
                    throw new CheckpointFormatException(indexPath, tensor, $"shard '{shard}' named by the index does not exist ({shardPath})");
                var file = SafetensorsFile.Open(shardPath);
                files.Add(file);
                shardByName.Add(shard, file);
            }

            var tensors = new Dictionary<string, TensorInfo>(StringComparer.Ordinal);
            foreach (var (tensor, shard) in weightMap)
            {
                if (!shardByName[shard].Tensors.TryGetValue(tensor, out var info))
                    throw new CheckpointFormatException(indexPath, tensor, $"the index places this tensor in shard '{shard}', which does not contain it");
                tensors.Add(tensor, info);
            }
            // Tensors a shard holds beyond the index still load (MLX loads every shard whole), but a name
            // in two shards is ambiguous.
            foreach (var file in files)
            {
                foreach (var (name, info) in file.Tensors)
                {
                    if (weightMap.ContainsKey(name))
                        continue;
                    if (!tensors.TryAdd(name, info))
                        throw new CheckpointFormatException(file.FilePath, name, $"tensor also appears in shard '{Path.GetFileName(tensors[name].FilePath)}'");
                }
            }
            return new SafetensorsSet(directory, indexPath, files, tensors);
        }
        catch
        {
            foreach (var file in files)
                file.Dispose();
            throw;
        }
    }

    private static Dictionary<string, string> ReadWeightMap(string indexPath)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(indexPath));
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException(indexPath, null, $"index is not valid JSON ({e.Message})", e);
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object
                || !document.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new CheckpointFormatException(indexPath, null, "index has no \"weight_map\" object");
            var entries = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var entry in map.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.String)
                    throw new CheckpointFormatException(indexPath, entry.Name, $"weight_map value must be a shard file name, found {entry.Value.GetRawText()}");
                string shard = entry.Value.GetString()!;
                if (shard.Length == 0 || Path.GetFileName(shard) != shard)
                    throw new CheckpointFormatException(indexPath, entry.Name, $"shard '{shard}' must be a plain file name in the checkpoint folder");
                if (!entries.TryAdd(entry.Name, shard))
                    throw new CheckpointFormatException(indexPath, entry.Name, "appears twice in weight_map");
            }
            if (entries.Count == 0)
                throw new CheckpointFormatException(indexPath, null, "weight_map is empty");
            return entries;
        }
    }

    public void Dispose()
    {
        foreach (var file in _files)
            file.Dispose();
        _files.Clear();
    }
}
