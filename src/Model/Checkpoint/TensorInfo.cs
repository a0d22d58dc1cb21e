namespace Pipeline.Model.Checkpoint;

/// <summary>
/// One tensor of a memory-mapped safetensors file. <see cref="Data"/> points into the mapping and is
/// valid while the owning <see cref="SafetensorsFile"/> is open.
/// </summary>
public sealed class TensorInfo(string name, TensorDType dtype, long[] shape, long byteLength, string filePath, long fileOffset, nint data)
{
    public string Name { get; } = name;
    public TensorDType DType { get; } = dtype;
    public long[] Shape { get; } = shape;
    public long ByteLength { get; } = byteLength;
    public string FilePath { get; } = filePath;

    /// <summary>Offset of the first byte from the start of the file.</summary>
    public long FileOffset { get; } = fileOffset;

    public nint Data { get; } = data;

    public long ElementCount => ByteLength / TensorDTypes.SizeOf(DType);

    public string ShapeText => FormatShape(Shape);

    public static string FormatShape(IEnumerable<long> shape) => "[" + string.Join(", ", shape) + "]";
}
