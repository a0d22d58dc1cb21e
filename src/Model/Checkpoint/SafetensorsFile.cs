using System.IO.MemoryMappedFiles;
using System.Text.Json;

namespace Pipeline.Model.Checkpoint;

/// <summary>
/// A read-only, memory-mapped safetensors file: an 8-byte little-endian header length, a JSON header
/// mapping tensor names to dtype, shape and data_offsets, then the data section. Tensor bytes are never
/// copied; <see cref="TensorInfo.Data"/> points into the mapping until <see cref="Dispose"/>.
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    /// <summary>Headers larger than this are refused as corrupt (real ones are well under 1 MB).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private const string MetadataKey = "__metadata__";

    private readonly MemoryMappedFile _mapping;
    private readonly MemoryMappedViewAccessor _view;
    private bool _pointerAcquired;
    private bool _disposed;

    private SafetensorsFile(string path, MemoryMappedFile mapping, MemoryMappedViewAccessor view)
    {
        FilePath = path;
        _mapping = mapping;
        _view = view;
    }

    public string FilePath { get; }
    public long FileLength { get; private set; }
    public long HeaderLength { get; private set; }

    /// <summary>Tensors in header order.</summary>
    public IReadOnlyDictionary<string, TensorInfo> Tensors { get; private set; } = new Dictionary<string, TensorInfo>();

    /// <summary>The optional "__metadata__" string map (e.g. format: "mlx").</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; private set; } = new Dictionary<string, string>();

    public static SafetensorsFile Open(string path)
    {
        path = Path.GetFullPath(path);
        if (!File.Exists(path))
            throw new CheckpointFormatException(path, null, "file does not exist");
        long fileLength = new FileInfo(path).Length;
        if (fileLength < 8)
            throw new CheckpointFormatException(path, null,
                $"file is {fileLength} bytes, shorter than the 8-byte header length field (truncated file)");

        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.None);
        MemoryMappedFile? mapping = null;
        MemoryMappedViewAccessor? view = null;
        SafetensorsFile? file = null;
        try
        {
            mapping = MemoryMappedFile.CreateFromFile(
                stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            view = mapping.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            file = new SafetensorsFile(path, mapping, view) { FileLength = fileLength };
            file.Parse();
            return file;
        }
        catch
        {
            if (file is not null)
                file.Dispose();
            else
            {
                view?.Dispose();
                if (mapping is not null)
                    mapping.Dispose();
                else
                    stream.Dispose();
            }
            throw;
        }
    }

    /// <summary>The bytes of one tensor (only for tensors under 2 GB; larger ones: use Data).</summary>
    public ReadOnlySpan<byte> Bytes(string name)
    {
        if (!Tensors.TryGetValue(name, out var info))
            throw new CheckpointFormatException(FilePath, name, "no such tensor in this file");
        return BytesOf(info);
    }

    internal static ReadOnlySpan<byte> BytesOf(TensorInfo info)
    {
        if (info.ByteLength > int.MaxValue)
            throw new InvalidOperationException(
                $"Tensor '{info.Name}' is {info.ByteLength} bytes, too large for a span; use TensorInfo.Data.");
        return new ReadOnlySpan<byte>((void*)info.Data, (int)info.ByteLength);
    }

    private void Parse()
    {
        byte* basePointer = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref basePointer);
        _pointerAcquired = true;
        byte* fileStart = basePointer + _view.PointerOffset;

        ulong headerLength = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(fileStart, 8));
        if (headerLength > MaxHeaderBytes)
            throw Fail(null, $"header length {headerLength} exceeds the {MaxHeaderBytes}-byte limit (corrupt header length field)");
        if (8 + (long)headerLength > FileLength)
            throw Fail(null, $"header length {headerLength} runs past the end of the file ({FileLength} bytes; truncated file?)");
        HeaderLength = (long)headerLength;

        long dataStart = 8 + HeaderLength;
        long dataLength = FileLength - dataStart;
        byte[] header = new ReadOnlySpan<byte>(fileStart + 8, (int)HeaderLength).ToArray();

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(header);
        }
        catch (JsonException e)
        {
            throw Fail(null, $"header is not valid JSON ({e.Message})", e);
        }

        var tensors = new Dictionary<string, TensorInfo>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw Fail(null, $"header must be a JSON object, found {document.RootElement.ValueKind}");
            foreach (var property in document.RootElement.EnumerateObject())
            {
                if (property.Name == MetadataKey)
                {
                    ReadMetadata(property.Value, metadata);
                    continue;
                }
                if (tensors.ContainsKey(property.Name))
                    throw Fail(property.Name, "appears twice in the header");
                var info = ReadTensor(property.Name, property.Value, dataStart, dataLength, fileStart);
                tensors.Add(info.Name, info);
            }
        }
        CheckNoOverlap(tensors.Values, dataStart);
        Tensors = tensors;
        Metadata = metadata;
    }

    private void ReadMetadata(JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind == JsonValueKind.Null)
            return;
        if (value.ValueKind != JsonValueKind.Object)
            throw Fail(null, $"\"{MetadataKey}\" must be an object of strings, found {value.ValueKind}");
        foreach (var entry in value.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.String)
                throw Fail(null, $"\"{MetadataKey}\" entry '{entry.Name}' must be a string, found {entry.Value.GetRawText()}");
            metadata[entry.Name] = entry.Value.GetString()!;
        }
    }

    private TensorInfo ReadTensor(string name, JsonElement entry, long dataStart, long dataLength, byte* fileStart)
    {
        if (entry.ValueKind != JsonValueKind.Object)
            throw Fail(name, $"header entry must be an object, found {entry.GetRawText()}");
        if (!entry.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
            throw Fail(name, "header entry has no string \"dtype\"");
        string dtypeName = dtypeElement.GetString()!;
        if (!TensorDTypes.TryParse(dtypeName, out var dtype))
            throw Fail(name, $"dtype '{dtypeName}' is not supported (supported: {string.Join(", ", Enum.GetNames<TensorDType>())})");

        if (!entry.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
            throw Fail(name, "header entry has no \"shape\" array");
        var shape = new long[shapeElement.GetArrayLength()];
        int axis = 0;
        foreach (var dim in shapeElement.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out long size) || size < 0)
                throw Fail(name, $"shape {shapeElement.GetRawText()} has an invalid dimension {dim.GetRawText()}");
            shape[axis++] = size;
        }

        if (!entry.TryGetProperty("data_offsets", out var offsetsElement) || offsetsElement.ValueKind != JsonValueKind.Array
            || offsetsElement.GetArrayLength() != 2)
            throw Fail(name, "header entry has no \"data_offsets\" [begin, end] pair");
        long begin = ReadOffset(name, offsetsElement, 0);
        long end = ReadOffset(name, offsetsElement, 1);
        if (end < begin)
            throw Fail(name, $"data_offsets [{begin}, {end}] end before they begin");

        long expectedBytes;
        try
        {
            long elements = 1;
            foreach (long size in shape)
                elements = checked(elements * size);
            expectedBytes = checked(elements * TensorDTypes.SizeOf(dtype));
        }
        catch (OverflowException)
        {
            throw Fail(name, $"shape {TensorInfo.FormatShape(shape)} is too large");
        }
        if (expectedBytes != end - begin)
            throw Fail(name,
                $"shape {TensorInfo.FormatShape(shape)} x {dtypeName} needs {expectedBytes} bytes but data_offsets [{begin}, {end}] span {end - begin}");
        if (end > dataLength)
            throw Fail(name,
                $"data_offsets [{begin}, {end}] run past the end of the data section ({dataLength} bytes after the {HeaderLength}-byte header; file is {FileLength} bytes, truncated?)");

        return new TensorInfo(name, dtype, shape, end - begin, FilePath, dataStart + begin, (nint)(fileStart + dataStart + begin));
    }

    private long ReadOffset(string name, JsonElement offsets, int index)
    {
        var element = offsets[index];
        if (element.ValueKind != JsonValueKind.Number || !element.TryGetInt64(out long value) || value < 0)
            throw Fail(name, $"data_offsets {offsets.GetRawText()} must be two non-negative integers");
        return value;
    }

    private void CheckNoOverlap(IEnumerable<TensorInfo> tensors, long dataStart)
    {
        TensorInfo? previous = null;
        foreach (var tensor in tensors.Where(t => t.ByteLength > 0).OrderBy(t => t.FileOffset))
        {
            if (previous is not null && tensor.FileOffset < previous.FileOffset + previous.ByteLength)
            {
                throw Fail(tensor.Name,
                    $"data_offsets [{tensor.FileOffset - dataStart}, {tensor.FileOffset - dataStart + tensor.ByteLength}] overlap tensor '{previous.Name}' at [{previous.FileOffset - dataStart}, {previous.FileOffset - dataStart + previous.ByteLength}]");
            }
            previous = tensor;
        }
    }

    private CheckpointFormatException Fail(string? tensor, string detail, Exception? inner = null) =>
        new(FilePath, tensor, detail, inner);

    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        if (_pointerAcquired)
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _mapping.Dispose();
    }
}
