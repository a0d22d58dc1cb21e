using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Pipeline.Kernels.Cpu;

/// <summary>
/// Linear over a few token rows (batched decode: <see cref="MinTokens"/> to <see cref="MaxTokens"/>: 16, 32 for dense weights),
/// AVX2 + FMA: Y[t, r] = sum_k X[t, k] W[r, k] with every weight decoded straight into a register
/// (no packed panel): per 8 columns of one weight row, the 8 codes are broadcast, shifted per lane,
/// masked, converted to f32 and turned into exactly the reference weights, f32(q * scale) + bias (two
/// roundings, no FMA), or widened exactly (bf16, f16, f32); then one FMA per token against that token's
/// 8 x values, into one accumulator per token (up to 8 tokens per pass). The row's accumulators are
/// reduced horizontally at the end of each column block. So the result differs from the f32 reference
/// only by summation order. Dense bf16/f32 rows go three at a time (<see cref="DenseRows"/>: each x load
/// feeds three rows, up to 4 tokens per pass).
/// <para>
/// x is repacked once per op into [tile][cols/8][tile tokens][8] (<see cref="PackInput"/>): the tile's
/// x vectors for one 8-column step are adjacent, and a column block of it (<see cref="XBlockFloats"/>,
/// 16 KiB) stays in L1 while the weight rows of a row block stream past; the weights are read in place
/// from the mmapped checkpoint and software-prefetched a few rows ahead (rows of a column block are
/// strided, which the hardware prefetchers do not follow); dense bf16/f32 rows in blocks that fit L2,
/// the next block prefetched sequentially while one is multiplied.
/// </para>
/// </summary>
internal static unsafe class SmallGemmKernels
{
    /// <summary>
    /// Fewest token rows that take this path (one row: the f32 matvec, bf16 dot). Weights the split-activation
    /// matvec covers take it below <see cref="CpuBackend.GemmMinTokens"/> instead (faster at 2-3 tokens).
    /// </summary>
    public const int MinTokens = 2;

    /// <summary>
    /// Most token rows that take this path (above: the blocked GEMM, whose packed panel amortizes over many
    /// tokens). Measured crossover (one thread, streamed): quantized weights between 16 and 32 tokens (q2
    /// at 24: 1.02 vs 0.94 cycles per 8 weights per token); dense bf16 still 1.7x faster than the GEMM at 32.
    /// </summary>
    public static int MaxTokens(LinearWeight weight) => weight is DenseWeight ? MostKernelTokens : 16;

    /// <summary>Tokens per pass: 8 accumulators, the weight vector, scale, bias and shift constants fit in 16 ymm registers.</summary>
    private const int TileTokens = 8;

    /// <summary>Weight rows per block: their [RowBlock, 8] partial sums (4 KiB) stay in L1 with the x block.</summary>
    private const int RowBlock = 128;

    /// <summary>Floats of x one column block holds (tokens x columns): 16 KiB, half of L1d.</summary>
    private const int XBlockFloats = 4096;

    /// <summary>
    /// How far ahead (in bytes of weights, in the row loop's order) the weights are prefetched: a row's
    /// part of a column block is 128 B to 4 KiB, so a fixed row count is too short for some and would push
    /// the x block out of L1 for others. Measured on q3 down at 3 tokens: 2 rows ahead (~1 KiB) was 20-30%
    /// slower than 32 rows (~15 KiB).
    /// </summary>
    private const int PrefetchBytes = 8192;

    /// <summary>Most tokens one <see cref="Multiply"/> call takes (four tiles).</summary>
    public const int MostKernelTokens = 4 * TileTokens;

    /// <summary>Scratch floats one worker needs: the row block's partial sums, per tile.</summary>
    public const long ScratchFloats = 4L * RowBlock * TileTokens;

    /// <summary>Weights this path decodes (others keep the GEMM): 2/3/4/8-bit MLX affine, dense bf16/f16/f32; AVX2 only.</summary>
    public static bool Supports(LinearWeight weight) => CpuKernels.UseAvx2 && Fma.IsSupported && weight switch
    {
        QuantizedWeight q => q.Bits is 2 or 3 or 4 or 8,
        DenseWeight => true,
        _ => false,
    };

    /// <summary>Floats <see cref="PackInput"/> writes for <paramref name="tokens"/> rows of <paramref name="cols"/>.</summary>
    public static long PackedInputFloats(int tokens, int cols) => (long)tokens * Padded(cols);

    private static int Padded(int cols) => (cols + 7) & ~7;

    /// <summary>Tiles of at most 8 tokens, as even as possible (9 = 5 + 4): fewer accumulators idle the FMA units less than a 1-token tail.</summary>
    private static int TileCount(int tokens) => (tokens + TileTokens - 1) / TileTokens;

    /// <summary>
    /// x [tokens, cols] into packed [tile][cols/8][n][8] (n tokens of the tile, columns past cols zero),
    /// the tile of tokens from t starting at packed + t * Padded(cols).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackInput(float* x, int tokens, int cols, float* packed)
    {
        int padded = Padded(cols), full = cols & ~7;
        int tiles = TileCount(tokens);
        for (int t = 0, tile = 0, n; t < tokens; t += n, tile++)
        {
            n = (tokens - t) / (tiles - tile);
            float* destination = packed + (long)t * padded;
            for (int j = 0; j < n; j++)
            {
                float* source = x + (long)(t + j) * cols;
                float* column = destination + j * 8;
                int c = 0;
                for (; c < full; c += 8, column += n * 8)
                    Vector256.Store(Vector256.Load(source + c), column);
                for (int i = 0; c < padded; c++, i++)
                    column[i] = c < cols ? source[c] : 0f;
            }
        }
    }

    /// <summary>
    /// Y[t * W.Rows + r] = sum_k x[t, k] W[r, k] for tokens [0, tokens) (at most <see cref="MostKernelTokens"/>)
    /// and rows [first, end), from x packed by <see cref="PackInput"/>. <paramref name="scratch"/> holds
    /// <see cref="ScratchFloats"/> floats.
    /// <para>
    /// Rows in blocks of <see cref="RowBlock"/>; per block, column blocks of <see cref="XBlockFloats"/> /
    /// tokens columns (a multiple of 128, so no MLX group straddles two); per column block every tile of
    /// tokens runs over every row of the block, so a second tile reads the block's weights from cache,
    /// not memory.
    /// </para>
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Multiply(LinearWeight weight, int first, int end, float* packed, int tokens, float* y, float* scratch)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(tokens, MostKernelTokens);
        var source = new Source(weight);
        int cols = weight.Cols, outRows = weight.Rows, padded = Padded(cols), tiles = TileCount(tokens);
        int depth = Math.Max(128, XBlockFloats / tokens / 128 * 128);
        int prefetchRows = (int)Math.Clamp(PrefetchBytes / Math.Max(1, (long)depth * source.BitsPerColumn / 8), 2, RowBlock / 2);
        int rowBlock = weight is DenseWeight { Type: ScalarType.BF16 or ScalarType.F32 } ? DenseRowBlock(source.RowBytes) : RowBlock;
        for (int r0 = first; r0 < end; r0 += rowBlock)
        {
            int r1 = Math.Min(end, r0 + rowBlock);
            for (int k0 = 0; k0 < cols; k0 += depth)
            {
                var block = new Block(r0, r1, end, k0, Math.Min(cols, k0 + depth), depth, prefetchRows);
                for (int t = 0, tile = 0, n; t < tokens; t += n, tile++)
                {
                    n = (tokens - t) / (tiles - tile);
                    // Only the first tile prefetches: the others find the block's weights in cache.
                    var tileBlock = tile == 0 ? block : block with { PrefetchEnd = r0 };
                    float* xt = packed + (long)t * padded, sums = scratch + tile * RowBlock * TileTokens;
                    switch (n)
                    {
                        case 8: ForKind<Eight>(weight, source, tileBlock, xt, sums); break;
                        case 7: ForKind<Seven>(weight, source, tileBlock, xt, sums); break;
                        case 6: ForKind<Six>(weight, source, tileBlock, xt, sums); break;
                        case 5: ForKind<Five>(weight, source, tileBlock, xt, sums); break;
                        case 4: ForKind<Four>(weight, source, tileBlock, xt, sums); break;
                        case 3: ForKind<Three>(weight, source, tileBlock, xt, sums); break;
                        case 2: ForKind<Two>(weight, source, tileBlock, xt, sums); break;
                        default: ForKind<One>(weight, source, tileBlock, xt, sums); break;
                    }
                }
            }
            for (int t = 0, tile = 0, n; t < tokens; t += n, tile++)
            {
                n = (tokens - t) / (tiles - tile);
                float* sums = scratch + tile * RowBlock * TileTokens;
                for (int r = r0; r < r1; r++)
                {
                    for (int j = 0; j < n; j++)
                        y[(long)(t + j) * outRows + r] = sums[(r - r0) * TileTokens + j];
                }
            }
        }
    }

    /// <summary>
    /// Rows [R0, R1) over columns [K0, K1) of a block; rows up to PrefetchEnd (the caller's end, or R0
    /// for none) are prefetched PrefetchRows ahead (at most half a row block); Depth is the column block width.
    /// </summary>
    private readonly record struct Block(int R0, int R1, int PrefetchEnd, int K0, int K1, int Depth, int PrefetchRows);

    private static void ForKind<TTokens>(LinearWeight weight, in Source source, in Block block, float* x, float* sums)
        where TTokens : struct, IConstant
    {
        switch (weight)
        {
            case QuantizedWeight { Bits: 2 }: Rows<TTokens, QuantizedDot<Two>>(source, block, x, sums); break;
            case QuantizedWeight { Bits: 3 }: Rows<TTokens, QuantizedDot<Three>>(source, block, x, sums); break;
            case QuantizedWeight { Bits: 4 }: Rows<TTokens, QuantizedDot<Four>>(source, block, x, sums); break;
            case QuantizedWeight { Bits: 8 }: Rows<TTokens, QuantizedDot<Eight>>(source, block, x, sums); break;
            case DenseWeight { Type: ScalarType.BF16 }: DenseRows<TTokens, Bf16>(source, block, x, sums); break;
            case DenseWeight { Type: ScalarType.F16 }: Rows<TTokens, DenseDot<F16>>(source, block, x, sums); break;
            case DenseWeight { Type: ScalarType.F32 }: DenseRows<TTokens, F32>(source, block, x, sums); break;
            default: throw new ArgumentException($"small-M Linear does not decode {weight.GetType().Name}", nameof(weight));
        }
    }

    /// <summary>
    /// As <see cref="Rows"/> for dense weights, three rows at a time (<see cref="DenseTile"/>: each x vector
    /// loaded once feeds three rows' FMAs); the last one or two rows of the range one at a time.
    /// <para>
    /// The row block (<see cref="DenseRowBlock"/> rows) fits in L2, and while it is multiplied the next
    /// one is prefetched front to back, as many bytes per step as the tiles consume: the block's k-th
    /// weight byte in loop order (column block, tile, column) prefetches the next block's k-th byte in
    /// memory order, so DRAM sees one sequential stream and the tiles read their strided chunks from L2.
    /// </para>
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DenseRows<TTokens, TElement>(in Source source, in Block block, float* x, float* sums)
        where TTokens : struct, IConstant
        where TElement : struct, IDenseElement
    {
        int n = TTokens.Value, r0 = block.R0, r1 = block.R1, k0 = block.K0, k1 = block.K1, rows = r1 - r0;
        // Token passes of at most 4 (3 rows x 4 tokens = 12 accumulators, 3 weight vectors, one x vector: 16 ymm).
        int firstPass = n <= 4 ? n : (n + 1) / 2, secondPass = n - firstPass;
        byte* next = source.Data + r1 * source.RowBytes;
        byte* nextEnd = source.Data + Math.Min(block.PrefetchEnd, r1 + rows) * source.RowBytes;
        int r = r0;
        for (; r + TileRows <= r1; r += TileRows)
        {
            float* partial = sums + (r - r0) * TileTokens;
            if (k0 == 0)
            {
                for (int i = 0; i < TileRows; i++)
                    Vector256<float>.Zero.Store(partial + i * TileTokens);
            }
            // The next block's bytes at this tile's place in the loop order (see above). With two passes each
            // prefetches half of them: one pass prefetching for both left the memory idle through the other
            // (one thread, 8 tokens streamed: ~10% slower than the 1-row kernel; split: ~10% faster).
            byte* prefetch = nextEnd > next ? next + ((long)k0 * rows + (long)(r - r0) * (k1 - k0)) * TElement.Bytes : null;
            int share = secondPass > 0 ? 2 : 1;
            long half = prefetch != null && share == 2 ? (long)TileRows * (k1 - k0) * TElement.Bytes / 2 : 0;
            DensePass<TTokens, TElement>(firstPass, source, r, k0, k1, x, partial, prefetch, nextEnd, share);
            if (secondPass > 0)
                DensePass<TTokens, TElement>(secondPass, source, r, k0, k1, x + 8 * firstPass, partial + firstPass, prefetch + half, nextEnd, share);
        }
        for (; r < r1; r++)
        {
            var rowSums = DenseDot<TElement>.Dot<TTokens>(source, r, k0, k1, x);   // lane t: token t
            float* partial = sums + (r - r0) * TileTokens;
            if (k0 > 0)
                rowSums += Vector256.Load(partial);
            rowSums.Store(partial);
        }
    }

    /// <summary>Weight rows per register tile of <see cref="DenseTile"/>.</summary>
    private const int TileRows = 3;

    /// <summary>
    /// Bytes of dense weight rows per row block: two blocks (the one multiplied, the one prefetched) and
    /// the x block within L2 (512 KiB).
    /// </summary>
    private const int DenseBlockBytes = 192 * 1024;

    /// <summary>Rows per dense row block: a multiple of <see cref="TileRows"/>, at most <see cref="RowBlock"/>.</summary>
    private static int DenseRowBlock(long rowBytes) => (int)Math.Clamp(DenseBlockBytes / rowBytes / TileRows * TileRows, TileRows, RowBlock / TileRows * TileRows);

    /// <summary>The pass's token count as a type (a JIT-time constant: the switch folds).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void DensePass<TTokens, TElement>(int tokens, in Source source, int row, int k0, int k1, float* x, float* partial, byte* prefetch, byte* prefetchEnd, int share)
        where TTokens : struct, IConstant
        where TElement : struct, IDenseElement
    {
        switch (tokens)
        {
            case 4: DenseTile<TTokens, TElement, Four>(source, row, k0, k1, x, partial, prefetch, prefetchEnd, share); break;
            case 3: DenseTile<TTokens, TElement, Three>(source, row, k0, k1, x, partial, prefetch, prefetchEnd, share); break;
            case 2: DenseTile<TTokens, TElement, Two>(source, row, k0, k1, x, partial, prefetch, prefetchEnd, share); break;
            default: DenseTile<TTokens, TElement, One>(source, row, k0, k1, x, partial, prefetch, prefetchEnd, share); break;
        }
    }

    /// <summary>
    /// Rows row..row+2 times TPass tokens (x at the pass's first token, packed [step][TTokens][8]) over
    /// columns [k0, k1): partial[i * 8 + t] += row i's dot product with pass token t. Per 8 columns: three
    /// weight vectors widened, then per token one x load and three FMAs (12 chains at 4 tokens). With a
    /// <paramref name="prefetch"/> address, every 8 steps prefetch 1 / <paramref name="share"/> of the bytes
    /// they read (3 rows x 64 columns) from there on, below <paramref name="prefetchEnd"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void DenseTile<TTokens, TElement, TPass>(in Source source, int row, int k0, int k1, float* x, float* partial, byte* prefetch, byte* prefetchEnd, int share)
        where TTokens : struct, IConstant
        where TElement : struct, IDenseElement
        where TPass : struct, IConstant
    {
        int n = TTokens.Value;
        long rowBytes = source.RowBytes;
        byte* d0 = source.Data + row * rowBytes, d1 = d0 + rowBytes, d2 = d1 + rowBytes;
        Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector256<float> a10 = default, a11 = default, a12 = default, a13 = default;
        Vector256<float> a20 = default, a21 = default, a22 = default, a23 = default;
        int fullEnd = k1 / 8, step = k0 / 8;
        float* xs = x + (long)k0 * n;
        if (prefetch != null)
        {
            // Per 8 steps, the bytes 8 steps of the tile read (3 rows x 64 columns), divided among the passes.
            int bytes = TileRows * 64 * TElement.Bytes / share;
            for (; step + 8 <= fullEnd; step += 8, prefetch += bytes)
            {
                for (int line = 0; line < bytes; line += 64)
                {
                    if (prefetch + line < prefetchEnd)
                        Sse.Prefetch1(prefetch + line);
                }
                for (int u = 0; u < 8; u++, xs += n * 8)
                    Accumulate3<TPass>(TElement.Load8(d0, 8 * (step + u)), TElement.Load8(d1, 8 * (step + u)), TElement.Load8(d2, 8 * (step + u)), xs,
                                       ref a00, ref a01, ref a02, ref a03, ref a10, ref a11, ref a12, ref a13, ref a20, ref a21, ref a22, ref a23);
            }
        }
        for (; step < fullEnd; step++, xs += n * 8)
            Accumulate3<TPass>(TElement.Load8(d0, 8 * step), TElement.Load8(d1, 8 * step), TElement.Load8(d2, 8 * step), xs,
                               ref a00, ref a01, ref a02, ref a03, ref a10, ref a11, ref a12, ref a13, ref a20, ref a21, ref a22, ref a23);
        if (8 * step < k1)
            Accumulate3<TPass>(TElement.LoadTail(d0, 8 * step, k1), TElement.LoadTail(d1, 8 * step, k1), TElement.LoadTail(d2, 8 * step, k1), xs,
                               ref a00, ref a01, ref a02, ref a03, ref a10, ref a11, ref a12, ref a13, ref a20, ref a21, ref a22, ref a23);
        // Lanes 0-3 row 0, 4-7 row 1 (tokens past the pass: zero accumulators); then row 2.
        var rows01 = HorizontalSums(a00, a01, a02, a03, a10, a11, a12, a13);
        var row2 = HorizontalSums4(a20, a21, a22, a23);
        (Vector128.Load(partial) + rows01.GetLower()).Store(partial);
        (Vector128.Load(partial + TileTokens) + rows01.GetUpper()).Store(partial + TileTokens);
        (Vector128.Load(partial + 2 * TileTokens) + row2).Store(partial + 2 * TileTokens);
    }

    /// <summary>
    /// Accumulator a[i][t] takes weight vector w[i] times pass token t's x at xStep + 8 t; each x vector is
    /// loaded once for the three rows. The ifs fold at JIT time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Accumulate3<TPass>(Vector256<float> w0, Vector256<float> w1, Vector256<float> w2, float* xStep,
                                           ref Vector256<float> a00, ref Vector256<float> a01, ref Vector256<float> a02, ref Vector256<float> a03,
                                           ref Vector256<float> a10, ref Vector256<float> a11, ref Vector256<float> a12, ref Vector256<float> a13,
                                           ref Vector256<float> a20, ref Vector256<float> a21, ref Vector256<float> a22, ref Vector256<float> a23)
        where TPass : struct, IConstant
    {
        int p = TPass.Value;
        var x0 = Vector256.Load(xStep);
        a00 = Fma.MultiplyAdd(w0, x0, a00);
        a10 = Fma.MultiplyAdd(w1, x0, a10);
        a20 = Fma.MultiplyAdd(w2, x0, a20);
        if (p > 1)
        {
            var x1 = Vector256.Load(xStep + 8);
            a01 = Fma.MultiplyAdd(w0, x1, a01);
            a11 = Fma.MultiplyAdd(w1, x1, a11);
            a21 = Fma.MultiplyAdd(w2, x1, a21);
        }
        if (p > 2)
        {
            var x2 = Vector256.Load(xStep + 16);
            a02 = Fma.MultiplyAdd(w0, x2, a02);
            a12 = Fma.MultiplyAdd(w1, x2, a12);
            a22 = Fma.MultiplyAdd(w2, x2, a22);
        }
        if (p > 3)
        {
            var x3 = Vector256.Load(xStep + 24);
            a03 = Fma.MultiplyAdd(w0, x3, a03);
            a13 = Fma.MultiplyAdd(w1, x3, a13);
            a23 = Fma.MultiplyAdd(w2, x3, a23);
        }
    }

    /// <summary>Lane t (0-3) = the sum of the 8 lanes of accumulator t.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> HorizontalSums4(Vector256<float> a0, Vector256<float> a1, Vector256<float> a2, Vector256<float> a3)
    {
        var sums = Avx.HorizontalAdd(Avx.HorizontalAdd(a0, a1), Avx.HorizontalAdd(a2, a3));   // [t0-t3 over lanes 0-3 | over lanes 4-7]
        return sums.GetLower() + sums.GetUpper();
    }

    /// <summary>
    /// Prefetches the row <see cref="Block.PrefetchRows"/> ahead of row <paramref name="r"/> in the loop order:
    /// same column block, or the next column block of this row block, or the next row block's first column block.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchAhead(in Source source, in Block block, int r)
    {
        int cols = source.Cols, ahead = r + block.PrefetchRows, aheadK0 = block.K0;
        if (ahead >= block.R1)
        {
            if (block.K1 < cols)
            {
                ahead -= block.R1 - block.R0;
                aheadK0 = block.K1;
            }
            else
            {
                aheadK0 = 0;
            }
        }
        if (ahead < block.PrefetchEnd)
            source.Prefetch(ahead, aheadK0, Math.Min(cols, aheadK0 + block.Depth));
    }

    /// <summary>sums[(r - R0) * 8 + t] (+)= row r's dot products with the tile's tokens over the block's columns.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows<TTokens, TDot>(in Source source, in Block block, float* x, float* sums)
        where TTokens : struct, IConstant
        where TDot : struct, IRowDot
    {
        int r0 = block.R0, r1 = block.R1, k0 = block.K0, k1 = block.K1;
        for (int r = r0; r < r1; r++)
        {
            PrefetchAhead(source, block, r);
            var rowSums = TDot.Dot<TTokens>(source, r, k0, k1, x);   // lane t: token t
            float* partial = sums + (r - r0) * TileTokens;
            if (k0 > 0)
                rowSums += Vector256.Load(partial);
            rowSums.Store(partial);
        }
    }

    /// <summary>Where one weight's rows, scales and biases are (a struct, so the row loops need no casts).</summary>
    private readonly struct Source
    {
        public readonly byte* Data, Scales, Biases;
        public readonly long RowBytes;
        public readonly int Rows, Cols, BitsPerColumn, GroupSize, GroupsPerRow;
        public readonly ScalarType ScaleType;

        public Source(LinearWeight weight)
        {
            Rows = weight.Rows;
            Cols = weight.Cols;
            if (weight is QuantizedWeight q)
            {
                Data = (byte*)q.Packed;
                Scales = (byte*)q.Scales;
                Biases = (byte*)q.Biases;
                RowBytes = (long)q.WordsPerRow * 4;
                BitsPerColumn = q.Bits;
                GroupSize = q.GroupSize;
                GroupsPerRow = q.GroupsPerRow;
                ScaleType = q.ScaleType;
            }
            else
            {
                var d = (DenseWeight)weight;
                Data = (byte*)d.Data;
                BitsPerColumn = 8 * Scalars.SizeOf(d.Type);
                RowBytes = (long)d.Cols * BitsPerColumn / 8;
            }
        }

        /// <summary>Asks for the bytes of row <paramref name="row"/> that columns [k0, k1) need: codes, and the groups' scales and biases.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Prefetch(int row, int k0, int k1)
        {
            byte* codes = Data + row * RowBytes;
            long end = (long)k1 * BitsPerColumn / 8;
            for (long b = (long)k0 * BitsPerColumn / 8; b < end; b += 64)
                Sse.Prefetch0(codes + b);
            if (Scales != null)
            {
                long index = (long)row * GroupsPerRow + k0 / GroupSize;
                int size = Scalars.SizeOf(ScaleType);
                Sse.Prefetch0(Scales + index * size);
                Sse.Prefetch0(Biases + index * size);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public float Scale(long index) => LoadScalar(Scales, index, ScaleType);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public float Bias(long index) => LoadScalar(Biases, index, ScaleType);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static float LoadScalar(byte* data, long index, ScalarType type) => type switch
        {
            ScalarType.BF16 => BitConverter.Int32BitsToSingle(((ushort*)data)[index] << 16),
            ScalarType.F32 => ((float*)data)[index],
            _ => HalfToSingle(((ushort*)data)[index]),
        };

        /// <summary>
        /// Exact f16 -> f32 with no call (a call in the group loop would make the JIT spill the
        /// accumulators, all ymm registers being caller-saved): as <see cref="GemmKernels.HalfToSingle"/>.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static float HalfToSingle(ushort half)
        {
            uint magnitude = half & 0x7FFFu;
            float value = magnitude >= 0x7C00u
                ? BitConverter.UInt32BitsToSingle((magnitude << 13) | 0x7F800000u)
                : BitConverter.UInt32BitsToSingle(magnitude << 13) * 5.192296858534828e33f;   // 2^112
            return BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(value) | ((uint)(half & 0x8000) << 16));
        }
    }

    /// <summary>One row's dot products with the tile's tokens over a column block.</summary>
    private interface IRowDot
    {
        /// <summary>Lane t: sum over columns [k0, k1) of W[row, k] x[t, k]; lanes past the tile's tokens 0.</summary>
        static abstract Vector256<float> Dot<TTokens>(in Source source, int row, int k0, int k1, float* x)
            where TTokens : struct, IConstant;
    }

    /// <summary>MLX affine rows of 2, 3, 4 or 8 bits: columns in whole groups (multiples of 32), so no tail.</summary>
    private readonly struct QuantizedDot<TBits> : IRowDot
        where TBits : struct, IConstant
    {
        // Its own method: inlined into the row loops, the JIT kept the accumulators on the stack.
        [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
        public static Vector256<float> Dot<TTokens>(in Source source, int row, int k0, int k1, float* x)
            where TTokens : struct, IConstant
        {
            int n = TTokens.Value, bits = TBits.Value, groupSize = source.GroupSize, slots = Slots(n);
            byte* codes = source.Data + row * source.RowBytes;
            long groupIndex = (long)row * source.GroupsPerRow;   // of the row's first group
            // Per-lane right shifts of the broadcast word (see Codes): the first and the other steps of 32 codes.
            var shiftsFirst = Vector256.Create(0u, 1u, 2u, 3u, 4u, 5u, 6u, 7u) * (uint)bits;
            var shiftsOther = shiftsFirst + Vector256.Create(bits == 2 ? 16u : bits == 3 ? 8u : 0u);
            var mask = Vector256.Create((1u << bits) - 1);
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
            long group = groupIndex + k0 / groupSize;
            for (int g0 = k0; g0 < k1; g0 += groupSize, group++)
            {
                var scale = Vector256.Create(source.Scale(group));
                var bias = Vector256.Create(source.Bias(group));
                // 32 codes (bits words) per iteration: four steps of 8, step u into accumulator slot u % slots.
                byte* block = codes + g0 / 8 * bits;
                float* xs = x + (long)g0 * n;
                for (int c0 = g0; c0 < g0 + groupSize; c0 += 32, block += 4 * bits, xs += 32 * n)
                {
                    // f32(q * scale) + bias: the reference's two roundings (no FMA here).
                    Accumulate<TTokens>(Avx.ConvertToVector256Single(Codes<TBits>(block, 0, shiftsFirst, shiftsOther, mask)) * scale + bias, 0, xs, ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6, ref a7);
                    Accumulate<TTokens>(Avx.ConvertToVector256Single(Codes<TBits>(block, 1, shiftsFirst, shiftsOther, mask)) * scale + bias, 1 % slots, xs + 8 * n, ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6, ref a7);
                    Accumulate<TTokens>(Avx.ConvertToVector256Single(Codes<TBits>(block, 2, shiftsFirst, shiftsOther, mask)) * scale + bias, 2 % slots, xs + 16 * n, ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6, ref a7);
                    Accumulate<TTokens>(Avx.ConvertToVector256Single(Codes<TBits>(block, 3, shiftsFirst, shiftsOther, mask)) * scale + bias, 3 % slots, xs + 24 * n, ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6, ref a7);
                }
            }
            return TokenSums<TTokens>(a0, a1, a2, a3, a4, a5, a6, a7);
        }
    }

    /// <summary>
    /// The 8 codes of step <paramref name="u"/> (0-3, a constant after inlining) of the 32 codes at
    /// <paramref name="block"/>, one per lane: one broadcast dword load, a per-lane shift, a mask.
    /// 2 bits: steps 0-1 in the first dword, 2-3 in the second (shifted 16 more). 3 bits: step u's 3 bytes
    /// start at byte 3u; steps 1-3 read the dword ending with them (shifted 8 more), so no read leaves
    /// the 12-byte block.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Codes<TBits>(byte* block, int u, Vector256<uint> shiftsFirst, Vector256<uint> shiftsOther, Vector256<uint> mask)
        where TBits : struct, IConstant
    {
        if (TBits.Value == 8)
            return Avx2.ConvertToVector256Int32(block + 8 * u);
        Vector256<uint> word, shifts;
        if (TBits.Value == 2)
        {
            word = Vector256.Create(*(uint*)(block + 4 * (u >> 1)));
            shifts = (u & 1) == 0 ? shiftsFirst : shiftsOther;
        }
        else if (TBits.Value == 4)
        {
            word = Vector256.Create(*(uint*)(block + 4 * u));
            shifts = shiftsFirst;
        }
        else
        {
            word = Vector256.Create(*(uint*)(block + (u == 0 ? 0 : 3 * u - 1)));
            shifts = u == 0 ? shiftsFirst : shiftsOther;
        }
        return (Avx2.ShiftRightLogicalVariable(word, shifts) & mask).AsInt32();
    }

    /// <summary>
    /// Steps per loop iteration, each with its own accumulators: n tokens give n FMA chains per step, and
    /// hiding the FMA latency (4 cycles, 2 per cycle) takes 8 chains, so few tokens run 2 or 4 steps at once.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Slots(int tokens) => tokens <= 2 ? 4 : tokens <= 4 ? 2 : 1;

    /// <summary>
    /// Accumulator j = slot * n + t takes weight vector w (of one step) times token t's x at xStep + 8 t
    /// (x is packed [step][n][8]). All ifs fold at JIT time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Accumulate<TTokens>(Vector256<float> w, int slot, float* xStep, ref Vector256<float> a0, ref Vector256<float> a1, ref Vector256<float> a2,
                                            ref Vector256<float> a3, ref Vector256<float> a4, ref Vector256<float> a5, ref Vector256<float> a6, ref Vector256<float> a7)
        where TTokens : struct, IConstant
    {
        int n = TTokens.Value, chains = n * Slots(n);
        if (0 / n == slot)
            a0 = Fma.MultiplyAdd(w, Vector256.Load(xStep), a0);
        if (1 < chains && 1 / n == slot)
            a1 = Fma.MultiplyAdd(w, Vector256.Load(xStep + 8 * (1 % n)), a1);
        if (2 < chains && 2 / n == slot)
            a2 = Fma.MultiplyAdd(w, Vector256.Load(xStep + 8 * (2 % n)), a2);
        if (3 < chains && 3 / n == slot)
            a3 = Fma.MultiplyAdd(w, Vector256.Load(xStep + 8 * (3 % n)), a3);
        if (4 < chains && 4 / n == slot)
            a4 = Fma.MultiplyAdd(w, Vector256.Load(xStep + 8 * (4 % n)), a4);
        if (5 < chains && 5 / n == slot)
            a5 = Fma.MultiplyAdd(w, Vector256.Load(xStep + 8 * (5 % n)), a5);
        if (6 < chains && 6 / n == slot)
            a6 = Fma.MultiplyAdd(w, Vector256.Load(xStep + 8 * (6 % n)), a6);
        if (7 < chains && 7 / n == slot)
            a7 = Fma.MultiplyAdd(w, Vector256.Load(xStep + 8 * (7 % n)), a7);
    }

    /// <summary>Lane t: the sum over slots of accumulators slot * n + t, each summed over its 8 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> TokenSums<TTokens>(Vector256<float> a0, Vector256<float> a1, Vector256<float> a2, Vector256<float> a3,
                                                       Vector256<float> a4, Vector256<float> a5, Vector256<float> a6, Vector256<float> a7)
        where TTokens : struct, IConstant
    {
        int n = TTokens.Value, slots = Slots(n);
        var sums = HorizontalSums(a0, a1, a2, a3, a4, a5, a6, a7);   // lane j: accumulator j
        var lane = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7);
        if (slots > 2)
            sums += Avx2.PermuteVar8x32(sums, (lane + Vector256.Create(2 * n)) & Vector256.Create(7));
        if (slots > 1)
            sums += Avx2.PermuteVar8x32(sums, (lane + Vector256.Create(n)) & Vector256.Create(7));
        return sums;
    }

    /// <summary>Dense rows: 8 columns widened per step; a row tail (cols not a multiple of 8) is read element by element.</summary>
    private readonly struct DenseDot<TElement> : IRowDot
        where TElement : struct, IDenseElement
    {
        // Its own method: inlined into the row loops, the JIT kept the accumulators on the stack.
        [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
        public static Vector256<float> Dot<TTokens>(in Source source, int row, int k0, int k1, float* x)
            where TTokens : struct, IConstant
        {
            int n = TTokens.Value;
            byte* data = source.Data + row * source.RowBytes;
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
            int stepEnd = (k1 + 7) / 8, fullEnd = k1 / 8, slots = Slots(n);
            float* xs = x + (long)k0 * n;
            int step = k0 / 8;
            for (; step + slots <= fullEnd; step += slots, xs += slots * n * 8)
            {
                Accumulate<TTokens>(TElement.Load8(data, 8 * step), 0, xs, ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6, ref a7);
                if (slots > 1)
                    Accumulate<TTokens>(TElement.Load8(data, 8 * step + 8), 1, xs + 8 * n, ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6, ref a7);
                if (slots > 2)
                {
                    Accumulate<TTokens>(TElement.Load8(data, 8 * step + 16), 2, xs + 16 * n, ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6, ref a7);
                    Accumulate<TTokens>(TElement.Load8(data, 8 * step + 24), 3, xs + 24 * n, ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6, ref a7);
                }
            }
            // Leftover steps (and a row tail) one at a time, into the first slot's accumulators.
            for (; step < stepEnd; step++, xs += n * 8)
            {
                var w = step < fullEnd ? TElement.Load8(data, 8 * step) : TElement.LoadTail(data, 8 * step, k1);
                Accumulate<TTokens>(w, 0, xs, ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6, ref a7);
            }
            return TokenSums<TTokens>(a0, a1, a2, a3, a4, a5, a6, a7);
        }
    }

    /// <summary>Lane t = the sum of the 8 lanes of accumulator t.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> HorizontalSums(Vector256<float> a0, Vector256<float> a1, Vector256<float> a2, Vector256<float> a3,
                                                   Vector256<float> a4, Vector256<float> a5, Vector256<float> a6, Vector256<float> a7)
    {
        // [t0 lanes 0-3, t1 0-3, t2 0-3, t3 0-3 | the same over lanes 4-7], then tokens 4-7 likewise.
        var low = Avx.HorizontalAdd(Avx.HorizontalAdd(a0, a1), Avx.HorizontalAdd(a2, a3));
        var high = Avx.HorizontalAdd(Avx.HorizontalAdd(a4, a5), Avx.HorizontalAdd(a6, a7));
        return Avx.Permute2x128(low, high, 0x20) + Avx.Permute2x128(low, high, 0x31);
    }

    /// <summary>A dense element type: 8 values from element i widened exactly to f32.</summary>
    private interface IDenseElement
    {
        static abstract int Bytes { get; }

        static abstract Vector256<float> Load8(byte* row, int i);

        /// <summary>Elements i .. end-1 (fewer than 8), the other lanes 0; reads nothing past <paramref name="end"/>.</summary>
        static abstract Vector256<float> LoadTail(byte* row, int i, int end);
    }

    private readonly struct Bf16 : IDenseElement
    {
        public static int Bytes => 2;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load8(byte* row, int i) =>
            Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32((ushort*)row + i), 16).AsSingle();

        public static Vector256<float> LoadTail(byte* row, int i, int end)
        {
            var values = Vector256<float>.Zero;
            for (int j = 0; i + j < end; j++)
                values = values.WithElement(j, Scalars.Bf16ToFloat(((ushort*)row)[i + j]));
            return values;
        }
    }

    private readonly struct F16 : IDenseElement
    {
        public static int Bytes => 2;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load8(byte* row, int i) =>
            GemmKernels.HalfToSingle(Avx2.ConvertToVector256Int32((ushort*)row + i).AsUInt32());

        public static Vector256<float> LoadTail(byte* row, int i, int end)
        {
            var values = Vector256<float>.Zero;
            for (int j = 0; i + j < end; j++)
                values = values.WithElement(j, Scalars.F16ToFloat(((ushort*)row)[i + j]));
            return values;
        }
    }

    private readonly struct F32 : IDenseElement
    {
        public static int Bytes => 4;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load8(byte* row, int i) => Vector256.Load((float*)row + i);

        public static Vector256<float> LoadTail(byte* row, int i, int end)
        {
            var values = Vector256<float>.Zero;
            for (int j = 0; i + j < end; j++)
                values = values.WithElement(j, ((float*)row)[i + j]);
            return values;
        }
    }
}
