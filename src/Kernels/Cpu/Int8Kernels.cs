using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Pipeline.Kernels.Cpu;

/// <summary>
/// Quantized matvec/matmul with int8 activations and integer dot products (AVX2 vpmaddubsw:
/// unsigned codes x signed int8 activations, pairs summed into int16, then vpmaddwd into int32),
/// the way llama.cpp runs its K-quants. For 2- and 4-bit codes with groups of 64, where f32 FMA on
/// unpacked codes is bound by the unpacking (about 10 G codes/s per core) rather than by memory.
/// <para>
/// Activations are quantized once per op and token, per weight group: xq = round(x / s),
/// s = max|x| / 127, so a group contributes scale * s * (q . xq) + bias * sum(x), sum(x) taken from
/// the f32 x. The only error is that rounding of x (at most s/2 per element), which is why this path
/// is not bit-comparable to the f32 reference (see <see cref="CpuBackend.Int8Activations"/>).
/// </para>
/// <para>
/// The packed MLX rows are read as they are (no repack). Codes come out of a byte in an interleaved
/// order (4-bit: low nibbles are elements 2j, high nibbles 2j+1; 2-bit: shift k of byte j is element
/// 4j+k), so xq is stored in that order instead: the permutation is paid once per activation, not
/// once per weight row.
/// </para>
/// </summary>
internal static unsafe class Int8Kernels
{
    /// <summary>Group size the int8 kernels are written for (MLX's default, and every tensor of UD-Q2_K_XL).</summary>
    public const int GroupSize = 64;

    /// <summary>Whether the int8 kernels apply to this weight on this machine (and AVX2 is not switched off).</summary>
    public static bool Supports(QuantizedWeight w) =>
        CpuKernels.UseAvx2 && w.GroupSize == GroupSize && w.ScaleType == ScalarType.BF16 &&
        (w.Bits is 3 or 4 || (w.Bits == 2 && w.GroupsPerRow % 2 == 0));

    /// <summary>Bytes one token's prepared x takes (3-bit codes meet int16 copies of xq, see <see cref="MatVec3Bit"/>).</summary>
    public static int InputBytes(int cols, int bits) => bits == 3 ? 2 * cols : cols;

    /// <summary>
    /// Quantizes one token's x[cols] for a <paramref name="bits"/>-bit weight: xq (<see cref="InputBytes"/>)
    /// in the weight's code order, and per group of 64 the scale s and sum(x).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeInput(float* x, int cols, int bits, sbyte* xq, float* xScales, float* xSums)
    {
        int groups = cols / GroupSize;
        for (int g = 0; g < groups; g++)
        {
            float* xg = x + g * GroupSize;
            float max = 0, sum = 0;
            for (int i = 0; i < GroupSize; i++)
            {
                max = MathF.Max(max, MathF.Abs(xg[i]));
                sum += xg[i];
            }
            float scale = max / 127f;
            float inverse = max > 0 ? 127f / max : 0f;
            xScales[g] = scale;
            xSums[g] = sum;
            if (bits == 3)
            {
                short* q = (short*)xq + g * GroupSize;
                for (int i = 0; i < GroupSize; i++)
                    q[i] = (short)MathF.Round(xg[i] * inverse);
            }
            else if (bits == 4)
            {
                // [32 even elements | 32 odd elements] per group.
                sbyte* q = xq + g * GroupSize;
                for (int j = 0; j < 32; j++)
                {
                    q[j] = (sbyte)MathF.Round(xg[2 * j] * inverse);
                    q[32 + j] = (sbyte)MathF.Round(xg[2 * j + 1] * inverse);
                }
            }
            else
            {
                // Pairs of groups (128 elements, 32 packed bytes): 4 vectors k of 32 bytes, byte j = element 4j+k.
                sbyte* q = xq + (g & ~1) * GroupSize;
                int first = (g & 1) * 16;
                for (int j = 0; j < 16; j++)
                {
                    for (int k = 0; k < 4; k++)
                        q[k * 32 + first + j] = (sbyte)MathF.Round(xg[4 * j + k] * inverse);
                }
            }
        }
    }

    /// <summary>
    /// y[t * yStride + r] for rows [first, end) and <paramref name="tokens"/> (1..4) consecutive tokens
    /// whose prepared inputs are xq + t * InputBytes, xScales/xSums + t * groups.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void MatVec(QuantizedWeight w, int first, int end, sbyte* xq, float* xScales, float* xSums, float* y, long yStride, int tokens)
    {
        switch (w.Bits, tokens)
        {
            case (4, 4): MatVec4Bit4(w, first, end, xq, xScales, xSums, y, yStride); break;
            case (4, _): ForEachToken(w, first, end, xq, xScales, xSums, y, yStride, tokens, &MatVec4Bit1); break;
            case (2, 4): MatVec2Bit4(w, first, end, xq, xScales, xSums, y, yStride); break;
            case (3, 1): MatVec3Bit1(w, first, end, (short*)xq, xScales, xSums, y); break;
            case (3, _): MatVec3Bit(w, first, end, (short*)xq, xScales, xSums, y, yStride, tokens); break;
            default: ForEachToken(w, first, end, xq, xScales, xSums, y, yStride, tokens, &MatVec2Bit1); break;
        }
    }

    private static void ForEachToken(
        QuantizedWeight w, int first, int end, sbyte* xq, float* xScales, float* xSums, float* y, long yStride, int tokens,
        delegate*<QuantizedWeight, int, int, sbyte*, float*, float*, float*, void> kernel)
    {
        int cols = w.Cols, groups = w.GroupsPerRow;
        for (int t = 0; t < tokens; t++)
            kernel(w, first, end, xq + (long)t * cols, xScales + (long)t * groups, xSums + (long)t * groups, y + t * yStride);
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

    // ---------------- 4-bit: a group is 32 bytes = one vector; low nibbles are even elements ----------------

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Dot4Bit(Vector256<byte> packed, sbyte* xq)
    {
        var mask = Vector256.Create((byte)0x0F);
        var lo = packed & mask;
        var hi = Avx2.ShiftRightLogical(packed.AsUInt16(), 4).AsByte() & mask;
        // |sum| <= 2 * 2 * 15 * 127: no int16 saturation.
        return Avx2.MultiplyAddAdjacent(lo, Vector256.Load(xq)) + Avx2.MultiplyAddAdjacent(hi, Vector256.Load(xq + 32));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MatVec4Bit1(QuantizedWeight w, int first, int end, sbyte* xq, float* xScales, float* xSums, float* y)
    {
        int groups = w.GroupsPerRow, rowBytes = w.Cols / 2;
        var ones = Vector256.Create((short)1);
        float* rowScales = stackalloc float[groups];
        for (int row = first; row < end; row++)
        {
            byte* p = (byte*)w.Packed + (long)row * rowBytes;
            RowScales((ushort*)w.Scales + (long)row * groups, xScales, groups, rowScales);
            var acc0 = Vector256<float>.Zero;
            var acc1 = Vector256<float>.Zero;
            int g = 0;
            for (; g + 2 <= groups; g += 2)
            {
                var d0 = Avx2.MultiplyAddAdjacent(Dot4Bit(Vector256.Load(p + g * 32), xq + g * 64), ones);
                var d1 = Avx2.MultiplyAddAdjacent(Dot4Bit(Vector256.Load(p + g * 32 + 32), xq + g * 64 + 64), ones);
                acc0 = Vector256.MultiplyAddEstimate(Vector256.ConvertToSingle(d0), Vector256.Create(rowScales[g]), acc0);
                acc1 = Vector256.MultiplyAddEstimate(Vector256.ConvertToSingle(d1), Vector256.Create(rowScales[g + 1]), acc1);
            }
            if (g < groups)
            {
                var d0 = Avx2.MultiplyAddAdjacent(Dot4Bit(Vector256.Load(p + g * 32), xq + g * 64), ones);
                acc0 = Vector256.MultiplyAddEstimate(Vector256.ConvertToSingle(d0), Vector256.Create(rowScales[g]), acc0);
            }
            y[row] = Vector256.Sum(acc0 + acc1) + BiasTerm((ushort*)w.Biases + (long)row * groups, xSums, groups);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MatVec4Bit4(QuantizedWeight w, int first, int end, sbyte* xq, float* xScales, float* xSums, float* y, long yStride)
    {
        int groups = w.GroupsPerRow, cols = w.Cols, rowBytes = cols / 2;
        var ones = Vector256.Create((short)1);
        var mask = Vector256.Create((byte)0x0F);
        sbyte* x0 = xq, x1 = x0 + cols, x2 = x1 + cols, x3 = x2 + cols;
        float* s0 = xScales, s1 = s0 + groups, s2 = s1 + groups, s3 = s2 + groups;
        for (int row = first; row < end; row++)
        {
            byte* p = (byte*)w.Packed + (long)row * rowBytes;
            ushort* scales = (ushort*)w.Scales + (long)row * groups;
            Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
            for (int g = 0; g < groups; g++)
            {
                var packed = Vector256.Load(p + g * 32);
                var lo = packed & mask;
                var hi = Avx2.ShiftRightLogical(packed.AsUInt16(), 4).AsByte() & mask;
                float scale = Bf16(scales, g);
                int o = g * 64;
                acc0 = Vector256.MultiplyAddEstimate(Dot(lo, hi, x0 + o, ones), Vector256.Create(scale * s0[g]), acc0);
                acc1 = Vector256.MultiplyAddEstimate(Dot(lo, hi, x1 + o, ones), Vector256.Create(scale * s1[g]), acc1);
                acc2 = Vector256.MultiplyAddEstimate(Dot(lo, hi, x2 + o, ones), Vector256.Create(scale * s2[g]), acc2);
                acc3 = Vector256.MultiplyAddEstimate(Dot(lo, hi, x3 + o, ones), Vector256.Create(scale * s3[g]), acc3);
            }
            ushort* biases = (ushort*)w.Biases + (long)row * groups;
            y[row] = Vector256.Sum(acc0) + BiasTerm(biases, xSums, groups);
            y[yStride + row] = Vector256.Sum(acc1) + BiasTerm(biases, xSums + groups, groups);
            y[2 * yStride + row] = Vector256.Sum(acc2) + BiasTerm(biases, xSums + 2 * groups, groups);
            y[3 * yStride + row] = Vector256.Sum(acc3) + BiasTerm(biases, xSums + 3 * groups, groups);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static Vector256<float> Dot(Vector256<byte> lo, Vector256<byte> hi, sbyte* x, Vector256<short> ones) =>
            Vector256.ConvertToSingle(Avx2.MultiplyAddAdjacent(
                Avx2.MultiplyAddAdjacent(lo, Vector256.Load(x)) + Avx2.MultiplyAddAdjacent(hi, Vector256.Load(x + 32)), ones));
    }

    // ---------------- 2-bit: two groups are 32 bytes; shift k of byte j is element 4j+k ----------------

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Dot2Bit(Vector256<byte> packed, sbyte* xq, Vector256<short> ones)
    {
        var mask = Vector256.Create((byte)3);
        var words = packed.AsUInt16();
        var c0 = packed & mask;
        var c1 = Avx2.ShiftRightLogical(words, 2).AsByte() & mask;
        var c2 = Avx2.ShiftRightLogical(words, 4).AsByte() & mask;
        var c3 = Avx2.ShiftRightLogical(words, 6).AsByte() & mask;
        // |sum| <= 4 * 2 * 3 * 127: no int16 saturation.
        var sum = (Avx2.MultiplyAddAdjacent(c0, Vector256.Load(xq)) + Avx2.MultiplyAddAdjacent(c1, Vector256.Load(xq + 32)))
                + (Avx2.MultiplyAddAdjacent(c2, Vector256.Load(xq + 64)) + Avx2.MultiplyAddAdjacent(c3, Vector256.Load(xq + 96)));
        return Avx2.MultiplyAddAdjacent(sum, ones);   // lanes 0-3: first group, 4-7: second
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> PairScale(float* rowScales, int g) =>
        Vector256.Create(Vector128.Create(rowScales[g]), Vector128.Create(rowScales[g + 1]));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MatVec2Bit1(QuantizedWeight w, int first, int end, sbyte* xq, float* xScales, float* xSums, float* y)
    {
        int groups = w.GroupsPerRow, rowBytes = w.Cols / 4;
        var ones = Vector256.Create((short)1);
        float* rowScales = stackalloc float[groups];
        for (int row = first; row < end; row++)
        {
            byte* p = (byte*)w.Packed + (long)row * rowBytes;
            RowScales((ushort*)w.Scales + (long)row * groups, xScales, groups, rowScales);
            var acc0 = Vector256<float>.Zero;
            var acc1 = Vector256<float>.Zero;
            int g = 0;
            for (; g + 4 <= groups; g += 4)
            {
                var d0 = Dot2Bit(Vector256.Load(p + g * 16), xq + g * 64, ones);
                var d1 = Dot2Bit(Vector256.Load(p + g * 16 + 32), xq + g * 64 + 128, ones);
                acc0 = Vector256.MultiplyAddEstimate(Vector256.ConvertToSingle(d0), PairScale(rowScales, g), acc0);
                acc1 = Vector256.MultiplyAddEstimate(Vector256.ConvertToSingle(d1), PairScale(rowScales, g + 2), acc1);
            }
            if (g < groups)
            {
                var d0 = Dot2Bit(Vector256.Load(p + g * 16), xq + g * 64, ones);
                acc0 = Vector256.MultiplyAddEstimate(Vector256.ConvertToSingle(d0), PairScale(rowScales, g), acc0);
            }
            y[row] = Vector256.Sum(acc0 + acc1) + BiasTerm((ushort*)w.Biases + (long)row * groups, xSums, groups);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MatVec2Bit4(QuantizedWeight w, int first, int end, sbyte* xq, float* xScales, float* xSums, float* y, long yStride)
    {
        int groups = w.GroupsPerRow, cols = w.Cols, rowBytes = cols / 4;
        var ones = Vector256.Create((short)1);
        var mask = Vector256.Create((byte)3);
        sbyte* x0 = xq, x1 = x0 + cols, x2 = x1 + cols, x3 = x2 + cols;
        float* s0 = xScales, s1 = s0 + groups, s2 = s1 + groups, s3 = s2 + groups;
        for (int row = first; row < end; row++)
        {
            byte* p = (byte*)w.Packed + (long)row * rowBytes;
            ushort* scales = (ushort*)w.Scales + (long)row * groups;
            Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
            for (int g = 0; g < groups; g += 2)
            {
                var packed = Vector256.Load(p + g * 16);
                var words = packed.AsUInt16();
                var c0 = packed & mask;
                var c1 = Avx2.ShiftRightLogical(words, 2).AsByte() & mask;
                var c2 = Avx2.ShiftRightLogical(words, 4).AsByte() & mask;
                var c3 = Avx2.ShiftRightLogical(words, 6).AsByte() & mask;
                float scaleA = Bf16(scales, g), scaleB = Bf16(scales, g + 1);
                int o = g * 64;
                acc0 = Vector256.MultiplyAddEstimate(Dot(c0, c1, c2, c3, x0 + o, ones), Scales(scaleA, scaleB, s0, g), acc0);
                acc1 = Vector256.MultiplyAddEstimate(Dot(c0, c1, c2, c3, x1 + o, ones), Scales(scaleA, scaleB, s1, g), acc1);
                acc2 = Vector256.MultiplyAddEstimate(Dot(c0, c1, c2, c3, x2 + o, ones), Scales(scaleA, scaleB, s2, g), acc2);
                acc3 = Vector256.MultiplyAddEstimate(Dot(c0, c1, c2, c3, x3 + o, ones), Scales(scaleA, scaleB, s3, g), acc3);
            }
            ushort* biases = (ushort*)w.Biases + (long)row * groups;
            y[row] = Vector256.Sum(acc0) + BiasTerm(biases, xSums, groups);
            y[yStride + row] = Vector256.Sum(acc1) + BiasTerm(biases, xSums + groups, groups);
            y[2 * yStride + row] = Vector256.Sum(acc2) + BiasTerm(biases, xSums + 2 * groups, groups);
            y[3 * yStride + row] = Vector256.Sum(acc3) + BiasTerm(biases, xSums + 3 * groups, groups);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static Vector256<float> Scales(float a, float b, float* xScales, int g) =>
            Vector256.Create(Vector128.Create(a * xScales[g]), Vector128.Create(b * xScales[g + 1]));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static Vector256<float> Dot(Vector256<byte> c0, Vector256<byte> c1, Vector256<byte> c2, Vector256<byte> c3, sbyte* x, Vector256<short> ones) =>
            Vector256.ConvertToSingle(Avx2.MultiplyAddAdjacent(
                (Avx2.MultiplyAddAdjacent(c0, Vector256.Load(x)) + Avx2.MultiplyAddAdjacent(c1, Vector256.Load(x + 32)))
                + (Avx2.MultiplyAddAdjacent(c2, Vector256.Load(x + 64)) + Avx2.MultiplyAddAdjacent(c3, Vector256.Load(x + 96))), ones));
    }

    // ---------------- 3-bit: a group is 24 bytes, 8 chunks of 3 bytes = 8 codes ----------------

    /// <summary>
    /// vpshufb controls: vector j of a group holds codes 16j..16j+15, one per 16-bit word, each word
    /// the two bytes around its code (code k of a 3-byte chunk starts at bit 3k) so that one
    /// unsigned high multiply shifts every word right by its own offset. Lane sources (see
    /// <see cref="MatVec3Bit"/>): a = group bytes 0-15, b = bytes 8-23.
    /// </summary>
    internal static readonly Vector256<byte>[] ThreeBitShuffles =
    [
        ThreeBitShuffle(0, 3),     // (a, a)
        ThreeBitShuffle(6, 9),     // (a, a)
        ThreeBitShuffle(12, 7),    // (a, b)
        ThreeBitShuffle(10, 13),   // (b, b)
    ];

    private static Vector256<byte> ThreeBitShuffle(int low, int high)
    {
        var control = new byte[32];
        for (int lane = 0; lane < 2; lane++)
        {
            int c = lane == 0 ? low : high;
            // (low byte, high byte) of word k; 0x80 yields a zero byte.
            byte[] pairs = [0x80, (byte)c, (byte)c, (byte)(c + 1), (byte)c, (byte)(c + 1), (byte)(c + 1), (byte)(c + 2),
                            (byte)(c + 1), (byte)(c + 2), (byte)(c + 1), (byte)(c + 2), (byte)(c + 2), 0x80, (byte)(c + 2), 0x80];
            pairs.CopyTo(control, lane * 16);
        }
        return Vector256.Create(control);
    }

    /// <summary>2^(16 - offset) per word: the high half of word * that is word &gt;&gt; offset (offsets 8,3,6,1,4,7,2,5).</summary>
    internal static readonly Vector256<ushort> ThreeBitMultipliers = Vector256.Create(
        (ushort)(1 << 8), 1 << 13, 1 << 10, 1 << 15, 1 << 12, 1 << 9, 1 << 14, 1 << 11,
        1 << 8, 1 << 13, 1 << 10, 1 << 15, 1 << 12, 1 << 9, 1 << 14, 1 << 11);

    /// <summary>Codes 16j..16j+15 of a group as 16-bit words.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<short> Codes3Bit(Vector256<byte> source, Vector256<byte> control, Vector256<ushort> multipliers) =>
        (Avx2.MultiplyHigh(Avx2.Shuffle(source, control).AsUInt16(), multipliers) & Vector256.Create((ushort)7)).AsInt16();

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MatVec3Bit(QuantizedWeight w, int first, int end, short* xq, float* xScales, float* xSums, float* y, long yStride, int tokens)
    {
        int groups = w.GroupsPerRow, cols = w.Cols, rowBytes = cols * 3 / 8;
        var shuffle0 = ThreeBitShuffles[0];
        var shuffle1 = ThreeBitShuffles[1];
        var shuffle2 = ThreeBitShuffles[2];
        var shuffle3 = ThreeBitShuffles[3];
        var multipliers = ThreeBitMultipliers;
        var acc = stackalloc Vector256<float>[4];
        for (int row = first; row < end; row++)
        {
            byte* p = (byte*)w.Packed + (long)row * rowBytes;
            ushort* scales = (ushort*)w.Scales + (long)row * groups;
            for (int t = 0; t < tokens; t++)
                acc[t] = Vector256<float>.Zero;
            for (int g = 0; g < groups; g++, p += 24)
            {
                var a = Vector128.Load(p);
                var b = Vector128.Load(p + 8);
                var c0 = Codes3Bit(Vector256.Create(a, a), shuffle0, multipliers);
                var c1 = Codes3Bit(Vector256.Create(a, a), shuffle1, multipliers);
                var c2 = Codes3Bit(Vector256.Create(a, b), shuffle2, multipliers);
                var c3 = Codes3Bit(Vector256.Create(b, b), shuffle3, multipliers);
                float scale = Bf16(scales, g);
                for (int t = 0; t < tokens; t++)
                {
                    short* x = xq + (long)t * cols + g * GroupSize;
                    var dot = (Avx2.MultiplyAddAdjacent(c0, Vector256.Load(x)) + Avx2.MultiplyAddAdjacent(c1, Vector256.Load(x + 16)))
                            + (Avx2.MultiplyAddAdjacent(c2, Vector256.Load(x + 32)) + Avx2.MultiplyAddAdjacent(c3, Vector256.Load(x + 48)));
                    acc[t] = Vector256.MultiplyAddEstimate(Vector256.ConvertToSingle(dot), Vector256.Create(scale * xScales[t * groups + g]), acc[t]);
                }
            }
            ushort* biases = (ushort*)w.Biases + (long)row * groups;
            for (int t = 0; t < tokens; t++)
                y[t * yStride + row] = Vector256.Sum(acc[t]) + BiasTerm(biases, xSums + t * groups, groups);
        }
    }

    /// <summary>One token: <see cref="MatVec3Bit"/> with the accumulators in registers, two groups per step.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MatVec3Bit1(QuantizedWeight w, int first, int end, short* xq, float* xScales, float* xSums, float* y)
    {
        int groups = w.GroupsPerRow, rowBytes = w.Cols * 3 / 8;
        var shuffle0 = ThreeBitShuffles[0];
        var shuffle1 = ThreeBitShuffles[1];
        var shuffle2 = ThreeBitShuffles[2];
        var shuffle3 = ThreeBitShuffles[3];
        var multipliers = ThreeBitMultipliers;
        float* rowScales = stackalloc float[groups];
        for (int row = first; row < end; row++)
        {
            byte* p = (byte*)w.Packed + (long)row * rowBytes;
            RowScales((ushort*)w.Scales + (long)row * groups, xScales, groups, rowScales);
            var acc0 = Vector256<float>.Zero;
            var acc1 = Vector256<float>.Zero;
            int g = 0;
            for (; g + 2 <= groups; g += 2)
            {
                acc0 = Vector256.MultiplyAddEstimate(Group(p + g * 24, xq + g * GroupSize), Vector256.Create(rowScales[g]), acc0);
                acc1 = Vector256.MultiplyAddEstimate(Group(p + g * 24 + 24, xq + g * GroupSize + GroupSize), Vector256.Create(rowScales[g + 1]), acc1);
            }
            if (g < groups)
                acc0 = Vector256.MultiplyAddEstimate(Group(p + g * 24, xq + g * GroupSize), Vector256.Create(rowScales[g]), acc0);
            y[row] = Vector256.Sum(acc0 + acc1) + BiasTerm((ushort*)w.Biases + (long)row * groups, xSums, groups);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        Vector256<float> Group(byte* p, short* x)
        {
            var a = Vector128.Load(p);
            var b = Vector128.Load(p + 8);
            var dot = (Avx2.MultiplyAddAdjacent(Codes3Bit(Vector256.Create(a, a), shuffle0, multipliers), Vector256.Load(x))
                     + Avx2.MultiplyAddAdjacent(Codes3Bit(Vector256.Create(a, a), shuffle1, multipliers), Vector256.Load(x + 16)))
                    + (Avx2.MultiplyAddAdjacent(Codes3Bit(Vector256.Create(a, b), shuffle2, multipliers), Vector256.Load(x + 32))
                     + Avx2.MultiplyAddAdjacent(Codes3Bit(Vector256.Create(b, b), shuffle3, multipliers), Vector256.Load(x + 48)));
            return Vector256.ConvertToSingle(dot);
        }
    }
}
