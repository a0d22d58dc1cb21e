using System.Buffers.Binary;
using System.Text.Json;

namespace Pipeline.Convert.Tests;

/// <summary>Reads a single-file safetensors header as plain data, to compare plans and outputs with fixtures.</summary>
internal static class SafetensorsHeaders
{
    public static List<SourceTensor> Read(string file)
    {
        using var stream = File.OpenRead(file);
        Span<byte> lengthBytes = stackalloc byte[8];
        stream.ReadExactly(lengthBytes);
        var header = new byte[BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes)];
        stream.ReadExactly(header);
        using var json = JsonDocument.Parse(header);
        var tensors = new List<SourceTensor>();
        foreach (var property in json.RootElement.EnumerateObject())
        {
            if (property.Name == "__metadata__")
                continue;
            tensors.Add(new SourceTensor(
                property.Name,
                property.Value.GetProperty("dtype").GetString()!,
                [.. property.Value.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64())]));
        }
        return tensors;
    }
}
