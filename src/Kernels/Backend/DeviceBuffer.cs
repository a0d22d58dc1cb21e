namespace Pipeline.Kernels;

/// <summary>
/// A backend-owned array of f32 elements (activations, KV caches, logits). Only the backend that
/// allocated it may use it; read it back with <see cref="IBackend.Read"/>. Dispose frees it
/// (after the backend has finished the work already enqueued on it).
/// </summary>
public abstract class DeviceBuffer(IBackend owner, long length) : IDisposable
{
    public IBackend Owner { get; } = owner;

    /// <summary>Number of f32 elements.</summary>
    public long Length { get; } = length;

    public BufferSlice Slice(long offset, long length) => new(this, offset, length);

    public static implicit operator BufferSlice(DeviceBuffer buffer) => new(buffer, 0, buffer.Length);

    public abstract void Dispose();
}

/// <summary>A window [Offset, Offset + Length) of elements of a <see cref="DeviceBuffer"/>.</summary>
public readonly struct BufferSlice
{
    public BufferSlice(DeviceBuffer buffer, long offset, long length)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        if (offset < 0 || length < 0 || offset + length > buffer.Length)
            throw new ArgumentOutOfRangeException(nameof(length),
                $"slice [{offset}, {offset + length}) lies outside a buffer of {buffer.Length} elements");
        Buffer = buffer;
        Offset = offset;
        Length = length;
    }

    public DeviceBuffer Buffer { get; }
    public long Offset { get; }
    public long Length { get; }

    public BufferSlice Slice(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset + length > Length)
            throw new ArgumentOutOfRangeException(nameof(length),
                $"sub-slice [{offset}, {offset + length}) lies outside a slice of {Length} elements");
        return new BufferSlice(Buffer, Offset + offset, length);
    }

    /// <summary>Rows [firstRow, firstRow + rowCount) of a row-major [*, rowWidth] slice.</summary>
    public BufferSlice Rows(int firstRow, int rowCount, int rowWidth) =>
        Slice((long)firstRow * rowWidth, (long)rowCount * rowWidth);

    public override string ToString() => $"[{Offset}, {Offset + Length}) of {Buffer.Length}";
}
