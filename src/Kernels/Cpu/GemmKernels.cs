using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Pipeline.Kernels.Cpu;

/// <summary>
/// Linear over several token rows (prefill, batched decode): a cache-blocked, register-blocked f32
/// GEMM, Y[t, r] = sum_k X[t, k] W[r, k].
/// <para>
/// Per panel of <see cref="PanelRows"/> output rows and per block of <see cref="DepthBlock"/> columns,
/// the weights are converted once into a packed f32 panel [k][PanelRows] (16 KiB: stays in L1) with
/// exactly the reference values (quantized: f32(q * scale) + bias; bf16/f16: exact widening), and every
/// token of the tile then runs against it, <see cref="TileTokens"/> tokens at a time: per k, two
/// vector loads of the panel, one broadcast of x per token, two FMAs per token into 12 accumulators.
/// So each weight byte is read and decoded once per <see cref="TokenBlock"/> tokens, and the result
/// differs from the f32 reference only by summation order.
/// </para>
/// <para>
/// Quantized panels are decoded with one vector lane per weight row: lane i holds the packed words of
/// row i, and each code comes out of all 8 rows at once with a shift and a mask, already in the
/// panel's [k][row] order (no transpose). A 32-code step spans exactly <c>bits</c> words of every
/// row, so 3-, 5- and 6-bit codes crossing words are stitched from two words with no read past a row.
/// Dense panels are converted row-wise and transposed in 8x8 blocks.
/// </para>
/// </summary>
internal static unsafe class GemmKernels
{
    /// <summary>Output rows per packed panel (NR): two vectors of 8 lanes.</summary>
    public const int PanelRows = 16;

    /// <summary>Tokens per register tile (MR): 6 x 2 accumulators, 2 panel vectors and a broadcast fit in 16 ymm registers.</summary>
    public const int TileTokens = 6;

    /// <summary>Columns per packed panel (Kc): a multiple of every MLX group size, so groups never straddle blocks.</summary>
    public const int DepthBlock = 256;

    /// <summary>Tokens whose x block (TokenBlock x DepthBlock floats, 256 KiB) stays in L2 while panels pass.</summary>
    public const int TokenBlock = 256;

    /// <summary>Up to this much x (all tokens of a block, all columns) panels run start to end; above it, column blocks run outermost.</summary>
    private const int XInL2Bytes = 256 << 10;

    /// <summary>Scratch floats one worker needs: the packed panel and a staging block for dense rows.</summary>
    public const long ScratchFloats = 2L * DepthBlock * PanelRows;

    /// <summary>
    /// Y[t * W.Rows + r] = X[t * W.Cols ..] . W[r] for tokens [0, tokens) and output rows [first, end);
    /// <paramref name="first"/> is a multiple of <see cref="PanelRows"/> unless it is the only panel.
    /// <paramref name="scratch"/> holds <see cref="ScratchFloats"/> floats (64-byte aligned).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Multiply(LinearWeight weight, int first, int end, float* x, int tokens, float* y, float* scratch)
    {
        int cols = weight.Cols, outRows = weight.Rows;
        float* panel = scratch;
        float* staging = scratch + DepthBlock * PanelRows;
        for (int t0 = 0; t0 < tokens; t0 += TokenBlock)
        {
            int tileTokens = Math.Min(TokenBlock, tokens - t0);
            if ((long)tileTokens * cols * sizeof(float) <= XInL2Bytes)
            {
                // Few tokens: all of x stays in L2, so each panel's rows stream start to end
                // (sequential reads the prefetchers follow).
                for (int r0 = first; r0 < end; r0 += PanelRows)
                {
                    int rows = Math.Min(PanelRows, end - r0);
                    for (int k0 = 0; k0 < cols; k0 += DepthBlock)
                    {
                        int depth = Math.Min(DepthBlock, cols - k0);
                        Prefetch(weight, r0 + PanelRows, Math.Min(end, r0 + 2 * PanelRows), k0, depth);
                        Pack(weight, r0, rows, k0, depth, panel, staging);
                        RunPanel(panel, depth, x + (long)t0 * cols + k0, cols, tileTokens, y + (long)t0 * outRows + r0, outRows, rows, accumulate: k0 > 0);
                    }
                }
                continue;
            }
            // Many tokens: column blocks outside panels, so the x block [tileTokens, DepthBlock] stays in
            // L2 while every panel of the chunk passes; the strided weight reads are then hidden
            // behind tileTokens x 16 x DepthBlock FMAs per panel.
            for (int k0 = 0; k0 < cols; k0 += DepthBlock)
            {
                int depth = Math.Min(DepthBlock, cols - k0);
                for (int r0 = first; r0 < end; r0 += PanelRows)
                {
                    int rows = Math.Min(PanelRows, end - r0);
                    Pack(weight, r0, rows, k0, depth, panel, staging);
                    RunPanel(panel, depth, x + (long)t0 * cols + k0, cols, tileTokens, y + (long)t0 * outRows + r0, outRows, rows, accumulate: k0 > 0);
                }
            }
        }
    }

    // ---------------- packing: W[r0 .. r0+rows, k0 .. k0+depth) -> panel[k][PanelRows] ----------------

    /// <summary>
    /// Asks for the same column block of the next panel's rows: 16 rows read a few cache lines at a
    /// time are too many interleaved streams for the hardware prefetchers (measured: packing became
    /// latency-bound at ~1 GB/s), and one panel ahead is about the right distance.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Prefetch(LinearWeight weight, int first, int end, int k0, int depth)
    {
        if (!Sse.IsSupported || first >= end)
            return;
        byte* data;
        long rowBytes, from, to;
        if (weight is QuantizedWeight q)
        {
            data = (byte*)q.Packed;
            rowBytes = (long)q.WordsPerRow * 4;
            from = (long)k0 * q.Bits / 8;
            to = (long)(k0 + depth) * q.Bits / 8;
        }
        else
        {
            var d = (DenseWeight)weight;
            int size = Scalars.SizeOf(d.Type);
            data = (byte*)d.Data;
            rowBytes = (long)d.Cols * size;
            from = (long)k0 * size;
            to = (long)(k0 + depth) * size;
        }
        for (int r = first; r < end; r++)
        {
            byte* row = data + r * rowBytes;
            for (long b = from; b < to; b += 64)
                Sse.Prefetch0(row + b);
        }
    }

    /// <summary>Fills panel[k * PanelRows + i] = W[r0 + i, k0 + k] (0 for i &gt;= rows).</summary>
    public static void Pack(LinearWeight weight, int r0, int rows, int k0, int depth, float* panel, float* staging)
    {
        switch (weight)
        {
            case QuantizedWeight q when CpuKernels.UseVectors:
                switch (q.Bits)
                {
                    case 2: PackQuantized<Two>(q, r0, rows, k0, depth, panel); break;
                    case 3: PackQuantized<Three>(q, r0, rows, k0, depth, panel); break;
                    case 4: PackQuantized<Four>(q, r0, rows, k0, depth, panel); break;
                    case 5: PackQuantized<Five>(q, r0, rows, k0, depth, panel); break;
                    case 6: PackQuantized<Six>(q, r0, rows, k0, depth, panel); break;
                    default: PackQuantized<Eight>(q, r0, rows, k0, depth, panel); break;
                }
                break;
            case QuantizedWeight q:
                PackQuantizedScalar(q, r0, rows, k0, depth, panel);
                break;
            case DenseWeight d when d.Type == ScalarType.F32:
                Transpose((float*)d.Data + (long)r0 * d.Cols + k0, d.Cols, rows, depth, panel);
                break;
            case DenseWeight d:
                for (int i = 0; i < rows; i++)
                    ToFloat(d, (long)(r0 + i) * d.Cols + k0, staging + i * DepthBlock, depth);
                Transpose(staging, DepthBlock, rows, depth, panel);
                break;
            default:
                throw new ArgumentException($"unknown weight kind {weight.GetType().Name}", nameof(weight));
        }
    }

    /// <summary>
    /// Quantized panel, one lane per row (two sets of 8 rows). Rows past <paramref name="rows"/> read
    /// row r0 again with zero scale and bias, so their weights are exactly 0.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackQuantized<TBits>(QuantizedWeight w, int r0, int rows, int k0, int depth, float* panel)
        where TBits : struct, IConstant
    {
        int bits = TBits.Value, groupSize = w.GroupSize, groups = w.GroupsPerRow, wordsPerRow = w.WordsPerRow;
        uint** rowWords = stackalloc uint*[PanelRows];
        for (int i = 0; i < PanelRows; i++)
            rowWords[i] = (uint*)w.Packed + (long)(r0 + Math.Min(i, rows - 1)) * wordsPerRow;
        // [bits] words of rows 0-7, then [bits] words of rows 8-15, for one 32-code step.
        var words = stackalloc Vector256<uint>[16];
        var mask = Vector256.Create((1u << bits) - 1);
        // All-ones in the lanes of valid rows: the others get scale and bias 0, so weight 0.
        var lanes = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7);
        var validLo = Vector256.LessThan(lanes, Vector256.Create(rows)).AsSingle();
        var validHi = Vector256.LessThan(lanes, Vector256.Create(rows - 8)).AsSingle();

        for (int g0 = k0; g0 < k0 + depth; g0 += groupSize)
        {
            int group = g0 / groupSize;
            long index = (long)r0 * groups + group;
            var scaleLo = GroupValues(w.Scales, w.ScaleType, index, groups, validLo, rows - 1);
            // Rows 8-15 read row 0 when the panel has no second half (then all masked off).
            long indexHi = rows > 8 ? index + 8L * groups : index;
            var scaleHi = GroupValues(w.Scales, w.ScaleType, indexHi, groups, validHi, Math.Max(rows - 9, 0));
            var biasLo = GroupValues(w.Biases, w.ScaleType, index, groups, validLo, rows - 1);
            var biasHi = GroupValues(w.Biases, w.ScaleType, indexHi, groups, validHi, Math.Max(rows - 9, 0));
            for (int c0 = g0; c0 < g0 + groupSize; c0 += 32)
            {
                int word0 = c0 / 32 * bits;   // 32 codes of b bits are exactly b words
                float* out0 = panel + (c0 - k0) * PanelRows;
                if (32 % TBits.Value == 0)
                {
                    // 2, 4, 8 bits: no code crosses a word; constant shifts, 4 codes per step.
                    for (int wi = 0; wi < bits; wi++)
                    {
                        var wordLo = LaneWords(rowWords, 0, word0 + wi);
                        var wordHi = LaneWords(rowWords, 8, word0 + wi);
                        for (int c = 0; c < 32 / TBits.Value; c += 4, out0 += 4 * PanelRows)
                        {
                            StoreCodes(wordLo, wordHi, mask, scaleLo, scaleHi, biasLo, biasHi, out0);
                            wordLo = Vector256.ShiftRightLogical(wordLo, TBits.Value);
                            wordHi = Vector256.ShiftRightLogical(wordHi, TBits.Value);
                            StoreCodes(wordLo, wordHi, mask, scaleLo, scaleHi, biasLo, biasHi, out0 + PanelRows);
                            wordLo = Vector256.ShiftRightLogical(wordLo, TBits.Value);
                            wordHi = Vector256.ShiftRightLogical(wordHi, TBits.Value);
                            StoreCodes(wordLo, wordHi, mask, scaleLo, scaleHi, biasLo, biasHi, out0 + 2 * PanelRows);
                            wordLo = Vector256.ShiftRightLogical(wordLo, TBits.Value);
                            wordHi = Vector256.ShiftRightLogical(wordHi, TBits.Value);
                            StoreCodes(wordLo, wordHi, mask, scaleLo, scaleHi, biasLo, biasHi, out0 + 3 * PanelRows);
                            wordLo = Vector256.ShiftRightLogical(wordLo, TBits.Value);
                            wordHi = Vector256.ShiftRightLogical(wordHi, TBits.Value);
                        }
                    }
                    continue;
                }
                for (int j = 0; j < bits; j++)
                {
                    words[j] = LaneWords(rowWords, 0, word0 + j);
                    words[8 + j] = LaneWords(rowWords, 8, word0 + j);
                }
                var lo = words[0];
                var hi = words[8];
                int available = 32, next = 1;
                for (int j = 0; j < 32; j++, out0 += PanelRows)
                {
                    Vector256<uint> codeLo, codeHi;
                    if (available >= bits)
                    {
                        codeLo = lo & mask;
                        codeHi = hi & mask;
                        lo = Vector256.ShiftRightLogical(lo, bits);
                        hi = Vector256.ShiftRightLogical(hi, bits);
                        available -= bits;
                    }
                    else
                    {
                        // The code continues in the next word (or starts there when available is 0).
                        var nextLo = words[next];
                        var nextHi = words[8 + next];
                        next++;
                        codeLo = (lo | Vector256.ShiftLeft(nextLo, available)) & mask;
                        codeHi = (hi | Vector256.ShiftLeft(nextHi, available)) & mask;
                        lo = Vector256.ShiftRightLogical(nextLo, bits - available);
                        hi = Vector256.ShiftRightLogical(nextHi, bits - available);
                        available += 32 - bits;
                    }
                    StoreCodes(codeLo, codeHi, mask, scaleLo, scaleHi, biasLo, biasHi, out0);
                }
            }
        }
    }

    /// <summary>One k of the panel from the low codes of each lane: f32(q * scale) then + bias, the reference's two roundings (no FMA).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreCodes(Vector256<uint> lo, Vector256<uint> hi, Vector256<uint> mask, Vector256<float> scaleLo, Vector256<float> scaleHi,
                                   Vector256<float> biasLo, Vector256<float> biasHi, float* destination)
    {
        (Vector256.ConvertToSingle((lo & mask).AsInt32()) * scaleLo + biasLo).Store(destination);
        (Vector256.ConvertToSingle((hi & mask).AsInt32()) * scaleHi + biasHi).Store(destination + 8);
    }

    /// <summary>Word <paramref name="word"/> of rows first..first+7, one per lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> LaneWords(uint** rowWords, int first, int word) => Vector256.Create(
        rowWords[first][word], rowWords[first + 1][word], rowWords[first + 2][word], rowWords[first + 3][word],
        rowWords[first + 4][word], rowWords[first + 5][word], rowWords[first + 6][word], rowWords[first + 7][word]);

    /// <summary>
    /// Scale or bias of one group for rows first..first+7 of the panel; lanes past the valid rows read
    /// the last valid row and are cleared by <paramref name="valid"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> GroupValues(nint data, ScalarType type, long index, long stride, Vector256<float> valid, int last)
    {
        long i0 = index, i1 = index + Math.Min(1, last) * stride, i2 = index + Math.Min(2, last) * stride, i3 = index + Math.Min(3, last) * stride;
        long i4 = index + Math.Min(4, last) * stride, i5 = index + Math.Min(5, last) * stride, i6 = index + Math.Min(6, last) * stride, i7 = index + Math.Min(7, last) * stride;
        Vector256<float> values;
        if (type == ScalarType.F32)
        {
            float* f = (float*)data;
            values = Vector256.Create(f[i0], f[i1], f[i2], f[i3], f[i4], f[i5], f[i6], f[i7]);
        }
        else
        {
            ushort* h = (ushort*)data;
            var bits = Vector256.Create((uint)h[i0], h[i1], h[i2], h[i3], h[i4], h[i5], h[i6], h[i7]);
            values = type == ScalarType.BF16 ? Vector256.ShiftLeft(bits, 16).AsSingle() : HalfToSingle(bits);
        }
        return values & valid;
    }

    private static void PackQuantizedScalar(QuantizedWeight w, int r0, int rows, int k0, int depth, float* panel)
    {
        int groups = w.GroupsPerRow;
        for (int i = 0; i < PanelRows; i++)
        {
            if (i >= rows)
            {
                for (int k = 0; k < depth; k++)
                    panel[k * PanelRows + i] = 0f;
                continue;
            }
            uint* words = (uint*)w.Packed + (long)(r0 + i) * w.WordsPerRow;
            for (int k = 0; k < depth; k++)
            {
                int col = k0 + k;
                long group = (long)(r0 + i) * groups + col / w.GroupSize;
                float scaled = Code(words, col, w.Bits) * Scalars.Load(w.Scales, group, w.ScaleType);
                panel[k * PanelRows + i] = scaled + Scalars.Load(w.Biases, group, w.ScaleType);
            }
        }
    }

    private static uint Code(uint* words, int col, int bits)
    {
        long bit = (long)col * bits;
        int word = (int)(bit >> 5), shift = (int)(bit & 31);
        ulong window = words[word];
        if (shift + bits > 32)
            window |= (ulong)words[word + 1] << 32;
        return (uint)(window >> shift) & ((1u << bits) - 1);
    }

    /// <summary>n dense bf16/f16 values from element <paramref name="offset"/> to f32 (exact widening).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ToFloat(DenseWeight d, long offset, float* destination, int n)
    {
        ushort* source = (ushort*)d.Data + offset;
        int i = 0;
        if (CpuKernels.UseVectors)
        {
            if (d.Type == ScalarType.BF16)
            {
                for (; i + 8 <= n; i += 8)
                    Vector256.ShiftLeft(Vector256.WidenLower(Vector128.Load(source + i).ToVector256Unsafe()).AsUInt32(), 16).AsSingle().Store(destination + i);
            }
            else
            {
                for (; i + 8 <= n; i += 8)
                    HalfToSingle(Vector256.WidenLower(Vector128.Load(source + i).ToVector256Unsafe())).Store(destination + i);
            }
        }
        for (; i < n; i++)
            destination[i] = d.Type == ScalarType.BF16 ? Scalars.Bf16ToFloat(source[i]) : Scalars.F16ToFloat(source[i]);
    }

    /// <summary>
    /// Exact f16 -> f32 of 8 zero-extended halves: the magnitude bits moved to f32 position read as a
    /// float 2^112 too small (normals and subnormals alike), so one multiply by 2^112 fixes them;
    /// infinities and NaNs keep an all-ones exponent.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> HalfToSingle(Vector256<uint> half)
    {
        var magnitude = half & Vector256.Create(0x7FFFu);
        var shifted = Vector256.ShiftLeft(magnitude, 13);
        var finite = shifted.AsSingle() * Vector256.Create(5.192296858534828e33f);   // 2^112
        var special = (shifted | Vector256.Create(0x7F800000u)).AsSingle();
        var isSpecial = Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(0x7C00u)).AsSingle();
        var value = Vector256.ConditionalSelect(isSpecial, special, finite);
        return (value.AsUInt32() | Vector256.ShiftLeft(half & Vector256.Create(0x8000u), 16)).AsSingle();
    }

    /// <summary>panel[k * PanelRows + i] = source[i * stride + k] for i &lt; rows, k &lt; depth; 0 for rows past the end.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Transpose(float* source, long stride, int rows, int depth, float* panel)
    {
        for (int block = 0; block < PanelRows; block += 8)
        {
            int k = 0;
            if (CpuKernels.UseAvx2 && rows >= block + 8)
            {
                for (; k + 8 <= depth; k += 8)
                    Transpose8x8(source + block * stride + k, stride, panel + k * PanelRows + block);
            }
            for (; k < depth; k++)
            {
                for (int i = block; i < block + 8; i++)
                    panel[k * PanelRows + i] = i < rows ? source[i * stride + k] : 0f;
            }
        }
    }

    /// <summary>8 rows of 8 floats (row stride <paramref name="stride"/>) into 8 columns of the panel.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8x8(float* source, long stride, float* destination)
    {
        var r0 = Avx.LoadVector256(source);
        var r1 = Avx.LoadVector256(source + stride);
        var r2 = Avx.LoadVector256(source + 2 * stride);
        var r3 = Avx.LoadVector256(source + 3 * stride);
        var r4 = Avx.LoadVector256(source + 4 * stride);
        var r5 = Avx.LoadVector256(source + 5 * stride);
        var r6 = Avx.LoadVector256(source + 6 * stride);
        var r7 = Avx.LoadVector256(source + 7 * stride);
        // Pairs of rows interleaved, then quads, then 128-bit halves swapped into place.
        var t0 = Avx.UnpackLow(r0, r1);
        var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3);
        var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5);
        var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7);
        var t7 = Avx.UnpackHigh(r6, r7);
        var u0 = Avx.Shuffle(t0, t2, 0x44);
        var u1 = Avx.Shuffle(t0, t2, 0xEE);
        var u2 = Avx.Shuffle(t1, t3, 0x44);
        var u3 = Avx.Shuffle(t1, t3, 0xEE);
        var u4 = Avx.Shuffle(t4, t6, 0x44);
        var u5 = Avx.Shuffle(t4, t6, 0xEE);
        var u6 = Avx.Shuffle(t5, t7, 0x44);
        var u7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(destination, Avx.Permute2x128(u0, u4, 0x20));
        Avx.Store(destination + PanelRows, Avx.Permute2x128(u1, u5, 0x20));
        Avx.Store(destination + 2 * PanelRows, Avx.Permute2x128(u2, u6, 0x20));
        Avx.Store(destination + 3 * PanelRows, Avx.Permute2x128(u3, u7, 0x20));
        Avx.Store(destination + 4 * PanelRows, Avx.Permute2x128(u0, u4, 0x31));
        Avx.Store(destination + 5 * PanelRows, Avx.Permute2x128(u1, u5, 0x31));
        Avx.Store(destination + 6 * PanelRows, Avx.Permute2x128(u2, u6, 0x31));
        Avx.Store(destination + 7 * PanelRows, Avx.Permute2x128(u3, u7, 0x31));
    }

    // ---------------- microkernel: tokens x panel ----------------

    /// <summary>
    /// y[t * ldy + i] (+)= sum_k x[t * ldx + k] * panel[k * PanelRows + i] for t &lt; tokens, i &lt; rows.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RunPanel(float* panel, int depth, float* x, int ldx, int tokens, float* y, int ldy, int rows, bool accumulate)
    {
        if (!CpuKernels.UseVectors)
        {
            RunPanelScalar(panel, depth, x, ldx, tokens, y, ldy, rows, accumulate);
            return;
        }
        // [TileTokens, PanelRows] sums of a tile of a partial panel.
        float* partial = stackalloc float[TileTokens * PanelRows];
        // Tiles as even as possible (8 tokens: 4 + 4, not 6 + 2): a tile of n tokens has 2n
        // independent FMA chains, and below 8 chains FMA latency (4 cycles, 2 per cycle) idles the units.
        int tiles = (tokens + TileTokens - 1) / TileTokens;
        for (int t = 0, tile = 0, n; t < tokens; t += n, tile++)
        {
            n = (tokens - t) / (tiles - tile);
            float* xt = x + (long)t * ldx, yt = y + (long)t * ldy;
            switch (n)
            {
                case 6: Tile<Six>(panel, depth, xt, ldx, yt, ldy, rows, accumulate, partial); break;
                case 5: Tile<Five>(panel, depth, xt, ldx, yt, ldy, rows, accumulate, partial); break;
                case 4: Tile<Four>(panel, depth, xt, ldx, yt, ldy, rows, accumulate, partial); break;
                case 3: Tile<Three>(panel, depth, xt, ldx, yt, ldy, rows, accumulate, partial); break;
                case 2: Tile<Two>(panel, depth, xt, ldx, yt, ldy, rows, accumulate, partial); break;
                default: Tile<One>(panel, depth, xt, ldx, yt, ldy, rows, accumulate, partial); break;
            }
            if (rows == PanelRows)
                continue;
            for (int j = 0; j < n; j++)
            {
                for (int i = 0; i < rows; i++)
                {
                    float sum = partial[j * PanelRows + i];
                    yt[(long)j * ldy + i] = accumulate ? yt[(long)j * ldy + i] + sum : sum;
                }
            }
        }
    }

    /// <summary>
    /// One register tile of TTokens x 16: accumulators a{t}0/a{t}1 for rows 0-7/8-15; the JIT drops
    /// the rows past TTokens.Value (a constant per instantiation).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile<TTokens>(float* panel, int depth, float* x, int ldx, float* y, int ldy, int rows, bool accumulate, float* partial)
        where TTokens : struct, IConstant
    {
        int n = TTokens.Value;
        float* x0 = x;
        float* x1 = n > 1 ? x + ldx : x;
        float* x2 = n > 2 ? x + 2L * ldx : x;
        float* x3 = n > 3 ? x + 3L * ldx : x;
        float* x4 = n > 4 ? x + 4L * ldx : x;
        float* x5 = n > 5 ? x + 5L * ldx : x;
        Vector256<float> a00 = default, a01 = default, a10 = default, a11 = default, a20 = default, a21 = default;
        Vector256<float> a30 = default, a31 = default, a40 = default, a41 = default, a50 = default, a51 = default;
        float* w = panel;
        for (int k = 0; k < depth; k++, w += PanelRows)
        {
            var w0 = Vector256.Load(w);
            var w1 = Vector256.Load(w + 8);
            var b = Vector256.Create(x0[k]);
            a00 = Vector256.MultiplyAddEstimate(w0, b, a00);
            a01 = Vector256.MultiplyAddEstimate(w1, b, a01);
            if (n > 1)
            {
                b = Vector256.Create(x1[k]);
                a10 = Vector256.MultiplyAddEstimate(w0, b, a10);
                a11 = Vector256.MultiplyAddEstimate(w1, b, a11);
            }
            if (n > 2)
            {
                b = Vector256.Create(x2[k]);
                a20 = Vector256.MultiplyAddEstimate(w0, b, a20);
                a21 = Vector256.MultiplyAddEstimate(w1, b, a21);
            }
            if (n > 3)
            {
                b = Vector256.Create(x3[k]);
                a30 = Vector256.MultiplyAddEstimate(w0, b, a30);
                a31 = Vector256.MultiplyAddEstimate(w1, b, a31);
            }
            if (n > 4)
            {
                b = Vector256.Create(x4[k]);
                a40 = Vector256.MultiplyAddEstimate(w0, b, a40);
                a41 = Vector256.MultiplyAddEstimate(w1, b, a41);
            }
            if (n > 5)
            {
                b = Vector256.Create(x5[k]);
                a50 = Vector256.MultiplyAddEstimate(w0, b, a50);
                a51 = Vector256.MultiplyAddEstimate(w1, b, a51);
            }
        }
        bool full = rows == PanelRows;
        StoreRow(y, partial, full, accumulate, a00, a01);
        if (n > 1)
            StoreRow(y + ldy, partial + PanelRows, full, accumulate, a10, a11);
        if (n > 2)
            StoreRow(y + 2L * ldy, partial + 2 * PanelRows, full, accumulate, a20, a21);
        if (n > 3)
            StoreRow(y + 3L * ldy, partial + 3 * PanelRows, full, accumulate, a30, a31);
        if (n > 4)
            StoreRow(y + 4L * ldy, partial + 4 * PanelRows, full, accumulate, a40, a41);
        if (n > 5)
            StoreRow(y + 5L * ldy, partial + 5 * PanelRows, full, accumulate, a50, a51);
    }

    /// <summary>
    /// Writes (or adds) one token's 16 sums to y; for a partial panel (rows &lt; 16) they go to
    /// <paramref name="partial"/> instead, for <see cref="RunPanel"/> to copy the valid ones (no call or
    /// stack array here, which would make the JIT spill the accumulators inside the k loop).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow(float* y, float* partial, bool full, bool accumulate, Vector256<float> lo, Vector256<float> hi)
    {
        if (!full)
        {
            lo.Store(partial);
            hi.Store(partial + 8);
            return;
        }
        if (accumulate)
        {
            lo += Vector256.Load(y);
            hi += Vector256.Load(y + 8);
        }
        lo.Store(y);
        hi.Store(y + 8);
    }

    private static void RunPanelScalar(float* panel, int depth, float* x, int ldx, int tokens, float* y, int ldy, int rows, bool accumulate)
    {
        for (int t = 0; t < tokens; t++)
        {
            float* xt = x + (long)t * ldx;
            float* yt = y + (long)t * ldy;
            for (int i = 0; i < rows; i++)
            {
                float sum = 0;
                for (int k = 0; k < depth; k++)
                    sum += panel[k * PanelRows + i] * xt[k];
                yt[i] = accumulate ? yt[i] + sum : sum;
            }
        }
    }
}
