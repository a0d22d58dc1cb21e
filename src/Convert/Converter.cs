using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Win32.SafeHandles;
using Pipeline.Kernels;
using Pipeline.Kernels.Quantization;
using Pipeline.Model.Checkpoint;

namespace Pipeline.Convert;

/// <summary>
/// An input checkpoint opened and planned: the tensor plan, the AWQ folds and the config to write.
/// Everything here is checked before any output is created.
/// </summary>
public sealed class PreparedConversion : IDisposable
{
    public required ConvertOptions Options { get; init; }
    public required SafetensorsSet Input { get; init; }
    public required ConversionPlan Plan { get; init; }
    public required AwqFolding Folding { get; init; }
    public required JsonObject Config { get; init; }

    public void Dispose() => Input.Dispose();
}

/// <summary>
/// <c>pipeline convert</c>: HF Gemma-4 (bf16/f16/f32 safetensors) to the MLX layout, optionally quantized
/// with a recipe and AWQ-prescaled from an imatrix. Streams tensor by tensor with bounded memory (a few
/// tens of MB of buffers; input read with positioned reads, not mapped), writes into a temporary folder
/// next to the output and renames it at the end, so a failure leaves no output folder behind.
/// </summary>
public static class Converter
{
    /// <summary>Files copied unchanged from the input folder when present.</summary>
    public static readonly IReadOnlyList<string> CopiedFiles =
    [
        "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
        "chat_template.jinja", "chat_template.json", "generation_config.json",
        "processor_config.json", "preprocessor_config.json", "video_preprocessor_config.json",
        "NOTICE.md", "LICENSE",
    ];

    private const long ChunkElements = 4 << 20; // floats per work chunk: 16 MB

    public static PreparedConversion Prepare(ConvertOptions options, Action<string> warn)
    {
        // Recipe and bits are checked even without -q so a typo never passes silently.
        var recipe = QuantRecipe.Create(options.Recipe, options.Bits, options.GroupSize);
        string input = Path.GetFullPath(options.InputDir);
        if (!Directory.Exists(input))
            throw new ConvertException($"input folder {input} does not exist");
        string configPath = Path.Combine(input, Gemma4ModelConfig.FileName);
        if (!File.Exists(configPath))
            throw new ConvertException($"{configPath}: config.json is missing from the input folder");
        var modelConfig = Gemma4ModelConfig.Load(configPath);
        if (modelConfig.Quantization is not null)
            throw new ConvertException(
                $"{configPath}: the input is already quantized (config.json has \"{modelConfig.Quantization.Field}\"); convert from the bf16/f16/f32 original");
        var config = JsonNode.Parse(File.ReadAllText(configPath)) as JsonObject
            ?? throw new ConvertException($"{configPath}: config.json is not a JSON object");

        var set = SafetensorsSet.Open(input);
        try
        {
            var sources = set.Names.Select(n => set.Get(n)).Select(t => new SourceTensor(t.Name, TensorDTypes.HeaderName(t.DType), t.Shape));
            var plan = ConversionPlan.Build(sources, options.Quantize ? recipe : null, options.OutputType);
            var folding = AwqFolding.None;
            if (options.ImatrixPath is not null)
            {
                string imatrixPath = Path.GetFullPath(options.ImatrixPath);
                var imatrix = ImatrixFile.Read(imatrixPath);
                var importances = ImatrixNames.Importances(imatrix, plan, imatrixPath);
                using var reader = new SourceReader();
                folding = AwqFolding.Compute(plan, importances, warn, (tensor, row, destination) =>
                {
                    int size = Scalars.SizeOf(tensor.SourceType);
                    var bytes = new byte[destination.Length * size];
                    reader.Read(set.Get(tensor.SourceName), row * destination.Length * size, bytes);
                    ToFloat(bytes, tensor.SourceType, destination);
                });
                if (folding.FoldedGroups == 0)
                    warn($"AWQ: {imatrixPath} matched no decoder layer of this model; nothing is rescaled");
            }
            return new PreparedConversion { Options = options, Input = set, Plan = plan, Folding = folding, Config = config };
        }
        catch
        {
            set.Dispose();
            throw;
        }
    }

    /// <summary>Converts; returns the output folder. <paramref name="progress"/> receives the progress bar.</summary>
    public static string Run(ConvertOptions options, TextWriter? progress, Action<string> warn, CancellationToken cancel = default)
    {
        string output = Path.GetFullPath(options.OutputDir.TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar));
        if (Directory.Exists(output) || File.Exists(output))
            throw new ConvertException($"output {output} already exists; choose a new folder");
        using var prepared = Prepare(options, warn);
        if (Path.GetFullPath(options.InputDir).TrimEnd(Path.DirectorySeparatorChar) == output)
            throw new ConvertException($"output {output} is the input folder");

        string parent = Path.GetDirectoryName(output) ?? throw new ConvertException($"output {output} has no parent folder");
        Directory.CreateDirectory(parent);
        string staging = Path.Combine(parent, $".{Path.GetFileName(output)}.converting-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(staging);
        try
        {
            WriteCheckpoint(prepared, staging, progress, cancel);
            WriteConfig(prepared, staging);
            CopyFiles(Path.GetFullPath(options.InputDir), staging, warn);
            cancel.ThrowIfCancellationRequested();
            Directory.Move(staging, output);
        }
        catch
        {
            try
            {
                Directory.Delete(staging, recursive: true);
            }
            catch (IOException)
            {
                warn($"could not remove the temporary folder {staging}; delete it by hand");
            }
            throw;
        }
        return output;
    }

    private static void WriteConfig(PreparedConversion prepared, string folder)
    {
        var config = (JsonObject)prepared.Config.DeepClone();
        config.Remove("quantization");
        config.Remove("quantization_config");
        if (prepared.Plan.QuantizationConfig() is { } block)
        {
            config["quantization"] = block;
            config["quantization_config"] = block.DeepClone();
        }
        File.WriteAllText(Path.Combine(folder, Gemma4ModelConfig.FileName),
            config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    private static void CopyFiles(string input, string folder, Action<string> warn)
    {
        foreach (string name in CopiedFiles)
        {
            string source = Path.Combine(input, name);
            if (File.Exists(source))
                File.Copy(source, Path.Combine(folder, name));
            else if (name is "tokenizer.json" or "tokenizer_config.json" or "generation_config.json")
                warn($"{source} is missing; the output folder will not have it");
        }
    }

    private static void WriteCheckpoint(PreparedConversion prepared, string folder, TextWriter? progressWriter, CancellationToken cancel)
    {
        var plan = prepared.Plan;
        var shards = plan.Shards(prepared.Options.MaxShardBytes);
        var producers = plan.Tensors.SelectMany(t => t.Outputs.Select(o => (o.Name, t))).ToDictionary(p => p.Name, p => p.t, StringComparer.Ordinal);
        var progress = progressWriter is null ? null : new ProgressBar(progressWriter, plan.TotalSourceBytes, "convert");
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string> { ["format"] = "mlx" };
        using var reader = new SourceReader();
        var pending = new PendingQuantization();

        for (int i = 0; i < shards.Count; i++)
        {
            string fileName = ConversionPlan.ShardFileName(i, shards.Count);
            var specs = shards[i].Select(o => new TensorSpec(o.Name, ParseDType(o.DType), o.Shape)).ToList();
            using var writer = new SafetensorsWriter(Path.Combine(folder, fileName), specs, metadata);
            foreach (var output in shards[i])
            {
                cancel.ThrowIfCancellationRequested();
                var tensor = producers[output.Name];
                var info = prepared.Input.Get(tensor.SourceName);
                var fold = prepared.Folding.For(tensor.Target.Full);
                if (tensor.Quant is not QuantSpec quant)
                    WriteDense(writer, output.Name, tensor, info, fold, reader, progress, cancel);
                else if (output.Name.EndsWith(".weight", StringComparison.Ordinal))
                    WritePacked(writer, output.Name, tensor, quant, info, fold, reader, progress, cancel);
                else
                    writer.WriteTensor(output.Name, pending.Get(output.Name, tensor, quant, info, fold, reader, cancel));
                weightMap[output.Name] = fileName;
            }
            writer.Finish();
        }
        progress?.Finish();

        var index = new JsonObject
        {
            ["metadata"] = new JsonObject { ["total_size"] = plan.TotalOutputBytes },
            ["weight_map"] = new JsonObject(weightMap.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)JsonValue.Create(p.Value)))),
        };
        File.WriteAllText(Path.Combine(folder, SafetensorsSet.IndexFileName),
            index.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    private static TensorDType ParseDType(string name) =>
        TensorDTypes.TryParse(name, out var type) ? type : throw new ArgumentException($"unknown output dtype {name}");

    private static (long Rows, int Cols) Geometry(PlannedTensor tensor)
    {
        if (tensor.Shape.Length == 2)
            return (tensor.Shape[0], checked((int)tensor.Shape[1]));
        long elements = tensor.Shape.Aggregate(1L, (a, b) => a * b);
        // Folds only touch 1-D norms (one row); other ranks are streamed as flat runs.
        if (tensor.Shape.Length == 1 || elements <= ChunkElements)
            return (1, checked((int)elements));
        int cols = checked((int)tensor.Shape[^1]);
        return (elements / cols, cols);
    }

    private static int RowsPerChunk(int cols) => (int)Math.Max(1, ChunkElements / cols);

    private static void WriteDense(
        SafetensorsWriter writer, string name, PlannedTensor tensor, TensorInfo info, TensorFold? fold,
        SourceReader reader, ProgressBar? progress, CancellationToken cancel)
    {
        var (rows, cols) = Geometry(tensor);
        if (rows == 0 || cols == 0)
            return; // nothing to write; the writer skips empty tensors
        int sourceSize = Scalars.SizeOf(tensor.SourceType);
        int outputSize = Scalars.SizeOf(tensor.OutputType);
        int chunkRows = RowsPerChunk(cols);
        var sourceBytes = new byte[(long)Math.Min(chunkRows, rows) * cols * sourceSize];
        bool copy = fold is null && tensor.SourceType == tensor.OutputType;
        var values = copy ? [] : new float[(long)Math.Min(chunkRows, rows) * cols];
        var outputBytes = copy ? sourceBytes : new byte[values.Length * outputSize];
        for (long row = 0; row < rows; row += chunkRows)
        {
            cancel.ThrowIfCancellationRequested();
            int n = (int)Math.Min(chunkRows, rows - row);
            var src = sourceBytes.AsSpan(0, n * cols * sourceSize);
            reader.Read(info, row * cols * sourceSize, src);
            if (copy)
            {
                writer.WriteTensor(name, src);
            }
            else
            {
                var v = values.AsSpan(0, n * cols);
                ToFloat(src, tensor.SourceType, v);
                if (fold is not null)
                    AwqFolding.Apply(fold, v, row, cols);
                var dst = outputBytes.AsSpan(0, n * cols * outputSize);
                FromFloat(v, tensor.OutputType, dst);
                writer.WriteTensor(name, dst);
            }
            progress?.Advance(src.Length);
        }
    }

    private static void WritePacked(
        SafetensorsWriter writer, string name, PlannedTensor tensor, QuantSpec quant, TensorInfo info, TensorFold? fold,
        SourceReader reader, ProgressBar? progress, CancellationToken cancel)
    {
        int cols = tensor.Cols;
        int words = MlxQuantFormat.WordsPerRow(cols, quant.Bits);
        var values = new float[(long)Math.Min(RowsPerChunk(cols), tensor.Rows) * cols];
        var packed = new uint[values.Length / cols * words];
        int groupBytes = cols / quant.GroupSize * Scalars.SizeOf(tensor.OutputType);
        var scratchScales = new byte[values.Length / cols * groupBytes];
        var scratchBiases = new byte[scratchScales.Length];
        foreach (var (row, n) in QuantizeChunks(tensor, quant, info, fold, reader, values, packed, scratchScales, scratchBiases, cancel))
        {
            writer.WriteTensor(name, MemoryMarshal.AsBytes(packed.AsSpan(0, n * words)));
            progress?.Advance((long)n * cols * Scalars.SizeOf(tensor.SourceType));
        }
    }

    /// <summary>
    /// Loads, folds and quantizes the tensor a chunk of rows at a time (rows split across cores);
    /// yields (first row, row count) with the chunk's codes, scales and biases in the given buffers.
    /// </summary>
    private static IEnumerable<(long Row, int Count)> QuantizeChunks(
        PlannedTensor tensor, QuantSpec quant, TensorInfo info, TensorFold? fold, SourceReader reader,
        float[] values, uint[] packed, byte[] scales, byte[] biases, CancellationToken cancel)
    {
        int cols = tensor.Cols;
        int chunkRows = values.Length / cols;
        int sourceSize = Scalars.SizeOf(tensor.SourceType);
        int words = MlxQuantFormat.WordsPerRow(cols, quant.Bits);
        int groupBytes = cols / quant.GroupSize * Scalars.SizeOf(tensor.OutputType);
        var sourceBytes = new byte[(long)chunkRows * cols * sourceSize];
        int parts = Math.Max(1, Environment.ProcessorCount);
        int blockRows = Math.Max(1, 16384 / cols);
        for (long row = 0; row < tensor.Rows; row += chunkRows)
        {
            cancel.ThrowIfCancellationRequested();
            int n = (int)Math.Min(chunkRows, tensor.Rows - row);
            reader.Read(info, row * cols * sourceSize, sourceBytes.AsSpan(0, n * cols * sourceSize));
            long firstRow = row;
            int perPart = (n + parts - 1) / parts;
            Parallel.For(0, parts, part =>
            {
                int end = Math.Min(n, (part + 1) * perPart);
                // Many short calls rather than one long one: the quantizer's loops reach optimized code
                // through call counting (a method with stackalloc gets no on-stack replacement).
                for (int r0 = part * perPart; r0 < end; r0 += blockRows)
                {
                    int count = Math.Min(blockRows, end - r0);
                    var v = values.AsSpan(r0 * cols, count * cols);
                    ToFloat(sourceBytes.AsSpan(r0 * cols * sourceSize, count * cols * sourceSize), tensor.SourceType, v);
                    if (fold is not null)
                        AwqFolding.Apply(fold, v, firstRow + r0, cols);
                    MlxAffine.QuantizeRows(v, cols, quant.Bits, quant.GroupSize, tensor.OutputType,
                        packed.AsSpan(r0 * words, count * words),
                        scales.AsSpan(r0 * groupBytes, count * groupBytes),
                        biases.AsSpan(r0 * groupBytes, count * groupBytes));
                }
            });
            yield return (row, n);
        }
    }

    /// <summary>
    /// Scales and biases precede the packed weight in name order, so they come from a first quantization
    /// pass and are held (2 x rows x groups values) until both are written; the weight is a second pass.
    /// </summary>
    private sealed class PendingQuantization
    {
        private string? _module;
        private byte[] _scales = [];
        private byte[] _biases = [];

        public byte[] Get(string name, PlannedTensor tensor, QuantSpec quant, TensorInfo info, TensorFold? fold, SourceReader reader, CancellationToken cancel)
        {
            if (_module != tensor.Target.Module)
            {
                int cols = tensor.Cols;
                long groupBytes = cols / quant.GroupSize * Scalars.SizeOf(tensor.OutputType);
                _scales = new byte[tensor.Rows * groupBytes];
                _biases = new byte[tensor.Rows * groupBytes];
                var values = new float[(long)Math.Min(RowsPerChunk(cols), tensor.Rows) * cols];
                int chunkRows = values.Length / cols;
                var packed = new uint[chunkRows * MlxQuantFormat.WordsPerRow(cols, quant.Bits)];
                var chunkScales = new byte[chunkRows * groupBytes];
                var chunkBiases = new byte[chunkRows * groupBytes];
                foreach (var (row, n) in QuantizeChunks(tensor, quant, info, fold, reader, values, packed, chunkScales, chunkBiases, cancel))
                {
                    chunkScales.AsSpan(0, (int)(n * groupBytes)).CopyTo(_scales.AsSpan((int)(row * groupBytes)));
                    chunkBiases.AsSpan(0, (int)(n * groupBytes)).CopyTo(_biases.AsSpan((int)(row * groupBytes)));
                }
                _module = tensor.Target.Module;
            }
            return name.EndsWith(".scales", StringComparison.Ordinal) ? _scales : _biases;
        }
    }

    /// <summary>Positioned reads from the input shards (one handle per file), so input pages are never mapped.</summary>
    private sealed class SourceReader : IDisposable
    {
        private readonly Dictionary<string, SafeFileHandle> _handles = new(StringComparer.Ordinal);

        public void Read(TensorInfo info, long offset, Span<byte> destination)
        {
            if (!_handles.TryGetValue(info.FilePath, out var handle))
            {
                handle = File.OpenHandle(info.FilePath, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.SequentialScan);
                _handles.Add(info.FilePath, handle);
            }
            long position = info.FileOffset + offset;
            while (destination.Length > 0)
            {
                int read = RandomAccess.Read(handle, destination, position);
                if (read == 0)
                    throw new ConvertException($"{info.FilePath}: tensor '{info.Name}': file ended at byte {position} (truncated while converting?)");
                destination = destination[read..];
                position += read;
            }
        }

        public void Dispose()
        {
            foreach (var handle in _handles.Values)
                handle.Dispose();
        }
    }

    internal static void ToFloat(ReadOnlySpan<byte> source, ScalarType type, Span<float> destination)
    {
        switch (type)
        {
            case ScalarType.F32:
                MemoryMarshal.Cast<byte, float>(source).CopyTo(destination);
                break;
            case ScalarType.BF16:
                var bf16 = MemoryMarshal.Cast<byte, ushort>(source);
                for (int i = 0; i < destination.Length; i++)
                    destination[i] = Scalars.Bf16ToFloat(bf16[i]);
                break;
            default:
                var f16 = MemoryMarshal.Cast<byte, ushort>(source);
                for (int i = 0; i < destination.Length; i++)
                    destination[i] = Scalars.F16ToFloat(f16[i]);
                break;
        }
    }

    internal static void FromFloat(ReadOnlySpan<float> source, ScalarType type, Span<byte> destination)
    {
        switch (type)
        {
            case ScalarType.F32:
                MemoryMarshal.AsBytes(source).CopyTo(destination);
                break;
            case ScalarType.BF16:
                for (int i = 0; i < source.Length; i++)
                    BinaryPrimitives.WriteUInt16LittleEndian(destination[(2 * i)..], Scalars.FloatToBf16(source[i]));
                break;
            default:
                for (int i = 0; i < source.Length; i++)
                    BinaryPrimitives.WriteUInt16LittleEndian(destination[(2 * i)..], Scalars.FloatToF16(source[i]));
                break;
        }
    }
}
