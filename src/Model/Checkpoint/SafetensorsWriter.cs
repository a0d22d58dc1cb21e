using System.Buffers.Binary;
using System.Text.Json;

namespace Pipeline.Model.Checkpoint;

/// <summary>One tensor declared to a <see cref="SafetensorsWriter"/>.</summary>
public sealed record TensorSpec(string Name, TensorDType DType, long[] Shape)
{
    public long ByteLength => Shape.Aggregate(1L, (product, size) => checked(product * size)) * TensorDTypes.SizeOf(DType);
}

/// <summary>
/// Streams a safetensors file with bounded memory: the header (tensors in the given order, contiguous
/// data_offsets, padded with spaces to a multiple of 8 bytes as the reference writer does) is written
/// up front, then each tensor's bytes arrive through <see cref="WriteTensor"/>, in header order and in
/// as many chunks as the caller likes. The data goes to "&lt;path&gt;.partial" and is renamed to
/// <c>path</c> by <see cref="Finish"/>; disposing an unfinished writer deletes the partial file.
/// </summary>
public sealed class SafetensorsWriter : IDisposable
{
    private readonly IReadOnlyList<TensorSpec> _tensors;
    private readonly string _partialPath;
    private FileStream? _stream;
    private int _current;
    private long _writtenOfCurrent;

    public SafetensorsWriter(string path, IReadOnlyList<TensorSpec> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        Path = System.IO.Path.GetFullPath(path);
        _tensors = tensors;
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var spec in tensors)
        {
            if (spec.Name == "__metadata__" || !names.Add(spec.Name))
                throw new ArgumentException($"Tensor name '{spec.Name}' is reserved or declared twice.", nameof(tensors));
            if (spec.Shape.Any(size => size < 0))
                throw new ArgumentException($"Tensor '{spec.Name}' has a negative dimension {TensorInfo.FormatShape(spec.Shape)}.", nameof(tensors));
        }

        byte[] header = BuildHeader(tensors, metadata);
        _partialPath = Path + ".partial";
        _stream = new FileStream(_partialPath, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
        _stream.Write(length);
        _stream.Write(header);
        HeaderLength = header.Length;
        SkipEmptyTensors();
    }

    public string Path { get; }
    public long HeaderLength { get; }

    /// <summary>Total file size once finished.</summary>
    public long FileLength => 8 + HeaderLength + _tensors.Sum(t => t.ByteLength);

    /// <summary>Appends bytes of tensor <paramref name="name"/>, which must be the next unfinished tensor.</summary>
    public void WriteTensor(string name, ReadOnlySpan<byte> bytes)
    {
        var stream = _stream ?? throw new ObjectDisposedException(nameof(SafetensorsWriter));
        if (_current >= _tensors.Count)
            throw new InvalidOperationException($"All tensors are written; '{name}' was not declared or was already written.");
        var spec = _tensors[_current];
        if (spec.Name != name)
            throw new InvalidOperationException($"Tensor '{spec.Name}' is next in header order, not '{name}'.");
        if (_writtenOfCurrent + bytes.Length > spec.ByteLength)
            throw new InvalidOperationException(
                $"Tensor '{name}' is {spec.ByteLength} bytes; writing {bytes.Length} more after {_writtenOfCurrent} overflows it.");
        stream.Write(bytes);
        _writtenOfCurrent += bytes.Length;
        if (_writtenOfCurrent == spec.ByteLength)
        {
            _current++;
            _writtenOfCurrent = 0;
            SkipEmptyTensors();
        }
    }

    /// <summary>Checks every tensor was written in full, flushes, and moves the file into place.</summary>
    public void Finish()
    {
        var stream = _stream ?? throw new ObjectDisposedException(nameof(SafetensorsWriter));
        if (_current < _tensors.Count)
            throw new InvalidOperationException(
                $"Tensor '{_tensors[_current].Name}' has {_writtenOfCurrent} of {_tensors[_current].ByteLength} bytes written; cannot finish.");
        stream.Flush(flushToDisk: false);
        stream.Dispose();
        _stream = null;
        File.Move(_partialPath, Path, overwrite: true);
    }

    /// <summary>Writes a small file in one call (tests, configs of tiny models).</summary>
    public static void Write(string path, IReadOnlyList<(TensorSpec Spec, byte[] Data)> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        using var writer = new SafetensorsWriter(path, tensors.Select(t => t.Spec).ToList(), metadata);
        foreach (var (spec, data) in tensors)
        {
            if (data.Length > 0)
                writer.WriteTensor(spec.Name, data);
        }
        writer.Finish();
    }

    public void Dispose()
    {
        if (_stream is null)
            return;
        _stream.Dispose();
        _stream = null;
        File.Delete(_partialPath);
    }

    private void SkipEmptyTensors()
    {
        while (_current < _tensors.Count && _tensors[_current].ByteLength == 0)
            _current++;
    }

    private static byte[] BuildHeader(IReadOnlyList<TensorSpec> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (metadata is not null)
            {
                json.WriteStartObject("__metadata__");
                foreach (var (key, value) in metadata)
                    json.WriteString(key, value);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var spec in tensors)
            {
                json.WriteStartObject(spec.Name);
                json.WriteString("dtype", TensorDTypes.HeaderName(spec.DType));
                json.WriteStartArray("shape");
                foreach (long size in spec.Shape)
                    json.WriteNumberValue(size);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                offset += spec.ByteLength;
                json.WriteNumberValue(offset);
                json.WriteEndArray();
                json.WriteEndObject();
            }
            json.WriteEndObject();
        }
        int padding = (int)((8 - buffer.Length % 8) % 8);
        for (int i = 0; i < padding; i++)
            buffer.WriteByte((byte)' ');
        return buffer.ToArray();
    }
}
