using System.Runtime.InteropServices;

namespace Pipeline.Kernels.Metal.Tests.Emulation;

/// <summary>
/// Device memory for emulated kernels: the data ends right before an inaccessible page, so a kernel
/// reading or writing past the end of its buffer faults instead of silently using stray memory.
/// Start is 16-byte aligned (what Metal guarantees for float4 access at offset 0).
/// </summary>
public sealed unsafe partial class GuardedBuffer : IDisposable
{
    private const int ProtNone = 0, ProtRead = 1, ProtWrite = 2;
    private static readonly int MapPrivate = 0x02, MapAnonymous = OperatingSystem.IsMacOS() ? 0x1000 : 0x20;
    private static readonly long PageSize = Environment.SystemPageSize;

    private nint _mapping;
    private readonly long _mappingBytes;

    public GuardedBuffer(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        Length = bytes;
        long aligned = (bytes + 15) & ~15L;
        long dataPages = (aligned + PageSize - 1) / PageSize;
        _mappingBytes = (dataPages + 1) * PageSize;
        _mapping = Mmap(0, (nuint)_mappingBytes, ProtRead | ProtWrite, MapPrivate | MapAnonymous, -1, 0);
        if (_mapping == -1)
            throw new OutOfMemoryException($"mmap of {_mappingBytes} bytes failed.");
        nint guard = _mapping + (nint)(dataPages * PageSize);
        if (Mprotect(guard, (nuint)PageSize, ProtNone) != 0)
            throw new InvalidOperationException("mprotect of the guard page failed.");
        Pointer = guard - (nint)aligned;
    }

    public static GuardedBuffer Of<T>(ReadOnlySpan<T> data) where T : unmanaged
    {
        var b = new GuardedBuffer((long)data.Length * sizeof(T));
        data.CopyTo(b.AsSpan<T>());
        return b;
    }

    public nint Pointer { get; }

    public long Length { get; }

    public Span<T> AsSpan<T>() where T : unmanaged => new((void*)Pointer, checked((int)(Length / sizeof(T))));

    public T[] ToArray<T>() where T : unmanaged => AsSpan<T>().ToArray();

    public void Dispose()
    {
        if (_mapping != 0)
        {
            Munmap(_mapping, (nuint)_mappingBytes);
            _mapping = 0;
        }
    }

    [LibraryImport("libc", EntryPoint = "mmap")]
    private static partial nint Mmap(nint addr, nuint length, int prot, int flags, int fd, nint offset);

    [LibraryImport("libc", EntryPoint = "mprotect")]
    private static partial int Mprotect(nint addr, nuint length, int prot);

    [LibraryImport("libc", EntryPoint = "munmap")]
    private static partial int Munmap(nint addr, nuint length);
}
