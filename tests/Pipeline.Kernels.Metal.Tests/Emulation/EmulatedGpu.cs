using System.Collections.Concurrent;

namespace Pipeline.Kernels.Metal.Tests.Emulation;

/// <summary>
/// <see cref="IGpu"/> on the CPU emulator: the same batches the Metal device would encode, executed
/// asynchronously on a "GPU" thread in submission order, so a backend that read results before
/// waiting would see stale memory here too. Device buffers are guard-paged; weights are wrapped
/// over their page-aligned range like newBufferWithBytesNoCopy (or copied when not word-aligned).
/// </summary>
internal sealed class EmulatedGpu : IGpu
{
    private readonly Emulator _emulator;
    private readonly BlockingCollection<CommandBatch> _queue = [];
    private readonly Thread _thread;
    private readonly object _lock = new();
    private int _outstanding;
    private Exception? _failure;

    private sealed class EmulatedBuffer(GuardedBuffer? owned, nint contents, long bytes) : GpuBuffer(contents, bytes)
    {
        public GuardedBuffer? Owned { get; } = owned;
    }

    public EmulatedGpu(Emulator? emulator = null)
    {
        _emulator = emulator ?? Emulator.Shared;
        _thread = new Thread(Run) { IsBackground = true, Name = "emulated GPU" };
        _thread.Start();
    }

    public string Name => "CPU emulation of the Metal compute model";

    /// <summary>Dispatches executed so far.</summary>
    public long Dispatches { get; private set; }

    /// <summary>Batches (command buffers) submitted so far.</summary>
    public int Submitted { get; private set; }

    /// <summary>Weights wrapped without a copy, and weights copied.</summary>
    public int ZeroCopyWraps { get; private set; }

    public int CopiedWraps { get; private set; }

    public GpuBuffer NewBuffer(long bytes)
    {
        var buffer = new GuardedBuffer(bytes);
        return new EmulatedBuffer(buffer, buffer.Pointer, bytes);
    }

    public unsafe GpuBuffer WrapHostMemory(nint pointer, long bytes, out long offset)
    {
        if (pointer % 4 != 0)
        {
            CopiedWraps++;
            var copy = new GuardedBuffer(bytes);
            new ReadOnlySpan<byte>((void*)pointer, checked((int)bytes)).CopyTo(copy.AsSpan<byte>());
            offset = 0;
            return new EmulatedBuffer(copy, copy.Pointer, bytes);
        }
        ZeroCopyWraps++;
        long page = Environment.SystemPageSize;
        long start = pointer & ~(page - 1);
        offset = pointer - start;
        return new EmulatedBuffer(null, (nint)start, (offset + bytes + page - 1) / page * page);
    }

    public void Free(GpuBuffer buffer) => ((EmulatedBuffer)buffer).Owned?.Dispose();

    public void Submit(CommandBatch batch)
    {
        lock (_lock)
            _outstanding++;
        Submitted++;
        _queue.Add(batch);
    }

    public void WaitIdle()
    {
        lock (_lock)
        {
            while (_outstanding > 0)
                Monitor.Wait(_lock);
            var failure = _failure;
            _failure = null;
            if (failure is not null)
                throw new InvalidOperationException($"emulated command buffer failed: {failure.Message}", failure);
        }
    }

    public void Dispose()
    {
        _queue.CompleteAdding();
        _thread.Join();
    }

    private void Run()
    {
        foreach (var batch in _queue.GetConsumingEnumerable())
        {
            bool failed;
            lock (_lock)
                failed = _failure is not null;
            try
            {
                if (!failed)
                    Execute(batch);
            }
            catch (Exception e)
            {
                lock (_lock)
                    _failure ??= e;
            }
            lock (_lock)
            {
                _outstanding--;
                Monitor.PulseAll(_lock);
            }
        }
    }

    private void Execute(CommandBatch batch)
    {
        // setBytes copies at encode time; so does this.
        using var arena = GuardedBuffer.Of<byte>(batch.Arena.Length > 0 ? batch.Arena : new byte[16]);
        var args = new KernelArg[KernelCall.MaxBindings];
        for (int i = 0; i < batch.Count; i++)
        {
            var call = batch[i];
            for (int b = 0; b < call.BindingCount; b++)
            {
                var binding = call.Bindings[b];
                args[b] = binding.Kind == BindingKind.Buffer
                    ? KernelArg.Buffer(binding.Index, binding.Buffer!.Contents + (nint)binding.Offset)
                    : KernelArg.Memory(binding.Index, arena.Pointer + (nint)binding.Offset, binding.Length);
            }
            _emulator.Dispatch(call.Kernel, call.Geometry, args[..call.BindingCount]);
            Dispatches++;
        }
    }
}
