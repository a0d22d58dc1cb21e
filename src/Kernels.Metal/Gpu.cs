using System.Runtime.InteropServices;

namespace Pipeline.Kernels.Metal;

/// <summary>
/// A buffer in memory the CPU and GPU share (MTLStorageModeShared on Apple silicon). Contents is
/// the CPU address of byte 0; a device implementation keeps its own handle (the MTLBuffer).
/// </summary>
internal abstract class GpuBuffer(nint contents, long bytes)
{
    public nint Contents { get; } = contents;

    public long Bytes { get; } = bytes;
}

/// <summary>
/// The part of a Metal device the backend needs. <see cref="MetalGpu"/> is the real one (all its
/// Metal calls on one dedicated thread); the tests substitute the CPU emulator of the compute model.
/// Submit is asynchronous; batches execute in submission order, dispatches within a batch in order
/// (each sees the previous one's writes).
/// </summary>
internal interface IGpu : IDisposable
{
    string Name { get; }

    /// <summary>A zero-filled shared buffer.</summary>
    GpuBuffer NewBuffer(long bytes);

    /// <summary>
    /// The GPU view of host memory that outlives the backend (a memory-mapped weight): zero-copy
    /// over the page-aligned range that contains it, or a copy when the device refuses that.
    /// The host bytes start at <paramref name="offset"/> in the returned buffer.
    /// </summary>
    GpuBuffer WrapHostMemory(nint pointer, long bytes, out long offset);

    void Free(GpuBuffer buffer);

    void Submit(CommandBatch batch);

    /// <summary>Returns when every submitted batch has completed; throws if one failed.</summary>
    void WaitIdle();
}

internal enum BindingKind : byte
{
    Buffer,
    Bytes,
}

/// <summary>One [[buffer(n)]] argument: a GPU buffer at an offset, or bytes in the batch's arena.</summary>
internal struct Binding
{
    public int Index;
    public BindingKind Kind;
    public GpuBuffer? Buffer;
    public long Offset;   // into Buffer, or into the arena
    public int Length;    // Bytes only
}

/// <summary>One dispatch: kernel, geometry and arguments. Pooled by its batch.</summary>
internal sealed class KernelCall
{
    public const int MaxBindings = 10;

    public string Kernel = "";
    public DispatchGeometry Geometry;
    public readonly Binding[] Bindings = new Binding[MaxBindings];
    public int BindingCount;
}

/// <summary>
/// The dispatches of one command buffer, plus the host data they read (parameter structs, token
/// ids, uploads), copied into an arena at enqueue time. Reused after completion, so steady-state
/// recording allocates nothing.
/// </summary>
internal sealed class CommandBatch
{
    /// <summary>setBytes limit; larger host data is bound from an arena buffer.</summary>
    public const int MaxInlineBytes = 4096;

    private readonly List<KernelCall> _calls = [];
    private byte[] _arena = new byte[16 * 1024];

    public int Count { get; private set; }

    public int ArenaLength { get; private set; }

    public KernelCall this[int i] => _calls[i];

    public ReadOnlySpan<byte> Arena => _arena.AsSpan(0, ArenaLength);

    /// <summary>The arena as an array (pin it while encoding).</summary>
    public byte[] ArenaArray => _arena;

    public KernelCall Add(string kernel, DispatchGeometry geometry)
    {
        if (Count == _calls.Count)
            _calls.Add(new KernelCall());
        var call = _calls[Count++];
        call.Kernel = kernel;
        call.Geometry = geometry;
        call.BindingCount = 0;
        return call;
    }

    public static void Bind(KernelCall call, int index, GpuBuffer buffer, long offset)
    {
        ref var b = ref call.Bindings[call.BindingCount++];
        b.Index = index;
        b.Kind = BindingKind.Buffer;
        b.Buffer = buffer;
        b.Offset = offset;
        b.Length = 0;
    }

    public void BindBytes(KernelCall call, int index, ReadOnlySpan<byte> data)
    {
        int offset = (ArenaLength + 15) & ~15;
        int needed = offset + Math.Max(data.Length, 4);
        if (needed > _arena.Length)
            Array.Resize(ref _arena, Math.Max(needed, 2 * _arena.Length));
        data.CopyTo(_arena.AsSpan(offset));
        ArenaLength = needed;
        ref var b = ref call.Bindings[call.BindingCount++];
        b.Index = index;
        b.Kind = BindingKind.Bytes;
        b.Buffer = null;
        b.Offset = offset;
        b.Length = Math.Max(data.Length, 4);
    }

    /// <summary>Removes the last call (one whose arguments could not all be bound).</summary>
    public void DropLast()
    {
        var call = _calls[--Count];
        for (int j = 0; j < call.BindingCount; j++)
            call.Bindings[j].Buffer = null;
    }

    public void BindValue<T>(KernelCall call, int index, in T value) where T : unmanaged =>
        BindBytes(call, index, MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in value)));

    public void Reset()
    {
        for (int i = 0; i < Count; i++)
        {
            var call = _calls[i];
            for (int j = 0; j < call.BindingCount; j++)
                call.Bindings[j].Buffer = null;
        }
        Count = 0;
        ArenaLength = 0;
    }
}
