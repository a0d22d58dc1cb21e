using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Pipeline.Kernels.Quantization;

namespace Pipeline.Kernels.Cpu;

/// <summary>
/// The CPU implementation of <see cref="IBackend"/>: every op executes when it is called (so
/// <see cref="Read"/> and <see cref="Synchronize"/> have nothing to wait for). Large ops are split
/// over one persistent <see cref="WorkerPool"/>; small ones run on the caller, where a thread
/// hand-off would cost more than the work. Ops allocate nothing on the managed heap: jobs are
/// preallocated and scratch memory is native and grows only when a bigger shape first appears.
/// </summary>
public sealed unsafe class CpuBackend : IBackend
{
    /// <summary>Below this many multiply-adds (or elements) an op runs on the calling thread.</summary>
    private const long ParallelThreshold = 1 << 15;

    private readonly WorkerPool _pool;
    private readonly NativeScratch[] _workerScratch;
    private readonly NativeScratch _inputScratch = new();
    private readonly LinearJob _linear;
    private readonly RowsJob _rows;
    private readonly AttentionJob _attention;
    private readonly ElementwiseJob _elementwise;
    private TokenRange[] _bidirectional = new TokenRange[4];
    private bool _disposed;

    /// <summary>
    /// Below this many token rows, 2/3/4-bit weights with groups of 64 run the split-activation matvec
    /// (<see cref="SplitActivationKernels"/>; x as three exact int8 terms: measured faster than the small-M kernel at
    /// 2-3 tokens). Other Linears of 2 to <see cref="SmallGemmKernels.MaxTokens"/> rows (16; 32 dense) (and these from this
    /// count on) run <see cref="SmallGemmKernels"/> on the AVX2 path; more rows, or other paths, the blocked
    /// GEMM (<see cref="GemmKernels"/>); one token of other weights, the f32 matvec.
    /// </summary>
    public const int GemmMinTokens = 4;

    /// <summary>Environment variable that turns <see cref="Int8Activations"/> on by default ("1").</summary>
    public const string Int8ActivationsVariable = "PIPELINE_CPU_INT8";

    /// <param name="threads">Worker threads, the caller included (0: one per processor).</param>
    /// <param name="int8Activations">
    /// Quantized matvecs of 2- and 4-bit weights (groups of 64, bf16 scales) quantize the activations
    /// to int8 per group and use integer dot products (<see cref="Int8Kernels"/>): about 2x less
    /// compute per weight byte, at the price of rounding each x by up to 1/254 of its group's largest
    /// |x| (llama.cpp's K-quant accuracy). Off: matvecs of fewer than <see cref="GemmMinTokens"/> tokens on those weights use
    /// split activations (<see cref="SplitActivationKernels"/>, x split into exact integer terms: rounding at f32 level,
    /// within the model tests' tolerance of the f32 reference) and everything else
    /// (the f32 matvec, the <see cref="GemmKernels"/> GEMM) matches the f32 reference up to summation order. Null: on when the environment variable <see cref="Int8ActivationsVariable"/> is "1".
    /// </param>
    public CpuBackend(int threads = 0, bool? int8Activations = null)
    {
        // An unknown or unsupported PIPELINE_CPU_ISA stops here with one clear message.
        CpuKernels.ParseIsa(Environment.GetEnvironmentVariable(CpuKernels.IsaVariable));
        Int8Activations = int8Activations ?? Environment.GetEnvironmentVariable(Int8ActivationsVariable) == "1";
        int count = threads > 0 ? threads : Environment.ProcessorCount;
        _pool = new WorkerPool(count);
        _workerScratch = new NativeScratch[count];
        for (int i = 0; i < count; i++)
            _workerScratch[i] = new NativeScratch();
        _linear = new LinearJob(this);
        _rows = new RowsJob(this);
        _attention = new AttentionJob(this);
        _elementwise = new ElementwiseJob();
    }

    public string Name => $"cpu ({_pool.Workers} threads, {CpuKernels.IsaName}{(Int8Activations ? ", int8 activations" : "")})";

    public int Threads => _pool.Workers;

    /// <summary>Whether 2/4-bit matvecs run on int8-quantized activations (see the constructor).</summary>
    public bool Int8Activations { get; }

    public DeviceBuffer Allocate(long elements)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(elements);
        ObjectDisposedException.ThrowIf(_disposed, this);
        return new CpuBuffer(this, elements);
    }

    public void Write(BufferSlice destination, ReadOnlySpan<float> source)
    {
        OpChecks.Length(destination, source.Length, nameof(destination));
        source.CopyTo(new Span<float>(Pointer(destination), source.Length));
    }

    public void Read(BufferSlice source, Span<float> destination)
    {
        OpChecks.Length(source, destination.Length, nameof(source));
        new ReadOnlySpan<float>(Pointer(source), destination.Length).CopyTo(destination);
    }

    public void Synchronize()
    {
    }

    public void Copy(BufferSlice source, BufferSlice destination)
    {
        OpChecks.SameLength(source, destination, nameof(source), nameof(destination));
        long bytes = source.Length * 4;
        Buffer.MemoryCopy(Pointer(source), Pointer(destination), bytes, bytes);
    }

    // ---------------- Linear ----------------

    public void Linear(LinearWeight weight, BufferSlice input, BufferSlice output, int rows)
    {
        OpChecks.Linear(weight, input, output, rows);
        var job = _linear;
        job.Weight = weight;
        job.X = Pointer(input);
        job.Y = Pointer(output);
        job.Tokens = rows;
        job.Int8 = false;
        job.Split = false;
        job.Gemm = false;
        job.Small = false;
        if (weight is QuantizedWeight qi && Int8Activations && Int8Kernels.Supports(qi))
        {
            CheckGeometry(qi, nameof(weight));
            // [rows, PreparedBytes]: each token's int8 x, steps and sums (see Int8Kernels.Prepare).
            int preparedBytes = Int8Kernels.PreparedBytes(qi.Cols);
            byte* prepared = (byte*)_inputScratch.Get((long)rows * preparedBytes / 4);
            job.Int8 = true;
            job.XQuantized = (sbyte*)prepared;
            job.XBytes = preparedBytes;
            for (int t = 0; t < rows; t++)
                Int8Kernels.Prepare(job.X + (long)t * qi.Cols, qi.Cols, qi.Bits, prepared + (long)t * preparedBytes);
        }
        else if (weight is QuantizedWeight q16 && rows < GemmMinTokens && SplitActivationKernels.Supports(q16))
        {
            CheckGeometry(q16, nameof(weight));
            // [rows, InputShorts] integer x terms, then [rows, groups] steps and [rows, groups] sums.
            int groups = q16.GroupsPerRow, shorts = SplitActivationKernels.InputShorts(q16.Cols, q16.Bits);
            float* scratch = _inputScratch.Get((long)rows * (shorts / 2 + 2 * groups));
            job.Split = true;
            job.XQuantized = (sbyte*)scratch;
            job.XScaled = scratch + (long)rows * shorts / 2;
            job.XSums = job.XScaled + (long)rows * groups;
            for (int t = 0; t < rows; t++)
                SplitActivationKernels.QuantizeInput(job.X + (long)t * q16.Cols, q16.Cols, q16.Bits, (short*)job.XQuantized + (long)t * shorts, job.XScaled + (long)t * groups, job.XSums + (long)t * groups);
        }
        else if (rows >= SmallGemmKernels.MinTokens && rows <= SmallGemmKernels.MaxTokens(weight) && SmallGemmKernels.Supports(weight))
        {
            if (weight is QuantizedWeight qs)
                CheckGeometry(qs, nameof(weight));
            // [tiles][cols/8][tile tokens][8] x, shared by the workers.
            job.XPacked = _inputScratch.Get(SmallGemmKernels.PackedInputFloats(rows, weight.Cols));
            SmallGemmKernels.PackInput(job.X, rows, weight.Cols, job.XPacked);
            job.Small = true;
        }
        else if (rows > 1 || weight is DenseWeight { Type: ScalarType.F16 })
        {
            if (weight is QuantizedWeight qg)
                CheckGeometry(qg, nameof(weight));
            else if (weight is not DenseWeight)
                throw new ArgumentException($"unknown weight kind {weight.GetType().Name}", nameof(weight));
            job.Gemm = true;
        }
        else if (weight is QuantizedWeight q)
        {
            CheckGeometry(q, nameof(weight));
            // Pre-scale x once so the packed codes need no shifts (see CpuKernels).
            float* scratch = _inputScratch.Get(q.Cols + q.GroupsPerRow);
            job.XScaled = scratch;
            job.XSums = scratch + q.Cols;
            CpuKernels.PrepareQuantizedInput(job.X, q.Cols, q.Bits, q.GroupSize, job.XScaled, job.XSums);
        }
        else if (weight is not DenseWeight)
        {
            throw new ArgumentException($"unknown weight kind {weight.GetType().Name}", nameof(weight));
        }

        long work = (long)rows * weight.Rows * weight.Cols;
        // The GEMM splits by whole panels of output rows; the matvecs by any rows.
        int unit = job.Gemm ? GemmKernels.PanelRows : 1;
        int units = (weight.Rows + unit - 1) / unit;
        int chunks = work < ParallelThreshold ? 1 : Math.Min(units, _pool.Workers * 8);
        job.RowsPerChunk = (units + chunks - 1) / chunks * unit;
        _pool.Run(job, (weight.Rows + job.RowsPerChunk - 1) / job.RowsPerChunk);
    }

    /// <summary>The kernels assume MLX's bit widths and group sizes (groups of 4, 8 or 16 chunks of 8 codes).</summary>
    private static void CheckGeometry(QuantizedWeight q, string parameter)
    {
        if (!MlxQuantFormat.IsSupportedBits(q.Bits) || !MlxQuantFormat.IsSupportedGroupSize(q.GroupSize) || !MlxQuantFormat.RowFits(q.Cols, q.Bits, q.GroupSize))
            throw new ArgumentException($"unsupported quantized geometry: {q.Bits}-bit, group {q.GroupSize}, {q.Cols} columns", parameter);
    }

    private sealed class LinearJob(CpuBackend backend) : IParallelJob
    {
        private const int RowBlock = 16;

        public LinearWeight Weight = null!;
        public float* X, Y, XScaled, XSums;   // XScaled holds the split-term steps when Split
        public float* XPacked;   // x for SmallGemmKernels when Small
        public sbyte* XQuantized;   // prepared x when Int8 (Int8Kernels.Prepare), three int8 terms per value when Split
        public bool Int8, Split, Gemm, Small;
        public int XBytes;   // bytes of one token's prepared x when Int8
        public int Tokens, RowsPerChunk;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Execute(int chunk, int worker)
        {
            int first = chunk * RowsPerChunk;
            int end = Math.Min(Weight.Rows, first + RowsPerChunk);
            int cols = Weight.Cols, outRows = Weight.Rows;

            if (Weight is QuantizedWeight q8 && Int8)
            {
                Int8Kernels.MatMul(q8, first, end, (byte*)XQuantized, XBytes, Tokens, Y, outRows);
                return;
            }

            if (Weight is QuantizedWeight q16 && Split)
            {
                int groups = q16.GroupsPerRow;
                for (int block = first; block < end; block += RowBlock)
                {
                    SplitActivationKernels.MatVec(q16, block, Math.Min(end, block + RowBlock), (short*)XQuantized, XScaled, XSums, Y, outRows, Tokens);
                }
                return;
            }

            if (Small)
            {
                SmallGemmKernels.Multiply(Weight, first, end, XPacked, Tokens, Y, backend._workerScratch[worker].Get(SmallGemmKernels.ScratchFloats));
                return;
            }

            if (Gemm)
            {
                GemmKernels.Multiply(Weight, first, end, X, Tokens, Y, backend._workerScratch[worker].Get(GemmKernels.ScratchFloats));
                return;
            }

            // One token from here on.
            if (Weight is QuantizedWeight q)
            {
                CpuKernels.MatVecQuantized(q, first, end, X, XScaled, XSums, Y);
                return;
            }
            var dense = (DenseWeight)Weight;
            for (int r = first; r < end; r++)
            {
                Y[r] = dense.Type == ScalarType.BF16
                    ? CpuKernels.DotBf16((ushort*)dense.Data + (long)r * cols, X, cols)
                    : CpuKernels.Dot((float*)dense.Data + (long)r * cols, X, cols);
            }
        }
    }

    // ---------------- Embed, RmsNorm, Rope: independent rows ----------------

    private enum RowsOp
    {
        Embed,
        RmsNorm,
        Rope,
    }

    public void Embed(LinearWeight table, ReadOnlySpan<int> ids, float scale, BufferSlice output)
    {
        OpChecks.Embed(table, ids, output);
        if (table is QuantizedWeight quantized)
            CheckGeometry(quantized, nameof(table));
        float* y = Pointer(output);
        int cols = table.Cols;
        for (int t = 0; t < ids.Length; t++)
        {
            float* row = y + (long)t * cols;
            switch (table)
            {
                case QuantizedWeight q:
                    CpuKernels.DequantizeRow(q, ids[t], row, scale);
                    break;
                case DenseWeight d:
                    CpuKernels.ToFloat(d.Data, (long)ids[t] * cols, d.Type, row, cols);
                    CpuKernels.Scale(row, cols, scale);
                    break;
                default:
                    throw new ArgumentException($"unknown weight kind {table.GetType().Name}", nameof(table));
            }
        }
    }

    public void RmsNorm(BufferSlice input, BufferSlice output, DenseWeight? weight, int rows, int dim, float eps)
    {
        OpChecks.RmsNorm(input, output, weight, rows, dim);
        float* w = null;
        if (weight is not null)
        {
            w = _inputScratch.Get(dim);
            CpuKernels.ToFloat(weight.Data, 0, weight.Type, w, dim);
        }
        var job = _rows;
        job.Op = RowsOp.RmsNorm;
        job.X = Pointer(input);
        job.Y = Pointer(output);
        job.Weight = w;
        job.Dim = dim;
        job.Eps = eps;
        RunRows(job, rows, (long)rows * dim);
    }

    public void Rope(BufferSlice x, ReadOnlySpan<int> positions, int heads, int headDim, BufferSlice inverseFrequencies)
    {
        OpChecks.Rope(x, positions, heads, headDim, inverseFrequencies);
        // Positions are copied at enqueue, as the contract says.
        float* copy = _inputScratch.Get(positions.Length);
        for (int t = 0; t < positions.Length; t++)
            ((int*)copy)[t] = positions[t];
        var job = _rows;
        job.Op = RowsOp.Rope;
        job.X = Pointer(x);
        job.Positions = (int*)copy;
        job.Weight = Pointer(inverseFrequencies);
        job.Heads = heads;
        job.Dim = headDim;
        RunRows(job, positions.Length, (long)positions.Length * heads * headDim * 4);
    }

    private void RunRows(RowsJob job, int rows, long work)
    {
        int chunks = work < ParallelThreshold ? 1 : Math.Min(rows, _pool.Workers * 4);
        job.RowsPerChunk = (rows + chunks - 1) / chunks;
        job.Rows = rows;
        _pool.Run(job, (rows + job.RowsPerChunk - 1) / job.RowsPerChunk);
    }

    private sealed class RowsJob(CpuBackend backend) : IParallelJob
    {
        public RowsOp Op;
        public float* X, Y, Weight;
        public int* Positions;
        public int Rows, RowsPerChunk, Dim, Heads;
        public float Eps;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Execute(int chunk, int worker)
        {
            int first = chunk * RowsPerChunk;
            int end = Math.Min(Rows, first + RowsPerChunk);
            switch (Op)
            {
                case RowsOp.RmsNorm:
                    for (int r = first; r < end; r++)
                        CpuKernels.RmsNormRow(X + (long)r * Dim, Y + (long)r * Dim, Weight, Dim, Eps);
                    break;
                case RowsOp.Rope:
                    {
                        int half = Dim / 2;
                        float* cos = backend._workerScratch[worker].Get(2 * half);
                        float* sin = cos + half;
                        for (int t = first; t < end; t++)
                        {
                            for (int j = 0; j < half; j++)
                            {
                                // Angles in double: positions reach 10^5 and more.
                                (double s, double c) = Math.SinCos((double)Positions[t] * Weight[j]);
                                cos[j] = (float)c;
                                sin[j] = (float)s;
                            }
                            for (int h = 0; h < Heads; h++)
                                CpuKernels.RopeHead(X + ((long)t * Heads + h) * Dim, cos, sin, half);
                        }
                        break;
                    }
            }
        }
    }

    // ---------------- Attention ----------------

    public void Attention(
        BufferSlice queries, BufferSlice blockKeys, BufferSlice blockValues, KvStore cache,
        int startPosition, int tokens, AttentionShape shape, BufferSlice output, ReadOnlySpan<TokenRange> bidirectional)
    {
        OpChecks.Attention(queries, blockKeys, blockValues, cache, startPosition, tokens, shape, output, bidirectional);
        if (_bidirectional.Length < bidirectional.Length)
            _bidirectional = new TokenRange[bidirectional.Length];
        bidirectional.CopyTo(_bidirectional);

        var job = _attention;
        job.Q = Pointer(queries);
        job.BlockK = Pointer(blockKeys);
        job.BlockV = Pointer(blockValues);
        job.CacheK = Pointer(cache.Keys);
        job.CacheV = Pointer(cache.Values);
        job.Capacity = cache.Capacity;
        job.O = Pointer(output);
        job.Start = startPosition;
        job.Shape = shape;
        job.RangeCount = bidirectional.Length;

        int items = tokens * shape.Heads;
        long visible = shape.Window > 0 ? Math.Min(shape.Window, startPosition + tokens) : startPosition + tokens;
        long work = items * visible * shape.HeadDim * 2;
        int chunks = work < ParallelThreshold ? 1 : Math.Min(items, _pool.Workers * 4);
        job.ItemsPerChunk = (items + chunks - 1) / chunks;
        job.Items = items;
        _pool.Run(job, (items + job.ItemsPerChunk - 1) / job.ItemsPerChunk);
    }

    private sealed class AttentionJob(CpuBackend backend) : IParallelJob
    {
        public float* Q, BlockK, BlockV, CacheK, CacheV, O;
        public int Capacity, Start, Items, ItemsPerChunk, RangeCount;
        public AttentionShape Shape;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Execute(int chunk, int worker)
        {
            int first = chunk * ItemsPerChunk;
            int end = Math.Min(Items, first + ItemsPerChunk);
            int heads = Shape.Heads, kvHeads = Shape.KvHeads, d = Shape.HeadDim, window = Shape.Window;
            int group = heads / kvHeads;
            for (int item = first; item < end; item++)
            {
                int t = item / heads, h = item % heads, kvHead = h / group;
                int i = Start + t;
                int lo = window > 0 ? Math.Max(0, i - window + 1) : 0;
                int cachedCount = Math.Max(0, Start - lo);
                int blockFirst = Math.Max(Start, lo) - Start;
                int blockLast = LastVisibleRow(t);
                int count = cachedCount + blockLast - blockFirst + 1;

                float* q = Q + (long)item * d;
                float* scores = backend._workerScratch[worker].Get(count);
                float max = float.NegativeInfinity;
                int n = 0;
                for (int p = lo; p < Start; p++, n++)
                {
                    scores[n] = CpuKernels.Dot(q, CacheK + ((long)(p % Capacity) * kvHeads + kvHead) * d, d) * Shape.Scale;
                    max = MathF.Max(max, scores[n]);
                }
                for (int r = blockFirst; r <= blockLast; r++, n++)
                {
                    scores[n] = CpuKernels.Dot(q, BlockK + ((long)r * kvHeads + kvHead) * d, d) * Shape.Scale;
                    max = MathF.Max(max, scores[n]);
                }
                float sum = CpuKernels.ExpShifted(scores, count, max);

                float* o = O + (long)item * d;
                new Span<float>(o, d).Clear();
                n = 0;
                for (int p = lo; p < Start; p++, n++)
                    CpuKernels.AddScaled(o, CacheV + ((long)(p % Capacity) * kvHeads + kvHead) * d, scores[n], d);
                for (int r = blockFirst; r <= blockLast; r++, n++)
                    CpuKernels.AddScaled(o, BlockV + ((long)r * kvHeads + kvHead) * d, scores[n], d);
                CpuKernels.Scale(o, d, 1f / sum);
            }
        }

        /// <summary>The last block row row t sees: itself, or the end of a bidirectional range holding it.</summary>
        private int LastVisibleRow(int t)
        {
            int last = t;
            for (int k = 0; k < RangeCount; k++)
            {
                var range = backend._bidirectional[k];
                if (t >= range.Start && t < range.End)
                    last = Math.Max(last, range.End - 1);
            }
            return last;
        }
    }

    public void StoreKv(BufferSlice blockKeys, BufferSlice blockValues, KvStore cache, int startPosition, int tokens, int kvWidth)
    {
        OpChecks.StoreKv(blockKeys, blockValues, cache, startPosition, tokens, kvWidth);
        float* k = Pointer(blockKeys), v = Pointer(blockValues);
        float* cacheK = Pointer(cache.Keys), cacheV = Pointer(cache.Values);
        long bytes = (long)kvWidth * 4;
        for (int t = Math.Max(0, tokens - cache.Capacity); t < tokens; t++)
        {
            long slot = (startPosition + t) % cache.Capacity;
            Buffer.MemoryCopy(k + (long)t * kvWidth, cacheK + slot * kvWidth, bytes, bytes);
            Buffer.MemoryCopy(v + (long)t * kvWidth, cacheV + slot * kvWidth, bytes, bytes);
        }
    }

    // ---------------- elementwise ----------------

    private enum ElementwiseOp
    {
        GeGlu,
        Add,
        Scale,
        Softcap,
    }

    public void GeGlu(BufferSlice gate, BufferSlice up, BufferSlice output)
    {
        OpChecks.SameLength(gate, up, nameof(gate), nameof(up));
        OpChecks.SameLength(gate, output, nameof(gate), nameof(output));
        RunElementwise(ElementwiseOp.GeGlu, Pointer(gate), Pointer(up), Pointer(output), output.Length, 0);
    }

    public void Add(BufferSlice a, BufferSlice b, BufferSlice output)
    {
        OpChecks.SameLength(a, b, nameof(a), nameof(b));
        OpChecks.SameLength(a, output, nameof(a), nameof(output));
        RunElementwise(ElementwiseOp.Add, Pointer(a), Pointer(b), Pointer(output), output.Length, 0);
    }

    public void Scale(BufferSlice x, float factor) =>
        RunElementwise(ElementwiseOp.Scale, Pointer(x), null, Pointer(x), x.Length, factor);

    public void Softcap(BufferSlice x, float cap)
    {
        if (!(cap > 0))
            throw new ArgumentOutOfRangeException(nameof(cap), cap, "softcap must be positive");
        RunElementwise(ElementwiseOp.Softcap, Pointer(x), null, Pointer(x), x.Length, cap);
    }

    private void RunElementwise(ElementwiseOp op, float* a, float* b, float* y, long count, float value)
    {
        const long ChunkElements = 1 << 14;
        var job = _elementwise;
        job.Op = op;
        job.A = a;
        job.B = b;
        job.Y = y;
        job.Count = count;
        job.Value = value;
        job.PerChunk = count < ParallelThreshold * 2 ? Math.Max(1, count) : ChunkElements;
        _pool.Run(job, (int)((count + job.PerChunk - 1) / job.PerChunk));
    }

    private sealed class ElementwiseJob : IParallelJob
    {
        public ElementwiseOp Op;
        public float* A, B, Y;
        public long Count, PerChunk;
        public float Value;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Execute(int chunk, int worker)
        {
            long first = chunk * PerChunk;
            long n = Math.Min(Count, first + PerChunk) - first;
            switch (Op)
            {
                case ElementwiseOp.GeGlu:
                    CpuKernels.GeGlu(A + first, B + first, Y + first, n);
                    break;
                case ElementwiseOp.Add:
                    CpuKernels.Add(A + first, B + first, Y + first, n);
                    break;
                case ElementwiseOp.Scale:
                    CpuKernels.Scale(Y + first, n, Value);
                    break;
                case ElementwiseOp.Softcap:
                    CpuKernels.Softcap(Y + first, n, Value);
                    break;
            }
        }
    }

    // ---------------- plumbing ----------------

    private float* Pointer(BufferSlice slice)
    {
        if (slice.Buffer is not CpuBuffer buffer || buffer.Owner != this)
            throw new ArgumentException($"buffer {slice} was not allocated by this CPU backend");
        return buffer.Data + slice.Offset;
    }

    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        _pool.Dispose();
        foreach (var scratch in _workerScratch)
            scratch.Dispose();
        _inputScratch.Dispose();
    }
}
