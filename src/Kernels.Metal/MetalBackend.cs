using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Pipeline.Kernels.Quantization;

namespace Pipeline.Kernels.Metal;

/// <summary>
/// <see cref="IBackend"/> on Apple GPUs. Every op records one kernel dispatch (Kernels/*.metal) into
/// the pending command batch; after <see cref="CallsPerCommandBuffer"/> dispatches (about one
/// Gemma layer) the batch is committed as one command buffer and recording continues into the
/// next, so layer L+1 is being encoded while layer L executes. The host waits only in
/// <see cref="Read"/>, <see cref="Synchronize"/> and <see cref="TopK"/>.
/// Activations live in shared (unified-memory) buffers; weights are wrapped zero-copy (see
/// <see cref="IGpu.WrapHostMemory"/>) once per weight object.
/// </summary>
public sealed class MetalBackend : IBackend
{
    /// <summary>Dispatches per command buffer: one Gemma-4 layer is ~22.</summary>
    public const int CallsPerCommandBuffer = 24;

    /// <summary>From this many tokens on, Linear uses the simdgroup-matrix kernels instead of matvec.</summary>
    public const int MatmulMinTokens = 4;

    private static readonly string[] QmvKernels = Kernel("qmv_b");
    private static readonly string[] MmQuantizedKernels = Kernel("mm_q");

    private readonly IGpu _gpu;
    private readonly Stack<CommandBatch> _freeBatches = new();
    private readonly List<CommandBatch> _inFlight = [];
    private readonly List<GpuBuffer> _freeAfterSync = [];
    private readonly List<GpuBuffer> _weightBuffers = [];
    private readonly ConditionalWeakTable<object, WeightView> _weights = new();
    private readonly GpuBuffer _placeholder;
    private GpuBuffer? _topKScratch;
    private CommandBatch? _pending;
    private bool _callOpen;
    private bool _disposed;

    internal MetalBackend(IGpu gpu)
    {
        _gpu = gpu;
        _placeholder = gpu.NewBuffer(64);
    }

    /// <summary>Whether a Metal device can be used here; otherwise why not (the CPU backend is used then).</summary>
    public static bool IsAvailable(out string reason) => MetalGpu.IsAvailable(out reason);

    /// <summary>The backend on the system's default Metal device.</summary>
    public static MetalBackend Create()
    {
        if (!IsAvailable(out string reason))
            throw new PlatformNotSupportedException(reason);
        return new MetalBackend(MetalGpu.Create());
    }

    public string Name => $"metal ({_gpu.Name})";

    public DeviceBuffer Allocate(long elements)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(elements);
        ObjectDisposedException.ThrowIf(_disposed, this);
        return new MetalBuffer(this, elements, _gpu.NewBuffer(Math.Max(4, elements * 4)));
    }

    public void Write(BufferSlice destination, ReadOnlySpan<float> source)
    {
        OpChecks.Length(destination, source.Length, nameof(destination));
        if (source.Length == 0)
            return;
        var (buffer, offset) = Resolve(destination);
        var batch = Batch();
        var call = Begin(batch, "upload_f32", KernelGeometry.Elementwise(source.Length));
        batch.BindBytes(call, 0, MemoryMarshal.AsBytes(source));
        CommandBatch.Bind(call, 1, buffer, offset);
        batch.BindValue(call, 2, new ElementwiseParams { N = (uint)source.Length });
        Enqueued();
    }

    public unsafe void Read(BufferSlice source, Span<float> destination)
    {
        OpChecks.Length(source, destination.Length, nameof(source));
        var (buffer, offset) = Resolve(source);
        Synchronize();
        new ReadOnlySpan<float>((byte*)buffer.Contents + offset, destination.Length).CopyTo(destination);
    }

    public void Synchronize()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        CommitPending();
        try
        {
            _gpu.WaitIdle();
        }
        finally
        {
            foreach (var batch in _inFlight)
            {
                batch.Reset();
                _freeBatches.Push(batch);
            }
            _inFlight.Clear();
            foreach (var buffer in _freeAfterSync)
                _gpu.Free(buffer);
            _freeAfterSync.Clear();
        }
    }

    /// <summary>Commits the dispatches recorded so far as one command buffer without waiting.</summary>
    public void CommitPending()
    {
        DropOpenCall();
        if (_pending is not { Count: > 0 })
            return;
        var batch = _pending;
        _pending = null;
        _inFlight.Add(batch);
        _gpu.Submit(batch);
    }

    public void Copy(BufferSlice source, BufferSlice destination)
    {
        OpChecks.SameLength(source, destination, nameof(source), nameof(destination));
        if (source.Length == 0)
            return;
        Elementwise("copy_f32", source.Length, 0f, source, destination);
    }

    public void Linear(LinearWeight weight, BufferSlice input, BufferSlice output, int rows)
    {
        OpChecks.Linear(weight, input, output, rows);
        var p = new LinearParams { OutRows = (uint)weight.Rows, Cols = (uint)weight.Cols, Tokens = (uint)rows, GroupSize = 1 };
        bool matmul = rows >= MatmulMinTokens;
        var geometry = matmul ? KernelGeometry.Matmul(weight.Rows, rows) : KernelGeometry.Qmv(weight.Rows, rows);
        var batch = Batch();
        KernelCall call;
        switch (weight)
        {
            case QuantizedWeight q:
                CheckQuantized(q, nameof(weight));
                call = Begin(batch, (matmul ? MmQuantizedKernels : QmvKernels)[q.Bits], geometry);
                BindWeight(call, q);
                p.GroupSize = (uint)q.GroupSize;
                p.ScaleType = (uint)q.ScaleType;
                break;
            case DenseWeight d:
                call = Begin(batch, DenseKernel(d.Type, matmul), geometry);
                var view = View(d);
                CommandBatch.Bind(call, 0, view.Data, view.DataOffset);
                break;
            default:
                throw new ArgumentException($"unknown weight kind {weight.GetType().Name}", nameof(weight));
        }
        BindSlice(call, 3, input);
        BindSlice(call, 4, output);
        batch.BindValue(call, 5, p);
        Enqueued();
    }

    public void Embed(LinearWeight table, ReadOnlySpan<int> ids, float scale, BufferSlice output)
    {
        OpChecks.Embed(table, ids, output);
        if (ids.Length == 0)
            return;
        var p = new EmbedParams { Cols = (uint)table.Cols, Tokens = (uint)ids.Length, Scale = scale, GroupSize = 1 };
        var batch = Batch();
        var call = Begin(batch, "embed", KernelGeometry.Embed(table.Cols, ids.Length));
        switch (table)
        {
            case QuantizedWeight q:
                CheckQuantized(q, nameof(table));
                BindWeight(call, q);
                p.Quantized = 1;
                p.Bits = (uint)q.Bits;
                p.GroupSize = (uint)q.GroupSize;
                p.ScaleType = (uint)q.ScaleType;
                break;
            case DenseWeight d:
                var view = View(d);
                CommandBatch.Bind(call, 0, view.Data, view.DataOffset);
                CommandBatch.Bind(call, 1, _placeholder, 0);
                CommandBatch.Bind(call, 2, _placeholder, 0);
                p.DenseType = (uint)d.Type;
                break;
            default:
                throw new ArgumentException($"unknown weight kind {table.GetType().Name}", nameof(table));
        }
        batch.BindBytes(call, 3, MemoryMarshal.AsBytes(ids));
        BindSlice(call, 4, output);
        batch.BindValue(call, 5, p);
        Enqueued();
    }

    public void RmsNorm(BufferSlice input, BufferSlice output, DenseWeight? weight, int rows, int dim, float eps)
    {
        OpChecks.RmsNorm(input, output, weight, rows, dim);
        var batch = Batch();
        var call = Begin(batch, "rms_norm", KernelGeometry.RmsNorm(rows, dim));
        BindSlice(call, 0, input);
        BindSlice(call, 1, output);
        if (weight is null)
        {
            CommandBatch.Bind(call, 2, _placeholder, 0);
        }
        else
        {
            var view = View(weight);
            CommandBatch.Bind(call, 2, view.Data, view.DataOffset);
        }
        batch.BindValue(call, 3, new NormParams
        {
            Rows = (uint)rows,
            Dim = (uint)dim,
            Eps = eps,
            WeightType = (uint)(weight?.Type ?? ScalarType.F32),
            HasWeight = weight is null ? 0u : 1u,
        });
        Enqueued();
    }

    public void Rope(BufferSlice x, ReadOnlySpan<int> positions, int heads, int headDim, BufferSlice inverseFrequencies)
    {
        OpChecks.Rope(x, positions, heads, headDim, inverseFrequencies);
        if (positions.Length == 0)
            return;
        var batch = Batch();
        var call = Begin(batch, "rope", KernelGeometry.Rope(positions.Length, heads, headDim));
        BindSlice(call, 0, x);
        batch.BindBytes(call, 1, MemoryMarshal.AsBytes(positions));
        BindSlice(call, 2, inverseFrequencies);
        batch.BindValue(call, 3, new RopeParams { Tokens = (uint)positions.Length, Heads = (uint)heads, HeadDim = (uint)headDim });
        Enqueued();
    }

    public void Attention(
        BufferSlice queries, BufferSlice blockKeys, BufferSlice blockValues, KvStore cache,
        int startPosition, int tokens, AttentionShape shape, BufferSlice output, ReadOnlySpan<TokenRange> bidirectional)
    {
        OpChecks.Attention(queries, blockKeys, blockValues, cache, startPosition, tokens, shape, output, bidirectional);
        if (shape.HeadDim > KernelGeometry.AttentionMaxHeadDim)
            throw new ArgumentException($"head dim {shape.HeadDim} exceeds the Metal attention kernel's limit of {KernelGeometry.AttentionMaxHeadDim}", nameof(shape));
        var batch = Batch();
        var call = Begin(batch, "attention", KernelGeometry.Attention(shape.Heads, tokens));
        BindSlice(call, 0, queries);
        BindSlice(call, 1, blockKeys);
        BindSlice(call, 2, blockValues);
        BindSlice(call, 3, cache.Keys);
        BindSlice(call, 4, cache.Values);
        BindSlice(call, 5, output);
        batch.BindValue(call, 6, new AttentionParams
        {
            Tokens = (uint)tokens,
            Heads = (uint)shape.Heads,
            KvHeads = (uint)shape.KvHeads,
            HeadDim = (uint)shape.HeadDim,
            Window = (uint)shape.Window,
            Capacity = (uint)cache.Capacity,
            Start = (uint)startPosition,
            Scale = shape.Scale,
            RangeCount = (uint)bidirectional.Length,
        });
        // TokenRange is two ints: exactly the [start, end) pairs the kernel reads.
        batch.BindBytes(call, 7, MemoryMarshal.AsBytes(bidirectional));
        Enqueued();
    }

    public void StoreKv(BufferSlice blockKeys, BufferSlice blockValues, KvStore cache, int startPosition, int tokens, int kvWidth)
    {
        OpChecks.StoreKv(blockKeys, blockValues, cache, startPosition, tokens, kvWidth);
        int first = Math.Max(0, tokens - cache.Capacity);
        var batch = Batch();
        var call = Begin(batch, "store_kv", KernelGeometry.Elementwise((long)(tokens - first) * kvWidth));
        BindSlice(call, 0, blockKeys);
        BindSlice(call, 1, blockValues);
        BindSlice(call, 2, cache.Keys);
        BindSlice(call, 3, cache.Values);
        batch.BindValue(call, 4, new StoreKvParams
        {
            Tokens = (uint)tokens,
            KvWidth = (uint)kvWidth,
            Capacity = (uint)cache.Capacity,
            Start = (uint)startPosition,
            First = (uint)first,
        });
        Enqueued();
    }

    public void GeGlu(BufferSlice gate, BufferSlice up, BufferSlice output)
    {
        OpChecks.SameLength(gate, up, nameof(gate), nameof(up));
        OpChecks.SameLength(gate, output, nameof(gate), nameof(output));
        if (gate.Length > 0)
            Elementwise("geglu_f32", gate.Length, 0f, gate, up, output);
    }

    public void Add(BufferSlice a, BufferSlice b, BufferSlice output)
    {
        OpChecks.SameLength(a, b, nameof(a), nameof(b));
        OpChecks.SameLength(a, output, nameof(a), nameof(output));
        if (a.Length > 0)
            Elementwise("add_f32", a.Length, 0f, a, b, output);
    }

    public void Scale(BufferSlice x, float factor)
    {
        if (x.Length > 0)
            Elementwise("scale_f32", x.Length, factor, x);
    }

    public void Softcap(BufferSlice x, float cap)
    {
        if (x.Length > 0)
            Elementwise("softcap_f32", x.Length, cap, x);
    }

    /// <summary>
    /// Sync point: the <c>ids.Length</c> largest values of <paramref name="logits"/> (ties: lower
    /// index first), in descending order, computed on the GPU so that only k pairs are read back.
    /// </summary>
    public unsafe void TopK(BufferSlice logits, Span<int> ids, Span<float> values)
    {
        int k = ids.Length;
        if (values.Length != k)
            throw new ArgumentException($"values has {values.Length} elements but ids has {k}", nameof(values));
        if (k < 1 || k > KernelGeometry.MaxTopK || k > logits.Length)
            throw new ArgumentOutOfRangeException(nameof(ids), k, $"k must be in [1, min({KernelGeometry.MaxTopK}, {logits.Length})]");
        long chunks = KernelGeometry.TopKChunks(logits.Length);
        long pairs = chunks * k;
        // Scratch: two ping-pong regions of (values, indices).
        long needed = 4 * pairs * 4;
        if (_topKScratch is null || _topKScratch.Bytes < needed)
        {
            if (_topKScratch is not null)
                _freeAfterSync.Add(_topKScratch);
            _topKScratch = _gpu.NewBuffer(needed);
        }
        var scratch = _topKScratch;
        long Region(int which, int part) => (which * 2 + part) * pairs * 4;

        var (logitBuffer, logitOffset) = Resolve(logits);
        var batch = Batch();
        var call = Begin(batch, "topk", KernelGeometry.TopK(logits.Length));
        CommandBatch.Bind(call, 0, logitBuffer, logitOffset);
        CommandBatch.Bind(call, 1, _placeholder, 0);
        CommandBatch.Bind(call, 2, scratch, Region(0, 0));
        CommandBatch.Bind(call, 3, scratch, Region(0, 1));
        batch.BindValue(call, 4, new TopKParams { N = (uint)logits.Length, K = (uint)k, HasIndices = 0 });
        Enqueued();
        int current = 0;
        long candidates = chunks * k;
        while (chunks > 1)
        {
            chunks = KernelGeometry.TopKChunks(candidates);
            batch = Batch();
            call = Begin(batch, "topk", KernelGeometry.TopK(candidates));
            CommandBatch.Bind(call, 0, scratch, Region(current, 0));
            CommandBatch.Bind(call, 1, scratch, Region(current, 1));
            CommandBatch.Bind(call, 2, scratch, Region(1 - current, 0));
            CommandBatch.Bind(call, 3, scratch, Region(1 - current, 1));
            batch.BindValue(call, 4, new TopKParams { N = (uint)candidates, K = (uint)k, HasIndices = 1 });
            Enqueued();
            current = 1 - current;
            candidates = chunks * k;
        }
        Synchronize();
        new ReadOnlySpan<float>((byte*)scratch.Contents + Region(current, 0), k).CopyTo(values);
        new ReadOnlySpan<int>((byte*)scratch.Contents + Region(current, 1), k).CopyTo(ids);
    }

    public void Dispose()
    {
        if (_disposed)
            return;
        try
        {
            Synchronize();
        }
        finally
        {
            _disposed = true;
            foreach (var buffer in _weightBuffers)
                _gpu.Free(buffer);
            _weightBuffers.Clear();
            if (_topKScratch is not null)
                _gpu.Free(_topKScratch);
            _gpu.Free(_placeholder);
            _gpu.Dispose();
        }
    }

    // ---------------------------------------------------------------------------------------

    private static string[] Kernel(string prefix)
    {
        var names = new string[9];
        foreach (int bits in MlxQuantFormat.SupportedBits)
            names[bits] = prefix + bits;
        return names;
    }

    private static string DenseKernel(ScalarType type, bool matmul) => (type, matmul) switch
    {
        (ScalarType.F32, false) => "dmv_f32",
        (ScalarType.F16, false) => "dmv_f16",
        (ScalarType.BF16, false) => "dmv_bf16",
        (ScalarType.F32, true) => "mm_f32",
        (ScalarType.F16, true) => "mm_f16",
        (ScalarType.BF16, true) => "mm_bf16",
        _ => throw new ArgumentException($"unsupported dense weight type {type}", nameof(type)),
    };

    private static void CheckQuantized(QuantizedWeight q, string name)
    {
        // The kernels need whole 16-value lane chunks inside a group (qmv) and whole words per row.
        if (!MlxQuantFormat.IsSupportedBits(q.Bits) || q.GroupSize % 16 != 0 || !MlxQuantFormat.RowFits(q.Cols, q.Bits, q.GroupSize))
            throw new ArgumentException($"unsupported quantized geometry: {q.Bits}-bit, group {q.GroupSize}, {q.Cols} columns", name);
    }

    private CommandBatch Batch()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        DropOpenCall();
        return _pending ??= _freeBatches.Count > 0 ? _freeBatches.Pop() : new CommandBatch();
    }

    /// <summary>Starts a call; it stays open (and is dropped if an argument fails to bind) until <see cref="Enqueued"/>.</summary>
    private KernelCall Begin(CommandBatch batch, string kernel, DispatchGeometry geometry)
    {
        var call = batch.Add(kernel, geometry);
        _callOpen = true;
        return call;
    }

    private void Enqueued()
    {
        _callOpen = false;
        if (_pending!.Count >= CallsPerCommandBuffer)
            CommitPending();
    }

    private void DropOpenCall()
    {
        if (_callOpen)
        {
            _pending!.DropLast();
            _callOpen = false;
        }
    }

    private void Elementwise(string kernel, long n, float value, BufferSlice first, BufferSlice? second = null, BufferSlice? third = null)
    {
        var batch = Batch();
        var call = Begin(batch, kernel, KernelGeometry.Elementwise(n));
        int index = 0;
        BindSlice(call, index++, first);
        if (second is { } s)
            BindSlice(call, index++, s);
        if (third is { } t)
            BindSlice(call, index++, t);
        batch.BindValue(call, index, new ElementwiseParams { N = checked((uint)n), Value = value });
        Enqueued();
    }

    private (GpuBuffer Buffer, long ByteOffset) Resolve(BufferSlice slice)
    {
        if (slice.Buffer is not MetalBuffer buffer || buffer.Owner != this)
            throw new ArgumentException($"buffer {slice} was not allocated by this {Name} backend");
        ObjectDisposedException.ThrowIf(buffer.Gpu is null, buffer);
        return (buffer.Gpu, slice.Offset * 4);
    }

    private void BindSlice(KernelCall call, int index, BufferSlice slice)
    {
        var (buffer, offset) = Resolve(slice);
        CommandBatch.Bind(call, index, buffer, offset);
    }

    private void BindWeight(KernelCall call, QuantizedWeight q)
    {
        var view = View(q);
        CommandBatch.Bind(call, 0, view.Data, view.DataOffset);
        CommandBatch.Bind(call, 1, view.Scales!, view.ScalesOffset);
        CommandBatch.Bind(call, 2, view.Biases!, view.BiasesOffset);
    }

    private sealed record WeightView(GpuBuffer Data, long DataOffset, GpuBuffer? Scales, long ScalesOffset, GpuBuffer? Biases, long BiasesOffset);

    private WeightView View(LinearWeight weight)
    {
        if (_weights.TryGetValue(weight, out var view))
            return view;
        switch (weight)
        {
            case QuantizedWeight q:
                long side = (long)q.Rows * q.GroupsPerRow * Scalars.SizeOf(q.ScaleType);
                var packed = Wrap(q.Packed, (long)q.Rows * q.WordsPerRow * 4, out long packedOffset);
                var scales = Wrap(q.Scales, side, out long scalesOffset);
                var biases = Wrap(q.Biases, side, out long biasesOffset);
                view = new WeightView(packed, packedOffset, scales, scalesOffset, biases, biasesOffset);
                break;
            case DenseWeight d:
                view = new WeightView(Wrap(d.Data, d.ByteSize, out long offset), offset, null, 0, null, 0);
                break;
            default:
                throw new ArgumentException($"unknown weight kind {weight.GetType().Name}", nameof(weight));
        }
        _weights.Add(weight, view);
        return view;
    }

    private GpuBuffer Wrap(nint pointer, long bytes, out long offset)
    {
        var buffer = _gpu.WrapHostMemory(pointer, Math.Max(bytes, 4), out offset);
        _weightBuffers.Add(buffer);
        return buffer;
    }

    private void Release(MetalBuffer buffer)
    {
        if (buffer.Gpu is null || _disposed)
            return;
        // Enqueued or in-flight work may still use it: free at the next sync point.
        _freeAfterSync.Add(buffer.Gpu);
        buffer.Gpu = null;
    }

    private sealed class MetalBuffer(MetalBackend owner, long length, GpuBuffer gpu) : DeviceBuffer(owner, length)
    {
        public GpuBuffer? Gpu { get; set; } = gpu;

        public override void Dispose() => owner.Release(this);
    }
}
