using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Pipeline.Kernels;
using Pipeline.Kernels.Quantization;
using Pipeline.Model.Checkpoint;

namespace Pipeline.Model.TestModels;

/// <summary>
/// Writes a deterministic random Gemma-4 checkpoint folder: safetensors (MLX UD-Q2_K_XL or Hugging
/// Face bf16 layout), config.json, tokenizer and chat-template files. Tensors are generated and
/// quantized a block of rows at a time and streamed to disk, so memory stays bounded: buffers are
/// sized once (for the 31B shapes about 130 MB: a 16 MB f32 block, its packed and bf16 forms, and the
/// embedding's scales and biases, which are written after its packed words).
/// </summary>
public static class TestModelGenerator
{
    /// <summary>f32 values generated per block (16 MB).</summary>
    private const int BlockElements = 1 << 22;

    /// <summary>
    /// Generates the model into <paramref name="directory"/>, which must not exist or be empty.
    /// <paramref name="progress"/> receives (tensor bytes written so far, total tensor bytes).
    /// </summary>
    public static TestModelPlan Generate(
        TestModelPreset preset, TestModelQuant quant, ulong seed, string directory,
        Action<long, long>? progress = null, CancellationToken cancellation = default)
    {
        var plan = TestModelPlan.Create(preset, quant);
        Generate(plan, seed, directory, progress, cancellation);
        return plan;
    }

    /// <summary>
    /// Writes a planned model (see <see cref="Generate(TestModelPreset, TestModelQuant, ulong, string, Action{long, long}?, CancellationToken)"/>).
    /// On failure or cancellation the files written so far are removed again.
    /// </summary>
    public static void Generate(
        TestModelPlan plan, ulong seed, string directory,
        Action<long, long>? progress = null, CancellationToken cancellation = default)
    {
        directory = Path.GetFullPath(directory);
        if (Directory.Exists(directory) && Directory.EnumerateFileSystemEntries(directory).Any())
            throw new IOException($"output folder '{directory}' is not empty; give a new or empty folder");
        Directory.CreateDirectory(directory);
        try
        {
            WriteFolder(plan, seed, directory, progress, cancellation);
        }
        catch
        {
            // The folder was empty before: everything in it is ours.
            foreach (string file in Directory.EnumerateFiles(directory))
                File.Delete(file);
            throw;
        }
    }

    private static void WriteFolder(
        TestModelPlan plan, ulong seed, string directory, Action<long, long>? progress, CancellationToken cancellation)
    {
        TestModelAssets.WriteTo(directory);
        var output = new Output(plan.TotalBytes, progress, new Buffers(plan.Weights));
        var metadata = new Dictionary<string, string> { ["format"] = plan.Quant == TestModelQuant.Bf16 ? "pt" : "mlx" };
        foreach (var shard in plan.Shards)
        {
            using var writer = new SafetensorsWriter(Path.Combine(directory, shard.FileName), shard.Tensors, metadata);
            output.Writer = writer;
            var tensors = shard.Tensors.GetEnumerator();
            foreach (var weight in shard.Weights)
            {
                if (weight.IsQuantized)
                    WriteQuantized(output, weight, NextName(tensors), NextName(tensors), NextName(tensors), seed, cancellation);
                else
                    WriteDense(output, weight, NextName(tensors), seed, cancellation);
            }
            writer.Finish();
        }
        if (plan.Shards.Count > 1)
            File.WriteAllText(Path.Combine(directory, SafetensorsSet.IndexFileName), IndexJson(plan));
        // config.json last: a folder with a config.json is complete.
        File.WriteAllText(Path.Combine(directory, "config.json"), TestModelConfig.ToJson(plan, seed));
    }

    private static string NextName(IEnumerator<TensorSpec> tensors)
    {
        tensors.MoveNext();
        return tensors.Current.Name;
    }

    private static void WriteDense(Output output, PlannedWeight w, string name, ulong seed, CancellationToken cancellation)
    {
        int rows = w.Rows, cols = w.Cols;
        int blockRows = BlockRows(w);
        var values = output.Buffers.Values; // [blockRows, cols]
        var bf16 = output.Buffers.Bf16;     // [blockRows, cols]
        for (int first = 0; first < rows; first += blockRows)
        {
            cancellation.ThrowIfCancellationRequested();
            int count = Math.Min(blockRows, rows - first);
            ForRowChunks(count, (start, n) =>
            {
                for (int r = start; r < start + n; r++)
                {
                    var row = values.AsSpan(r * cols, cols);
                    WeightRandom.FillRow(row, seed, w.Path, first + r, w.Init, cols);
                    var target = bf16.AsSpan(r * cols, cols);
                    for (int c = 0; c < cols; c++) // values are bf16-exact: the top half is the bf16
                        target[c] = (ushort)(BitConverter.SingleToUInt32Bits(row[c]) >> 16);
                }
            }, cancellation);
            output.Write(name, MemoryMarshal.AsBytes(bf16.AsSpan(0, count * cols)));
        }
    }

    private static void WriteQuantized(
        Output output, PlannedWeight w, string weightName, string scalesName, string biasesName, ulong seed,
        CancellationToken cancellation)
    {
        int rows = w.Rows, cols = w.Cols, bits = w.Bits;
        int words = MlxQuantFormat.WordsPerRow(cols, bits);
        int groupBytes = GroupBytes(w);
        int blockRows = BlockRows(w);
        var values = output.Buffers.Values;                      // [blockRows, cols]
        var packed = output.Buffers.Packed;                      // [blockRows, words]
        var scales = output.Buffers.Scales.AsSpan(0, rows * groupBytes); // [rows, groups] bf16
        var biases = output.Buffers.Biases.AsSpan(0, rows * groupBytes); // [rows, groups] bf16
        for (int first = 0; first < rows; first += blockRows)
        {
            cancellation.ThrowIfCancellationRequested();
            int count = Math.Min(blockRows, rows - first);
            ForRowChunks(count, (start, n) =>
            {
                for (int r = start; r < start + n; r++)
                    WeightRandom.FillRow(values.AsSpan(r * cols, cols), seed, w.Path, first + r, w.Init, cols);
                MlxAffineFast.QuantizeRows(
                    values.AsSpan(start * cols, n * cols), cols, bits, TestModelPlan.GroupSize, ScalarType.BF16,
                    packed.AsSpan(start * words, n * words),
                    output.Buffers.Scales.AsSpan((first + start) * groupBytes, n * groupBytes),
                    output.Buffers.Biases.AsSpan((first + start) * groupBytes, n * groupBytes));
            }, cancellation);
            output.Write(weightName, MemoryMarshal.AsBytes(packed.AsSpan(0, count * words)));
        }
        output.Write(scalesName, scales);
        output.Write(biasesName, biases);
    }

    private static int BlockRows(PlannedWeight w) => Math.Clamp(BlockElements / w.Cols, 1, w.Rows);

    private static int GroupBytes(PlannedWeight w) => w.Cols / TestModelPlan.GroupSize * sizeof(ushort);

    /// <summary>Working memory sized once for the largest weight and reused for every tensor.</summary>
    private sealed class Buffers(IReadOnlyList<PlannedWeight> weights)
    {
        public float[] Values { get; } = new float[weights.Max(w => BlockRows(w) * w.Cols)];
        public ushort[] Bf16 { get; } = new ushort[weights.Where(w => !w.IsQuantized).Select(w => BlockRows(w) * w.Cols).DefaultIfEmpty().Max()];
        public uint[] Packed { get; } = new uint[weights.Where(w => w.IsQuantized).Select(w => BlockRows(w) * MlxQuantFormat.WordsPerRow(w.Cols, w.Bits)).DefaultIfEmpty().Max()];
        public byte[] Scales { get; } = new byte[weights.Where(w => w.IsQuantized).Select(w => w.Rows * GroupBytes(w)).DefaultIfEmpty().Max()];
        public byte[] Biases { get; } = new byte[weights.Where(w => w.IsQuantized).Select(w => w.Rows * GroupBytes(w)).DefaultIfEmpty().Max()];
    }

    /// <summary>Runs <paramref name="body"/>(start, count) over a few contiguous chunks of rows in parallel.</summary>
    private static void ForRowChunks(int rows, Action<int, int> body, CancellationToken cancellation)
    {
        int chunks = Math.Min(rows, Environment.ProcessorCount * 4);
        int perChunk = (rows + chunks - 1) / chunks;
        var options = new ParallelOptions { CancellationToken = cancellation };
        Parallel.For(0, (rows + perChunk - 1) / perChunk, options, chunk =>
        {
            int start = chunk * perChunk;
            body(start, Math.Min(perChunk, rows - start));
        });
    }

    private static string IndexJson(TestModelPlan plan)
    {
        var weightMap = new JsonObject();
        foreach (var shard in plan.Shards)
            foreach (var tensor in shard.Tensors)
                weightMap[tensor.Name] = shard.FileName;
        var index = new JsonObject
        {
            ["metadata"] = new JsonObject { ["total_size"] = plan.TotalBytes },
            ["weight_map"] = weightMap,
        };
        return index.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    /// <summary>The current shard's writer plus the running byte count for progress.</summary>
    private sealed class Output(long total, Action<long, long>? progress, Buffers buffers)
    {
        private long _written;

        public Buffers Buffers { get; } = buffers;

        public SafetensorsWriter? Writer { get; set; }

        public void Write(string name, ReadOnlySpan<byte> bytes)
        {
            Writer!.WriteTensor(name, bytes);
            _written += bytes.Length;
            progress?.Invoke(_written, total);
        }
    }
}
