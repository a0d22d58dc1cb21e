using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace Pipeline.Convert;

/// <summary>
/// Activation statistics of one linear: the sum over observed tokens of x_j^2 for every input channel j,
/// and how many tokens were observed. Importance (mean squared activation) = SumOfSquares / Count.
/// </summary>
public sealed class ImatrixEntry(string name, float[] sumOfSquares, float count)
{
    /// <summary>llama.cpp weight name, e.g. <c>blk.3.ffn_down.weight</c>.</summary>
    public string Name { get; } = name;
    public float[] SumOfSquares { get; } = sumOfSquares;
    public float Count { get; } = count;

    public float[] Importance()
    {
        var importance = new float[SumOfSquares.Length];
        for (int j = 0; j < importance.Length; j++)
            importance[j] = SumOfSquares[j] / Count;
        return importance;
    }
}

/// <summary>
/// A llama.cpp importance matrix in its GGUF form (llama-imatrix's default output since mid 2025): a GGUF
/// v3 file whose tensors come in F32 pairs <c>&lt;name&gt;.in_sum2</c> [in] and <c>&lt;name&gt;.counts</c> [1]
/// (an optional <c>&lt;name&gt;.in_sum</c> is ignored), with <c>general.type = imatrix</c>,
/// <c>imatrix.datasets</c>, <c>imatrix.chunk_count</c> and <c>imatrix.chunk_size</c> metadata.
/// Written from the format description (ggml docs/gguf.md, llama.cpp tools/imatrix); no code copied.
/// </summary>
public sealed class ImatrixFile
{
    private const uint GgufMagic = 0x46554747; // "GGUF" read little-endian
    private const int DefaultAlignment = 32;
    private const uint GgmlTypeF32 = 0;
    private const string SumSuffix = ".in_sum2";
    private const string CountSuffix = ".counts";
    private const string MeanSuffix = ".in_sum";

    public IReadOnlyDictionary<string, ImatrixEntry> Entries { get; }
    public IReadOnlyList<string> Datasets { get; }
    public int ChunkCount { get; }
    public int ChunkSize { get; }

    public ImatrixFile(IEnumerable<ImatrixEntry> entries, IReadOnlyList<string> datasets, int chunkCount, int chunkSize)
    {
        var map = new SortedDictionary<string, ImatrixEntry>(StringComparer.Ordinal);
        foreach (var entry in entries)
        {
            if (!map.TryAdd(entry.Name, entry))
                throw new ArgumentException($"imatrix entry '{entry.Name}' appears twice", nameof(entries));
        }
        Entries = map;
        Datasets = datasets;
        ChunkCount = chunkCount;
        ChunkSize = chunkSize;
    }

    public static ImatrixFile Read(string path)
    {
        path = Path.GetFullPath(path);
        if (!File.Exists(path))
            throw new ConvertException($"{path}: imatrix file does not exist");
        var reader = new GgufReader(path, File.ReadAllBytes(path));
        return reader.ReadImatrix();
    }

    /// <summary>Writes the file as llama-imatrix does: tensors sorted by name, F32, 32-byte aligned data.</summary>
    public void Write(string path)
    {
        var tensors = new List<(string Name, long[] Dims, float[] Data)>();
        foreach (var entry in Entries.Values)
        {
            tensors.Add((entry.Name + SumSuffix, [entry.SumOfSquares.Length, 1], entry.SumOfSquares));
            tensors.Add((entry.Name + CountSuffix, [1, 1], [entry.Count]));
        }

        using var stream = new MemoryStream();
        using (var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true))
        {
            w.Write(GgufMagic);
            w.Write(3u);
            w.Write((ulong)tensors.Count);
            w.Write(4UL); // metadata pairs below
            WriteString(w, "general.type");
            w.Write((uint)GgufValueType.String);
            WriteString(w, "imatrix");
            WriteString(w, "imatrix.datasets");
            w.Write((uint)GgufValueType.Array);
            w.Write((uint)GgufValueType.String);
            w.Write((ulong)Datasets.Count);
            foreach (var dataset in Datasets)
                WriteString(w, dataset);
            WriteString(w, "imatrix.chunk_count");
            w.Write((uint)GgufValueType.UInt32);
            w.Write((uint)ChunkCount);
            WriteString(w, "imatrix.chunk_size");
            w.Write((uint)GgufValueType.UInt32);
            w.Write((uint)ChunkSize);

            long offset = 0;
            foreach (var (name, dims, data) in tensors)
            {
                WriteString(w, name);
                w.Write((uint)dims.Length);
                foreach (long dim in dims)
                    w.Write((ulong)dim);
                w.Write(GgmlTypeF32);
                w.Write((ulong)offset);
                offset = Align(offset + data.Length * 4L, DefaultAlignment);
            }
            Pad(w, DefaultAlignment);
            foreach (var (_, _, data) in tensors)
            {
                foreach (float value in data)
                    w.Write(value);
                Pad(w, DefaultAlignment);
            }
        }
        File.WriteAllBytes(path, stream.ToArray());
    }

    private static void WriteString(BinaryWriter w, string value)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(value);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static void Pad(BinaryWriter w, int alignment)
    {
        long position = w.BaseStream.Position;
        for (long i = position; i < Align(position, alignment); i++)
            w.Write((byte)0);
    }

    private static long Align(long offset, int alignment) => (offset + alignment - 1) / alignment * alignment;

    private enum GgufValueType : uint
    {
        UInt8 = 0,
        Int8 = 1,
        UInt16 = 2,
        Int16 = 3,
        UInt32 = 4,
        Int32 = 5,
        Float32 = 6,
        Bool = 7,
        String = 8,
        Array = 9,
        UInt64 = 10,
        Int64 = 11,
        Float64 = 12,
    }

    /// <summary>Bounds-checked GGUF parser; every failure names the file and, where there is one, the tensor.</summary>
    private sealed class GgufReader(string path, byte[] bytes)
    {
        private const long MaxCount = 10_000_000;
        private int _position;

        public ImatrixFile ReadImatrix()
        {
            if (bytes.Length < 24 || BinaryPrimitives.ReadUInt32LittleEndian(bytes) != GgufMagic)
                throw Fail("not a GGUF file (missing the 'GGUF' magic)");
            _position = 4;
            uint version = ReadUInt32("version");
            if (version is not (2 or 3))
                throw Fail($"GGUF version {version} is not supported (expected 3)");
            long tensorCount = ReadCount("tensor count");
            long kvCount = ReadCount("metadata count");

            var datasets = new List<string>();
            int chunkCount = 0, chunkSize = 0, alignment = DefaultAlignment;
            for (long i = 0; i < kvCount; i++)
            {
                string key = ReadString("metadata key");
                var type = (GgufValueType)ReadUInt32($"type of metadata '{key}'");
                switch (key)
                {
                    case "general.alignment" when type == GgufValueType.UInt32:
                        alignment = (int)ReadUInt32(key);
                        if (alignment <= 0 || alignment % 8 != 0)
                            throw Fail($"general.alignment {alignment} is not a positive multiple of 8");
                        break;
                    case "imatrix.chunk_count" when type == GgufValueType.UInt32:
                        chunkCount = (int)Math.Min(ReadUInt32(key), int.MaxValue);
                        break;
                    case "imatrix.chunk_size" when type == GgufValueType.UInt32:
                        chunkSize = (int)Math.Min(ReadUInt32(key), int.MaxValue);
                        break;
                    case "imatrix.datasets" when type == GgufValueType.Array:
                        var elementType = (GgufValueType)ReadUInt32(key);
                        long n = ReadCount(key);
                        for (long k = 0; k < n; k++)
                        {
                            if (elementType == GgufValueType.String)
                                datasets.Add(ReadString(key));
                            else
                                SkipValue(elementType, key);
                        }
                        break;
                    default:
                        SkipValue(type, key);
                        break;
                }
            }

            var infos = new List<(string Name, long[] Dims, long Offset)>();
            for (long i = 0; i < tensorCount; i++)
            {
                string name = ReadString("tensor name");
                uint dimCount = ReadUInt32($"dimension count of tensor '{name}'");
                if (dimCount is < 1 or > 4)
                    throw Fail($"tensor '{name}' has {dimCount} dimensions (GGUF allows 1 to 4)");
                var dims = new long[dimCount];
                for (int d = 0; d < dimCount; d++)
                    dims[d] = ReadCount($"dimension {d} of tensor '{name}'");
                uint ggmlType = ReadUInt32($"type of tensor '{name}'");
                if (ggmlType != GgmlTypeF32)
                    throw Fail($"tensor '{name}' has ggml type {ggmlType}; imatrix tensors are F32 (type 0)");
                long offset = checked((long)ReadUInt64($"offset of tensor '{name}'"));
                if (offset % alignment != 0)
                    throw Fail($"tensor '{name}' data offset {offset} is not a multiple of the alignment {alignment}");
                infos.Add((name, dims, offset));
            }
            long dataStart = Align(_position, alignment);

            var sums = new Dictionary<string, float[]>(StringComparer.Ordinal);
            var counts = new Dictionary<string, float[]>(StringComparer.Ordinal);
            foreach (var (name, dims, offset) in infos)
            {
                long elements = dims.Aggregate(1L, (a, b) => checked(a * b));
                long start = dataStart + offset;
                if (elements > int.MaxValue / 4 || start + elements * 4 > bytes.Length)
                    throw Fail($"tensor '{name}' data ({elements} F32 values at byte {start}) runs past the end of the file ({bytes.Length} bytes; truncated?)");
                Dictionary<string, float[]>? target = null;
                string baseName = name;
                if (name.EndsWith(SumSuffix, StringComparison.Ordinal))
                    (target, baseName) = (sums, name[..^SumSuffix.Length]);
                else if (name.EndsWith(CountSuffix, StringComparison.Ordinal))
                    (target, baseName) = (counts, name[..^CountSuffix.Length]);
                else if (name.EndsWith(MeanSuffix, StringComparison.Ordinal))
                    continue; // llama.cpp's optional mean activations; importance uses the squares only
                if (target is null)
                    continue; // not imatrix data; llama.cpp ignores such tensors too
                var values = new float[elements];
                for (int k = 0; k < values.Length; k++)
                    values[k] = BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan((int)(start + k * 4L), 4));
                if (!target.TryAdd(baseName, values))
                    throw Fail($"tensor '{name}' appears twice");
            }

            var entries = new List<ImatrixEntry>();
            foreach (var (name, sum) in sums)
            {
                if (!counts.TryGetValue(name, out var count))
                    throw Fail($"imatrix entry '{name}' has {name}{SumSuffix} but no {name}{CountSuffix}");
                if (count.Length != 1)
                    throw Fail($"imatrix entry '{name}' has {count.Length} counts (per-expert data); a dense model needs exactly 1");
                if (!float.IsFinite(count[0]) || count[0] <= 0)
                    throw Fail($"imatrix entry '{name}' has count {count[0].ToString(CultureInfo.InvariantCulture)}; it must be a positive number of tokens");
                for (int j = 0; j < sum.Length; j++)
                {
                    if (!float.IsFinite(sum[j]) || sum[j] < 0)
                        throw Fail($"imatrix entry '{name}' has sum of squares {sum[j].ToString(CultureInfo.InvariantCulture)} at input {j}; it must be finite and non-negative");
                }
                entries.Add(new ImatrixEntry(name, sum, count[0]));
            }
            foreach (var name in counts.Keys.Where(n => !sums.ContainsKey(n)))
                throw Fail($"imatrix entry '{name}' has {name}{CountSuffix} but no {name}{SumSuffix}");
            if (entries.Count == 0)
                throw Fail("holds no imatrix entries (no '<name>.in_sum2' / '<name>.counts' tensor pairs)");
            return new ImatrixFile(entries, datasets, chunkCount, chunkSize);
        }

        private ConvertException Fail(string detail) => new($"{path}: {detail}");

        private void Need(long count, string what)
        {
            if (_position + count > bytes.Length)
                throw Fail($"file ends inside the {what} at byte {_position} (truncated?)");
        }

        private uint ReadUInt32(string what)
        {
            Need(4, what);
            uint value = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(_position));
            _position += 4;
            return value;
        }

        private ulong ReadUInt64(string what)
        {
            Need(8, what);
            ulong value = BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(_position));
            _position += 8;
            return value;
        }

        private long ReadCount(string what)
        {
            ulong value = ReadUInt64(what);
            if (value > MaxCount)
                throw Fail($"{what} {value} is implausibly large (corrupt file?)");
            return (long)value;
        }

        private string ReadString(string what)
        {
            ulong length = ReadUInt64(what);
            if (length > (ulong)(bytes.Length - _position))
                throw Fail($"{what} length {length} runs past the end of the file at byte {_position}");
            string value = Encoding.UTF8.GetString(bytes, _position, (int)length);
            _position += (int)length;
            return value;
        }

        private void SkipValue(GgufValueType type, string key)
        {
            switch (type)
            {
                case GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool:
                    Need(1, key);
                    _position += 1;
                    break;
                case GgufValueType.UInt16 or GgufValueType.Int16:
                    Need(2, key);
                    _position += 2;
                    break;
                case GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32:
                    Need(4, key);
                    _position += 4;
                    break;
                case GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64:
                    Need(8, key);
                    _position += 8;
                    break;
                case GgufValueType.String:
                    ReadString(key);
                    break;
                case GgufValueType.Array:
                    var elementType = (GgufValueType)ReadUInt32(key);
                    long n = ReadCount(key);
                    for (long i = 0; i < n; i++)
                        SkipValue(elementType, key);
                    break;
                default:
                    throw Fail($"metadata '{key}' has unknown value type {(uint)type}");
            }
        }
    }
}
