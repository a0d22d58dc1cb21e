using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Pipeline.Kernels.Cpu;

/// <summary>
/// Quantized matvec/matmul with int8 activations and integer dot products (AVX2 vpmaddubsw:
/// unsigned codes x signed int8 activations, pairs summed into int16, then vpmaddwd into int32),
/// the way llama.cpp runs its K-quants: 2-, 3- and 4-bit codes with groups of 64 and bf16 scales.
/// <para>
/// Activations are quantized once per op and token, per weight group: xq = round(x / s),
/// s = max|x| / 127, so a group contributes scale * s * (q . xq) + bias * sum(x), sum(x) taken from
/// the f32 x. The only error is that rounding of x (at most s/2 per element), which is why this path
/// is not bit-comparable to the f32 reference (see <see cref="CpuBackend.Int8Activations"/>).
/// </para>
/// <para>
/// The packed MLX rows are read as they are (no repack), with the code unpacking of
/// <see cref="IPairCodes{TSelf}"/> (PairCodes.cs, shared with <see cref="SplitActivationKernels"/>): a pair of groups gives four u8 code vectors, the first group in the
/// low 128-bit lane of each, the second in the high one. xq is stored once per op in that order
/// (each pair of groups a 160-byte record: 128 int8 x, then the 8 lane steps s), so the four
/// vpmaddubsw of a pair add up in int16 (at most 4 * 2 * 15 * 127 = 15240: no saturation) and one
/// vpmaddwd, one conversion and one FMA finish both groups.
/// </para>
/// <para>
/// Several tokens (the batched decode of several sessions) share each unpacked pair of groups: a
/// register tile of up to 8 tokens holds one accumulator per token, so the unpacking and the scales
/// are paid once per tile and only the multiply-adds grow with the tokens. Rows go in blocks of 16,
/// whose codes are still cached when the next tile of tokens passes over them.
/// </para>
/// </summary>
internal static unsafe class Int8Kernels
{
    /// <summary>Group size the int8 kernels are written for (MLX's default, and every tensor of UD-Q2_K_XL).</summary>
    public const int GroupSize = 64;

    /// <summary>Most tokens of one register tile (8 accumulators beside 4 code vectors, a scale and a sum: 16 ymm).</summary>
    private const int TileTokens = 8;

    /// <summary>Rows taken together: each tile of tokens passes over the block's rows, which stay in cache for the next tile.</summary>
    private const int RowBlock = 16;

    /// <summary>Bytes of one pair of groups of a prepared x: 128 int8 x in code order, then the 8 lane steps (f32).</summary>
    private const int PairBytes = 2 * GroupSize + 32;

    /// <summary>How far ahead of the codes being multiplied the packed codes are prefetched.</summary>
    private const int PrefetchBytes = 2048;

    /// <summary>Whether the int8 kernels apply to this weight on this machine (and AVX2 is not switched off).</summary>
    public static bool Supports(QuantizedWeight w) =>
        CpuKernels.UseAvx2 && w.GroupSize == GroupSize && w.ScaleType == ScalarType.BF16 &&
        (w.Bits is 3 or 4 || (w.Bits == 2 && w.GroupsPerRow % 2 == 0));

    /// <summary>Bytes one token's prepared x takes (<see cref="Prepare"/>), a multiple of 32.</summary>
    public static int PreparedBytes(int cols)
    {
        int groups = cols / GroupSize;
        return (groups + 1) / 2 * PairBytes + (groups + 7) / 8 * 32;
    }

    /// <summary>
    /// Quantizes one token's x[cols] for a <paramref name="bits"/>-bit weight into <paramref name="prepared"/>
    /// (<see cref="PreparedBytes"/>): per pair of groups the int8 x in the weight's code order and the
    /// steps s per lane, then sum(x) per group. A lone last group has zero x and steps in its partner's lanes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Prepare(float* x, int cols, int bits, byte* prepared)
    {
        int groups = cols / GroupSize, pairs = (groups + 1) / 2;
        float* sums = (float*)(prepared + (long)pairs * PairBytes);
        int* q = stackalloc int[GroupSize];   // one group's int8 values, element order
        for (int g = 0; g < groups; g++)
        {
            float* xg = x + g * GroupSize;
            var (max, sum) = SplitActivationKernels.GroupMaxAndSum(xg);
            var inverse = Vector256.Create(max > 0 ? 127f / max : 0f);
            for (int i = 0; i < GroupSize; i += 8)
                Vector256.ConvertToInt32(Vector256.Round(Vector256.Load(xg + i) * inverse)).Store(q + i);
            byte* pair = prepared + (long)(g / 2) * PairBytes;
            sbyte* lane = (sbyte*)pair + (g & 1) * 16;
            byte* slots = bits switch
            {
                2 => SplitActivationKernels.TwoBitSlots,
                3 => (g & 1) == 0 ? SplitActivationKernels.ThreeBitLayout.FirstSlots : SplitActivationKernels.ThreeBitLayout.SecondSlots,
                _ => SplitActivationKernels.FourBitSlots,
            };
            for (int i = 0; i < GroupSize; i++)
                lane[slots[i]] = (sbyte)q[i];
            Vector128.Create(max / 127f).Store((float*)(pair + 2 * GroupSize) + (g & 1) * 4);
            sums[g] = sum;
        }
        if (groups % 2 == 1)
        {
            byte* pair = prepared + (long)(groups / 2) * PairBytes;
            for (int v = 0; v < 4; v++)
                Vector128<byte>.Zero.Store(pair + 32 * v + 16);
            Vector128<float>.Zero.Store((float*)(pair + 2 * GroupSize) + 4);
        }
    }

    /// <summary>
    /// y[t * yStride + r] = W[r] . x_t for rows [first, end) and <paramref name="tokens"/> tokens whose
    /// prepared x (<see cref="Prepare"/>) start at x + t * xStride.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void MatMul(QuantizedWeight w, int first, int end, byte* x, long xStride, int tokens, float* y, long yStride)
    {
        // 3-bit unpacking costs about as much as 2 tokens' multiply-adds, so its tiles take 8 tokens;
        // 2- and 4-bit unpack cheaply and measured faster in tiles of 4, whose x (4 x 6.7 KB at 31B's
        // hidden width) stays in L1 and whose 4 accumulators leave registers to spare.
        int tileTokens = w.Bits == 3 ? TileTokens : TileTokens / 2;
        for (int block = first; block < end; block += RowBlock)
        {
            int blockEnd = Math.Min(end, block + RowBlock);
            for (int tile = 0; tile < tokens; tile += tileTokens)
                Rows(w, block, blockEnd, x + tile * xStride, xStride, Math.Min(tileTokens, tokens - tile), y + tile * yStride, yStride);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows(QuantizedWeight w, int first, int end, byte* x, long xStride, int tokens, float* y, long yStride)
    {
        switch (w.Bits)
        {
            case 2: Rows<TwoBitCodes>(w, first, end, x, xStride, tokens, y, yStride); break;
            case 3: Rows<ThreeBitCodes>(w, first, end, x, xStride, tokens, y, yStride); break;
            default: Rows<FourBitCodes>(w, first, end, x, xStride, tokens, y, yStride); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows<TCodes>(QuantizedWeight w, int first, int end, byte* x, long xStride, int tokens, float* y, long yStride)
        where TCodes : struct, IPairCodes<TCodes>
    {
        switch (tokens)
        {
            case 1: Rows<TCodes, One>(w, first, end, x, xStride, y, yStride); break;
            case 2: Rows<TCodes, Two>(w, first, end, x, xStride, y, yStride); break;
            case 3: Rows<TCodes, Three>(w, first, end, x, xStride, y, yStride); break;
            case 4: Rows<TCodes, Four>(w, first, end, x, xStride, y, yStride); break;
            case 5: Rows<TCodes, Five>(w, first, end, x, xStride, y, yStride); break;
            case 6: Rows<TCodes, Six>(w, first, end, x, xStride, y, yStride); break;
            case 7: Rows<TCodes, Seven>(w, first, end, x, xStride, y, yStride); break;
            default: Rows<TCodes, Eight>(w, first, end, x, xStride, y, yStride); break;
        }
    }

    /// <summary>Rows [first, end) against TTokens tokens, accumulators in registers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows<TCodes, TTokens>(QuantizedWeight w, int first, int end, byte* x, long xStride, float* y, long yStride)
        where TCodes : struct, IPairCodes<TCodes>
        where TTokens : struct, IConstant
    {
        int n = TTokens.Value, groups = w.GroupsPerRow, fullPairs = groups / 2, pairs = (groups + 1) / 2;
        int pairCodes = 16 * TCodes.Bits;   // packed bytes of a pair of groups
        long rowBytes = (long)w.Cols * TCodes.Bits / 8;
        long sumsOffset = (long)pairs * PairBytes;
        var codes = TCodes.Create();
        var ones = Vector256.Create((short)1);
        // vpshufb control of PairScale: bf16 to the high half of each f32 lane.
        var spread = Vector256.Create(
            (byte)0x80, 0x80, 0, 1, 0x80, 0x80, 0, 1, 0x80, 0x80, 0, 1, 0x80, 0x80, 0, 1,
            0x80, 0x80, 2, 3, 0x80, 0x80, 2, 3, 0x80, 0x80, 2, 3, 0x80, 0x80, 2, 3);
        byte* x0 = x;
        byte* x1 = n > 1 ? x0 + xStride : x0;
        byte* x2 = n > 2 ? x0 + 2 * xStride : x0;
        byte* x3 = n > 3 ? x0 + 3 * xStride : x0;
        byte* x4 = n > 4 ? x0 + 4 * xStride : x0;
        byte* x5 = n > 5 ? x0 + 5 * xStride : x0;
        byte* x6 = n > 6 ? x0 + 6 * xStride : x0;
        byte* x7 = n > 7 ? x0 + 7 * xStride : x0;
        // Rows of 8+ groups end the bias term with their last 8 groups again, the lanes already counted
        // masked off: one vector step that stays inside the row instead of a scalar loop per token
        // (3-9% faster with 2+ tokens; one token keeps the scalar loop, measured no faster).
        bool tailVector = n > 1 && groups >= 8 && groups % 8 != 0;
        var tailMask = Vector256.GreaterThanOrEqual(Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7), Vector256.Create(8 - groups % 8)).AsSingle();
        for (int row = first; row < end; row++)
        {
            byte* p = (byte*)w.Packed + row * rowBytes;
            ushort* scales = (ushort*)w.Scales + (long)row * groups;
            Sse.Prefetch0(scales + groups);
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
            int o = 0;
            for (int pair = 0; pair < pairs; pair++, p += pairCodes, o += PairBytes)
            {
                Sse.Prefetch0(p + PrefetchBytes);
                Vector256<byte> c0, c1, c2, c3;
                Vector256<float> scale;
                if (pair < fullPairs)
                {
                    codes.Pair(p, out c0, out c1, out c2, out c3);
                    scale = PairScale(scales + 2 * pair, spread);
                }
                else
                {
                    // A lone last group: only its own bytes and scale are read.
                    codes.Lone(p, out c0, out c1, out c2, out c3);
                    scale = Avx2.Shuffle(Vector256.Create((uint)scales[2 * pair]).AsByte(), spread).AsSingle();
                }
                a0 = Step(c0, c1, c2, c3, x0 + o, scale, ones, a0, n > 4);
                if (n > 1)
                    a1 = Step(c0, c1, c2, c3, x1 + o, scale, ones, a1, n > 4);
                if (n > 2)
                    a2 = Step(c0, c1, c2, c3, x2 + o, scale, ones, a2, n > 4);
                if (n > 3)
                    a3 = Step(c0, c1, c2, c3, x3 + o, scale, ones, a3, n > 4);
                if (n > 4)
                    a4 = Step(c0, c1, c2, c3, x4 + o, scale, ones, a4, n > 4);
                if (n > 5)
                    a5 = Step(c0, c1, c2, c3, x5 + o, scale, ones, a5, n > 4);
                if (n > 6)
                    a6 = Step(c0, c1, c2, c3, x6 + o, scale, ones, a6, n > 4);
                if (n > 7)
                    a7 = Step(c0, c1, c2, c3, x7 + o, scale, ones, a7, n > 4);
            }

            // Bias term sum_g bias[g] * sum(x)[g] into the same accumulators (only their total counts).
            ushort* biases = (ushort*)w.Biases + (long)row * groups;
            Sse.Prefetch0(biases + groups);
            int g = 0;
            for (; g + 8 <= groups; g += 8)
            {
                var bias = Bf16x8(biases + g);
                long at = sumsOffset + 4 * g;
                a0 = Vector256.MultiplyAddEstimate(bias, Vector256.Load((float*)(x0 + at)), a0);
                if (n > 1)
                    a1 = Vector256.MultiplyAddEstimate(bias, Vector256.Load((float*)(x1 + at)), a1);
                if (n > 2)
                    a2 = Vector256.MultiplyAddEstimate(bias, Vector256.Load((float*)(x2 + at)), a2);
                if (n > 3)
                    a3 = Vector256.MultiplyAddEstimate(bias, Vector256.Load((float*)(x3 + at)), a3);
                if (n > 4)
                    a4 = Vector256.MultiplyAddEstimate(bias, Vector256.Load((float*)(x4 + at)), a4);
                if (n > 5)
                    a5 = Vector256.MultiplyAddEstimate(bias, Vector256.Load((float*)(x5 + at)), a5);
                if (n > 6)
                    a6 = Vector256.MultiplyAddEstimate(bias, Vector256.Load((float*)(x6 + at)), a6);
                if (n > 7)
                    a7 = Vector256.MultiplyAddEstimate(bias, Vector256.Load((float*)(x7 + at)), a7);
            }
            if (tailVector)
            {
                var bias = Bf16x8(biases + groups - 8) & tailMask;
                long at = sumsOffset + 4 * (groups - 8);
                a0 = Vector256.MultiplyAddEstimate(bias, Vector256.Load((float*)(x0 + at)), a0);
                if (n > 1)
                    a1 = Vector256.MultiplyAddEstimate(bias, Vector256.Load((float*)(x1 + at)), a1);
                if (n > 2)
                    a2 = Vector256.MultiplyAddEstimate(bias, Vector256.Load((float*)(x2 + at)), a2);
                if (n > 3)
                    a3 = Vector256.MultiplyAddEstimate(bias, Vector256.Load((float*)(x3 + at)), a3);
                if (n > 4)
                    a4 = Vector256.MultiplyAddEstimate(bias, Vector256.Load((float*)(x4 + at)), a4);
                if (n > 5)
                    a5 = Vector256.MultiplyAddEstimate(bias, Vector256.Load((float*)(x5 + at)), a5);
                if (n > 6)
                    a6 = Vector256.MultiplyAddEstimate(bias, Vector256.Load((float*)(x6 + at)), a6);
                if (n > 7)
                    a7 = Vector256.MultiplyAddEstimate(bias, Vector256.Load((float*)(x7 + at)), a7);
                g = groups;
            }
            Store(y, row, a0, biases, x0 + sumsOffset, g, groups);
            if (n > 1)
                Store(y + yStride, row, a1, biases, x1 + sumsOffset, g, groups);
            if (n > 2)
                Store(y + 2 * yStride, row, a2, biases, x2 + sumsOffset, g, groups);
            if (n > 3)
                Store(y + 3 * yStride, row, a3, biases, x3 + sumsOffset, g, groups);
            if (n > 4)
                Store(y + 4 * yStride, row, a4, biases, x4 + sumsOffset, g, groups);
            if (n > 5)
                Store(y + 5 * yStride, row, a5, biases, x5 + sumsOffset, g, groups);
            if (n > 6)
                Store(y + 6 * yStride, row, a6, biases, x6 + sumsOffset, g, groups);
            if (n > 7)
                Store(y + 7 * yStride, row, a7, biases, x7 + sumsOffset, g, groups);
        }
    }

    /// <summary>The bf16 scales of a pair of groups (one dword) as f32: the first in lanes 0-3, the second in 4-7.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> PairScale(ushort* scales, Vector256<byte> spread) =>
        Avx2.Shuffle(Vector256.Create(*(uint*)scales).AsByte(), spread).AsSingle();

    /// <summary>
    /// One token's pair of groups: lanes of scale * s * (q . xq) added to <paramref name="acc"/>.
    /// <paramref name="lean"/> (a constant; tiles of more than 4 tokens): the four products are summed in a
    /// chain and the ones of vpmaddwd are a constant operand, so the step needs two temporaries beside the
    /// tile's accumulators, codes and scale. 8 accumulators then fit the 16 ymm registers with no spill (the
    /// balanced sum and a ones register spilled a partial sum on every token); narrower tiles measured as
    /// fast or faster with the balanced sum.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Step(
        Vector256<byte> c0, Vector256<byte> c1, Vector256<byte> c2, Vector256<byte> c3, byte* x, Vector256<float> scale, Vector256<short> ones, Vector256<float> acc, bool lean)
    {
        sbyte* xq = (sbyte*)x;
        Vector256<short> sum;
        if (lean)
        {
            sum = Avx2.MultiplyAddAdjacent(c0, Vector256.Load(xq)) + Avx2.MultiplyAddAdjacent(c1, Vector256.Load(xq + 32));
            sum += Avx2.MultiplyAddAdjacent(c2, Vector256.Load(xq + 64));
            sum += Avx2.MultiplyAddAdjacent(c3, Vector256.Load(xq + 96));
            ones = Vector256.Create((short)1);
        }
        else
        {
            sum = (Avx2.MultiplyAddAdjacent(c0, Vector256.Load(xq)) + Avx2.MultiplyAddAdjacent(c1, Vector256.Load(xq + 32)))
                + (Avx2.MultiplyAddAdjacent(c2, Vector256.Load(xq + 64)) + Avx2.MultiplyAddAdjacent(c3, Vector256.Load(xq + 96)));
        }
        var steps = Vector256.Load((float*)(x + 2 * GroupSize));
        return Vector256.MultiplyAddEstimate(Vector256.ConvertToSingle(Avx2.MultiplyAddAdjacent(sum, ones)), scale * steps, acc);
    }

    /// <summary>y[row] = the accumulator's lanes plus the bias term of groups [g, groups) (fewer than 8).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* y, int row, Vector256<float> acc, ushort* biases, byte* sums, int g, int groups)
    {
        float sum = Vector256.Sum(acc);
        for (; g < groups; g++)
            sum += Bf16(biases, g) * ((float*)sums)[g];
        y[row] = sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Bf16(ushort* p, long i) => BitConverter.Int32BitsToSingle(p[i] << 16);

    /// <summary>Bias term sum_g bias[g] * sum(x)[g] of one row, 8 groups per step.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float BiasTerm(ushort* biases, float* xSums, int groups)
    {
        var acc = Vector256<float>.Zero;
        int g = 0;
        for (; g + 8 <= groups; g += 8)
            acc = Vector256.MultiplyAddEstimate(Bf16x8(biases + g), Vector256.Load(xSums + g), acc);
        float sum = Vector256.Sum(acc);
        for (; g < groups; g++)
            sum += Bf16(biases, g) * xSums[g];
        return sum;
    }

    /// <summary>Eight bf16 values as f32 (one zero-extending load and a shift).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Bf16x8(ushort* p) => Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(p), 16).AsSingle();

    /// <summary>
    /// destination[g] = scale[g] * xScale[g] for a row's groups, 8 per step: one broadcast load per
    /// group in the dot loop instead of a scalar bf16 conversion and multiply.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void RowScales(ushort* scales, float* xScales, int groups, float* destination)
    {
        int g = 0;
        for (; g + 8 <= groups; g += 8)
            (Bf16x8(scales + g) * Vector256.Load(xScales + g)).Store(destination + g);
        for (; g < groups; g++)
            destination[g] = Bf16(scales, g) * xScales[g];
    }
}
