using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Pipeline.Kernels.Metal.Interop;

namespace Pipeline.Kernels.Metal;

/// <summary>
/// The system's Metal device behind <see cref="IGpu"/>. Every Metal call runs on one dedicated
/// thread inside an autorelease pool: the backend hands it whole batches (encoded into one command
/// buffer each and committed without waiting) and the few synchronous requests (allocate, wrap,
/// free, wait). Libraries are compiled at run time from the embedded .metal sources with
/// newLibraryWithSource, fast math off (IEEE results, as the emulator computes them).
/// </summary>
internal sealed unsafe class MetalGpu : IGpu
{
    private readonly BlockingCollection<WorkItem> _work = [];
    private readonly Thread _thread;
    private readonly Selectors _sel;
    private readonly Dictionary<string, (nint Pipeline, int MaxThreads)> _pipelines = [];
    private readonly Dictionary<string, nint> _libraries = [];
    private readonly List<(nint CommandBuffer, nint Arena)> _committed = [];
    private nint _device, _queue;
    private string? _failure;

    private enum WorkKind
    {
        Submit,
        Invoke,
        Stop,
    }

    private readonly record struct WorkItem(WorkKind Kind, CommandBatch? Batch, Action? Action);

    private sealed class MetalBufferHandle(nint handle, nint contents, long bytes) : GpuBuffer(contents, bytes)
    {
        public nint Handle { get; } = handle;
    }

    private MetalGpu()
    {
        _sel = new Selectors(ObjC.RegisterSelector);
        _thread = new Thread(Run) { IsBackground = true, Name = "Metal" };
        _thread.Start();
    }

    public string Name { get; private set; } = "";

    public static bool IsAvailable(out string reason)
    {
        if (!OperatingSystem.IsMacOS())
        {
            reason = $"the Metal backend needs macOS with a Metal GPU; this is {RuntimeInformation.OSDescription}";
            return false;
        }
        try
        {
            nint device = CreateDevice();
            if (device == 0)
            {
                reason = "no Metal device (MTLCreateSystemDefaultDevice returned nil)";
                return false;
            }
            ObjC.SendVoid(device, ObjC.RegisterSelector("release"));
            reason = "";
            return true;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            reason = $"the Metal framework could not be loaded: {e.Message}";
            return false;
        }
    }

    public static MetalGpu Create()
    {
        var gpu = new MetalGpu();
        gpu.Invoke(gpu.Initialize);
        return gpu;
    }

    private static nint CreateDevice()
    {
        // Command-line processes get no default device unless CoreGraphics is loaded.
        NativeLibrary.TryLoad(ObjC.CoreGraphicsFramework, out _);
        nint device = ObjC.MTLCreateSystemDefaultDevice();
        if (device != 0)
            return device;
        nint all = ObjC.MTLCopyAllDevices();
        if (all == 0)
            return 0;
        nint first = ObjC.SendUInt(all, ObjC.RegisterSelector("count")) > 0
            ? ObjC.Send(all, ObjC.RegisterSelector("objectAtIndex:"), 0)
            : 0;
        if (first != 0)
            ObjC.Send(first, ObjC.RegisterSelector("retain"));
        ObjC.SendVoid(all, ObjC.RegisterSelector("release"));
        return first;
    }

    private void Initialize()
    {
        _device = CreateDevice();
        if (_device == 0)
            throw new InvalidOperationException("no Metal device");
        _queue = ObjC.Send(_device, _sel.NewCommandQueue);
        Name = Utf8(ObjC.Send(_device, _sel.Name));
    }

    // ------------------------------------------------------------------ IGpu (caller's thread)

    public GpuBuffer NewBuffer(long bytes)
    {
        GpuBuffer? result = null;
        Invoke(() =>
        {
            nint handle = ObjC.Send(_device, _sel.NewBufferWithLength, (nuint)bytes, MetalConstants.ResourceStorageModeShared);
            if (handle == 0)
                throw new OutOfMemoryException($"Metal could not allocate a buffer of {bytes} bytes");
            nint contents = ObjC.Send(handle, _sel.Contents);
            new Span<byte>((void*)contents, checked((int)Math.Min(bytes, int.MaxValue))).Clear();
            for (long done = int.MaxValue; done < bytes; done += int.MaxValue)
                new Span<byte>((byte*)contents + done, (int)Math.Min(bytes - done, int.MaxValue)).Clear();
            result = new MetalBufferHandle(handle, contents, bytes);
        });
        return result!;
    }

    /// <summary>
    /// newBufferWithBytesNoCopy needs a page-aligned start and length, so the buffer spans the whole
    /// pages containing the tensor (every such page is mapped: it holds tensor bytes) and the tensor
    /// starts at an offset inside it. Fallback, documented in docs/METAL.md: if the start is not
    /// 4-byte aligned (the kernels read words) or Metal refuses the range, the tensor is copied
    /// into a new shared buffer once.
    /// </summary>
    public GpuBuffer WrapHostMemory(nint pointer, long bytes, out long offset)
    {
        long page = Environment.SystemPageSize;
        long start = pointer & ~(page - 1);
        long length = (pointer - start + bytes + page - 1) / page * page;
        GpuBuffer? result = null;
        long resultOffset = 0;
        Invoke(() =>
        {
            if (pointer % 4 == 0)
            {
                nint handle = ObjC.Send(_device, _sel.NewBufferWithBytesNoCopy, (nint)start, (nuint)length, MetalConstants.ResourceStorageModeShared, 0);
                if (handle != 0)
                {
                    result = new MetalBufferHandle(handle, (nint)start, length);
                    resultOffset = pointer - start;
                    return;
                }
            }
            nint copy = ObjC.Send(_device, _sel.NewBufferWithBytes, pointer, (nuint)bytes, MetalConstants.ResourceStorageModeShared);
            if (copy == 0)
                throw new OutOfMemoryException($"Metal could not copy a weight of {bytes} bytes");
            result = new MetalBufferHandle(copy, ObjC.Send(copy, _sel.Contents), bytes);
        });
        offset = resultOffset;
        return result!;
    }

    public void Free(GpuBuffer buffer)
    {
        var handle = ((MetalBufferHandle)buffer).Handle;
        Invoke(() => ObjC.SendVoid(handle, _sel.Release));
    }

    public void Submit(CommandBatch batch) => _work.Add(new WorkItem(WorkKind.Submit, batch, null));

    public void WaitIdle() => Invoke(WaitCommitted);

    public void Dispose()
    {
        if (_work.IsAddingCompleted)
            return;
        Invoke(() =>
        {
            WaitCommitted();
            foreach (var (pipeline, _) in _pipelines.Values)
                ObjC.SendVoid(pipeline, _sel.Release);
            foreach (var library in _libraries.Values)
                ObjC.SendVoid(library, _sel.Release);
            if (_queue != 0)
                ObjC.SendVoid(_queue, _sel.Release);
            if (_device != 0)
                ObjC.SendVoid(_device, _sel.Release);
        });
        _work.Add(new WorkItem(WorkKind.Stop, null, null));
        _work.CompleteAdding();
        _thread.Join();
    }

    private void Invoke(Action action)
    {
        Exception? error = null;
        using var done = new ManualResetEventSlim();
        _work.Add(new WorkItem(WorkKind.Invoke, null, () =>
        {
            try
            {
                action();
            }
            catch (Exception e)
            {
                error = e;
            }
            finally
            {
                done.Set();
            }
        }));
        done.Wait();
        if (error is not null)
            throw new InvalidOperationException($"Metal: {error.Message}", error);
    }

    // ------------------------------------------------------------------ the Metal thread

    private void Run()
    {
        foreach (var item in _work.GetConsumingEnumerable())
        {
            nint pool = ObjC.AutoreleasePoolPush();
            try
            {
                switch (item.Kind)
                {
                    case WorkKind.Submit:
                        try
                        {
                            Encode(item.Batch!);
                        }
                        catch (Exception e)
                        {
                            _failure ??= e.Message;
                        }
                        break;
                    case WorkKind.Invoke:
                        item.Action!();
                        break;
                    case WorkKind.Stop:
                        return;
                }
            }
            finally
            {
                ObjC.AutoreleasePoolPop(pool);
            }
        }
    }

    private void Encode(CommandBatch batch)
    {
        if (_failure is not null)
            return;
        nint commandBuffer = ObjC.Send(_queue, _sel.CommandBuffer);
        nint encoder = ObjC.Send(commandBuffer, _sel.ComputeCommandEncoder);
        nint arena = 0;
        try
        {
            EncodeCalls(batch, encoder, ref arena);
        }
        catch
        {
            // An encoder must be ended even when its command buffer is abandoned.
            ObjC.SendVoid(encoder, _sel.EndEncoding);
            if (arena != 0)
                ObjC.SendVoid(arena, _sel.Release);
            throw;
        }
        ObjC.SendVoid(encoder, _sel.EndEncoding);
        ObjC.SendVoid(commandBuffer, _sel.Commit);
        // The command buffer is autoreleased: keep it until it has been waited for.
        ObjC.Send(commandBuffer, _sel.Retain);
        _committed.Add((commandBuffer, arena));
    }

    private void EncodeCalls(CommandBatch batch, nint encoder, ref nint arena)
    {
        fixed (byte* arenaBytes = batch.ArenaArray)
        {
            for (int i = 0; i < batch.Count; i++)
            {
                var call = batch[i];
                var (pipeline, maxThreads) = Pipeline(call.Kernel);
                if (call.Geometry.ThreadsPerThreadgroup.Count > maxThreads)
                    throw new InvalidOperationException(
                        $"{call.Kernel}: {call.Geometry.ThreadsPerThreadgroup.Count} threads per threadgroup exceed this pipeline's limit of {maxThreads}");
                ObjC.SendVoid(encoder, _sel.SetComputePipelineState, pipeline);
                for (int b = 0; b < call.BindingCount; b++)
                {
                    ref var binding = ref call.Bindings[b];
                    if (binding.Kind == BindingKind.Buffer)
                    {
                        ObjC.SendVoid(encoder, _sel.SetBuffer, ((MetalBufferHandle)binding.Buffer!).Handle, (nuint)binding.Offset, (nuint)binding.Index);
                    }
                    else if (binding.Length <= CommandBatch.MaxInlineBytes)
                    {
                        ObjC.SendVoid(encoder, _sel.SetBytes, (nint)(arenaBytes + binding.Offset), (nuint)binding.Length, (nuint)binding.Index);
                    }
                    else
                    {
                        if (arena == 0)
                            arena = ObjC.Send(_device, _sel.NewBufferWithBytes, (nint)arenaBytes, (nuint)batch.ArenaLength, MetalConstants.ResourceStorageModeShared);
                        ObjC.SendVoid(encoder, _sel.SetBuffer, arena, (nuint)binding.Offset, (nuint)binding.Index);
                    }
                }
                ObjC.SendVoid(encoder, _sel.DispatchThreadgroups, call.Geometry.Threadgroups, call.Geometry.ThreadsPerThreadgroup);
            }
        }
    }

    private void WaitCommitted()
    {
        string? error = _failure;
        _failure = null;
        if (_committed.Count > 0)
            ObjC.SendVoid(_committed[^1].CommandBuffer, _sel.WaitUntilCompleted);
        foreach (var (commandBuffer, arena) in _committed)
        {
            // Buffers of one queue complete in order, so after the last every earlier one is done.
            if (error is null && ObjC.SendUInt(commandBuffer, _sel.Status) == MetalConstants.CommandBufferStatusError)
                error = "command buffer failed: " + Describe(ObjC.Send(commandBuffer, _sel.Error));
            ObjC.SendVoid(commandBuffer, _sel.Release);
            if (arena != 0)
                ObjC.SendVoid(arena, _sel.Release);
        }
        _committed.Clear();
        if (error is not null)
            throw new InvalidOperationException(error);
    }

    private (nint Pipeline, int MaxThreads) Pipeline(string kernel)
    {
        if (_pipelines.TryGetValue(kernel, out var cached))
            return cached;
        foreach (string file in MetalKernelSources.Files)
        {
            nint function = ObjC.Send(Library(file), _sel.NewFunctionWithName, NSString(kernel));
            if (function == 0)
                continue;
            nint error = 0;
            nint pipeline = ObjC.Send(_device, _sel.NewComputePipelineState, function, (nint)(&error));
            ObjC.SendVoid(function, _sel.Release);
            if (pipeline == 0)
                throw new InvalidOperationException($"pipeline for {kernel}: {Describe(error)}");
            var entry = (pipeline, (int)ObjC.SendUInt(pipeline, _sel.MaxTotalThreadsPerThreadgroup));
            _pipelines[kernel] = entry;
            return entry;
        }
        throw new InvalidOperationException($"no kernel named {kernel} in the embedded Metal sources");
    }

    private nint Library(string file)
    {
        if (_libraries.TryGetValue(file, out nint library))
            return library;
        nint options = ObjC.Send(ObjC.Send(ObjC.GetClass("MTLCompileOptions"), _sel.Alloc), _sel.Init);
        ObjC.SendVoid(options, _sel.SetFastMathEnabled, (byte)0);
        nint error = 0;
        library = ObjC.Send(_device, _sel.NewLibraryWithSource, NSString(MetalKernelSources.LibrarySource(file)), options, (nint)(&error));
        ObjC.SendVoid(options, _sel.Release);
        if (library == 0)
            throw new InvalidOperationException($"compiling {file}: {Describe(error)}");
        _libraries[file] = library;
        return library;
    }

    private nint NSString(string text)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(text + "\0");
        fixed (byte* p = bytes)
            return ObjC.Send(ObjC.GetClass("NSString"), _sel.StringWithUtf8String, (nint)p);
    }

    private string Describe(nint error) =>
        error == 0 ? "unknown error" : Utf8(ObjC.Send(error, _sel.LocalizedDescription));

    private string Utf8(nint nsString) =>
        nsString == 0 ? "" : Marshal.PtrToStringUTF8(ObjC.Send(nsString, _sel.Utf8String)) ?? "";
}
