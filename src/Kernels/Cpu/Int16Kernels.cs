using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Pipeline.Kernels.Cpu;

/// <summary>
/// Quantized matvec with activations split into two int16 terms and integer dot products (AVX2
/// vpmaddwd: 16-bit codes x int16, pairs summed into int32): the default decode path for 2-, 3- and
/// 4-bit weights with groups of 64 and bf16 scales.
/// <para>
/// Per weight group, s = max|x| / 32767 and t = x / s; x = s * (hi + lo / 65534) with hi = round(t),
/// lo = round((t - hi) * 65534), so a group contributes
/// scale * s * ((q . hi) + (q . lo) / 65534) + bias * sum(x), sum(x) from the f32 x. One int16 term
/// alone (x rounded by s/2, 1.5e-5 of the group's largest |x|) moved the tiny test model's logits by
/// up to 2.5e-2; with the second term the rounding (about 6e-8 of max|x|, from t itself being f32)
/// is at f32 level and the model tests' 5e-3 against the f32 reference hold. The inner loop is
/// shifts, ands and vpmaddwd instead of one int-to-float conversion and FMA per 8 codes. int32
/// cannot overflow: a lane sums at most 16 products of a code (at most 15) and |xq| (at most 32767).
/// </para>
/// <para>
/// Codes are taken from the packed 16-bit words in place (no repack): word i of a 4-bit group holds
/// elements 4i..4i+3 (4 bits apart), word i of a pair of 2-bit groups elements 8i..8i+7 (2 bits apart).
/// Shift-and-mask k yields element (4 or 8)i+k in every word, so xq is stored in that order: vector k
/// of a group is x[4i+k] (4-bit) or of a pair x[8i+k] (2-bit). 3-bit codes come out in element order
/// (<see cref="Int8Kernels.Codes3Bit"/>). Per block (a group; a pair of groups for 2 bits) of n
/// elements xq holds n hi terms, then n lo terms.
/// </para>
/// </summary>
internal static unsafe class Int16Kernels
{
    /// <summary>Group size the kernels are written for.</summary>
    public const int GroupSize = 64;

    /// <summary>Largest |hi|.</summary>
    private const float Levels = 32767f;

    /// <summary>lo is the remainder t - hi (at most 1/2) in steps of 1/LowSteps.</summary>
    private const float LowSteps = 65534f;

    /// <summary>Whether the int16 kernels apply to this weight on this machine (and AVX2 is not switched off).</summary>
    public static bool Supports(QuantizedWeight w) => Int8Kernels.Supports(w);

    /// <summary>Int16 values one token's prepared x takes (hi and lo terms).</summary>
    public static int InputShorts(int cols) => 2 * cols;

    /// <summary>
    /// Splits one token's x[cols] for a <paramref name="bits"/>-bit weight into hi and lo int16 terms
    /// (<see cref="InputShorts"/>, in the weight's code order) and per group of 64 the step s and sum(x).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeInput(float* x, int cols, int bits, short* xq, float* xScales, float* xSums)
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
            xScales[g] = max / Levels;
            xSums[g] = sum;
            float inverse = max > 0 ? Levels / max : 0f;
            if (bits == 3)
            {
                short* q = xq + g * 2 * GroupSize;
                for (int i = 0; i < GroupSize; i++)
                    Split(xg[i] * inverse, q + i, GroupSize);
            }
            else if (bits == 4)
            {
                // Vector k (16 words) of the group: x[4i+k].
                short* q = xq + g * 2 * GroupSize;
                for (int i = 0; i < 16; i++)
                {
                    for (int k = 0; k < 4; k++)
                        Split(xg[4 * i + k] * inverse, q + k * 16 + i, GroupSize);
                }
            }
            else
            {
                // Pairs of groups (128 elements): vector k of the pair is x[8i+k]; words 0-7 come from the
                // first group, 8-15 from the second.
                short* q = xq + (g & ~1) * 2 * GroupSize;
                int half = (g & 1) * 8;
                for (int i = 0; i < 8; i++)
                {
                    for (int k = 0; k < 8; k++)
                        Split(xg[8 * i + k] * inverse, q + k * 16 + half + i, 2 * GroupSize);
                }
            }
        }

        static void Split(float t, short* destination, int loOffset)
        {
            float hi = MathF.Round(t);
            destination[0] = (short)hi;
            destination[loOffset] = (short)MathF.Round((t - hi) * LowSteps);
        }
    }

    /// <summary>
    /// y[t * yStride + r] for rows [first, end) and <paramref name="tokens"/> consecutive tokens whose
    /// prepared inputs are xq + t * InputShorts, xScales/xSums + t * groups.
    /// </summary>
    public static void MatVec(QuantizedWeight w, int first, int end, short* xq, float* xScales, float* xSums, float* y, long yStride, int tokens)
    {
        int groups = w.GroupsPerRow;
        for (int t = 0; t < tokens; t++)
        {
            short* x = xq + (long)t * InputShorts(w.Cols);
            float* s = xScales + (long)t * groups, sums = xSums + (long)t * groups, yt = y + t * yStride;
            switch (w.Bits)
            {
                case 4: MatVec4Bit(w, first, end, x, s, sums, yt); break;
                case 3: MatVec3Bit(w, first, end, x, s, sums, yt); break;
                default: MatVec2Bit(w, first, end, x, s, sums, yt); break;
            }
        }
    }

    /// <summary>hi + lo / 65534 from the two integer dot products.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Combine(Vector256<int> hi, Vector256<int> lo) =>
        Vector256.MultiplyAddEstimate(Vector256.ConvertToSingle(lo), Vector256.Create(1f / LowSteps), Vector256.ConvertToSingle(hi));

    /// <summary>A 4-bit group (32 bytes) against its hi and lo x terms (64 each).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Group4Bit(byte* p, short* x)
    {
        var words = Vector256.Load((ushort*)p);
        var mask = Vector256.Create((ushort)0x0F);
        var c0 = (words & mask).AsInt16();
        var c1 = (Avx2.ShiftRightLogical(words, 4) & mask).AsInt16();
        var c2 = (Avx2.ShiftRightLogical(words, 8) & mask).AsInt16();
        var c3 = Avx2.ShiftRightLogical(words, 12).AsInt16();
        return Combine(Dot(c0, c1, c2, c3, x), Dot(c0, c1, c2, c3, x + GroupSize));
    }

    /// <summary>Four vectors of 16-bit codes against 64 consecutive int16 x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Dot(Vector256<short> c0, Vector256<short> c1, Vector256<short> c2, Vector256<short> c3, short* x) =>
        (Avx2.MultiplyAddAdjacent(c0, Vector256.Load(x)) + Avx2.MultiplyAddAdjacent(c1, Vector256.Load(x + 16)))
        + (Avx2.MultiplyAddAdjacent(c2, Vector256.Load(x + 32)) + Avx2.MultiplyAddAdjacent(c3, Vector256.Load(x + 48)));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MatVec4Bit(QuantizedWeight w, int first, int end, short* xq, float* xScales, float* xSums, float* y)
    {
        int groups = w.GroupsPerRow, rowBytes = w.Cols / 2;
        float* rowScales = stackalloc float[groups];
        for (int row = first; row < end; row++)
        {
            byte* p = (byte*)w.Packed + (long)row * rowBytes;
            Int8Kernels.RowScales((ushort*)w.Scales + (long)row * groups, xScales, groups, rowScales);
            var acc0 = Vector256<float>.Zero;
            var acc1 = Vector256<float>.Zero;
            int g = 0;
            for (; g + 2 <= groups; g += 2)
            {
                acc0 = Vector256.MultiplyAddEstimate(Group4Bit(p + g * 32, xq + g * 2 * GroupSize), Vector256.Create(rowScales[g]), acc0);
                acc1 = Vector256.MultiplyAddEstimate(Group4Bit(p + g * 32 + 32, xq + (g + 1) * 2 * GroupSize), Vector256.Create(rowScales[g + 1]), acc1);
            }
            if (g < groups)
                acc0 = Vector256.MultiplyAddEstimate(Group4Bit(p + g * 32, xq + g * 2 * GroupSize), Vector256.Create(rowScales[g]), acc0);
            y[row] = Vector256.Sum(acc0 + acc1) + Int8Kernels.BiasTerm((ushort*)w.Biases + (long)row * groups, xSums, groups);
        }
    }

    /// <summary>A pair of 2-bit groups (32 bytes) against its hi and lo x terms (128 each): lanes 0-3 first group, 4-7 second.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Pair2Bit(byte* p, short* x)
    {
        var words = Vector256.Load((ushort*)p);
        var mask = Vector256.Create((ushort)3);
        var c0 = (words & mask).AsInt16();
        var c1 = (Avx2.ShiftRightLogical(words, 2) & mask).AsInt16();
        var c2 = (Avx2.ShiftRightLogical(words, 4) & mask).AsInt16();
        var c3 = (Avx2.ShiftRightLogical(words, 6) & mask).AsInt16();
        var hi = Dot(c0, c1, c2, c3, x);
        var lo = Dot(c0, c1, c2, c3, x + 2 * GroupSize);
        c0 = (Avx2.ShiftRightLogical(words, 8) & mask).AsInt16();
        c1 = (Avx2.ShiftRightLogical(words, 10) & mask).AsInt16();
        c2 = (Avx2.ShiftRightLogical(words, 12) & mask).AsInt16();
        c3 = Avx2.ShiftRightLogical(words, 14).AsInt16();
        hi += Dot(c0, c1, c2, c3, x + 64);
        lo += Dot(c0, c1, c2, c3, x + 2 * GroupSize + 64);
        return Combine(hi, lo);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MatVec2Bit(QuantizedWeight w, int first, int end, short* xq, float* xScales, float* xSums, float* y)
    {
        int groups = w.GroupsPerRow, rowBytes = w.Cols / 4;
        float* rowScales = stackalloc float[groups];
        for (int row = first; row < end; row++)
        {
            byte* p = (byte*)w.Packed + (long)row * rowBytes;
            Int8Kernels.RowScales((ushort*)w.Scales + (long)row * groups, xScales, groups, rowScales);
            var acc0 = Vector256<float>.Zero;
            var acc1 = Vector256<float>.Zero;
            int g = 0;
            for (; g + 4 <= groups; g += 4)
            {
                acc0 = Vector256.MultiplyAddEstimate(Pair2Bit(p + g * 16, xq + g * 2 * GroupSize), Int8Kernels.PairScale(rowScales, g), acc0);
                acc1 = Vector256.MultiplyAddEstimate(Pair2Bit(p + g * 16 + 32, xq + (g + 2) * 2 * GroupSize), Int8Kernels.PairScale(rowScales, g + 2), acc1);
            }
            if (g < groups)
                acc0 = Vector256.MultiplyAddEstimate(Pair2Bit(p + g * 16, xq + g * 2 * GroupSize), Int8Kernels.PairScale(rowScales, g), acc0);
            y[row] = Vector256.Sum(acc0 + acc1) + Int8Kernels.BiasTerm((ushort*)w.Biases + (long)row * groups, xSums, groups);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MatVec3Bit(QuantizedWeight w, int first, int end, short* xq, float* xScales, float* xSums, float* y)
    {
        int groups = w.GroupsPerRow, rowBytes = w.Cols * 3 / 8;
        var shuffle0 = Int8Kernels.ThreeBitShuffles[0];
        var shuffle1 = Int8Kernels.ThreeBitShuffles[1];
        var shuffle2 = Int8Kernels.ThreeBitShuffles[2];
        var shuffle3 = Int8Kernels.ThreeBitShuffles[3];
        var multipliers = Int8Kernels.ThreeBitMultipliers;
        float* rowScales = stackalloc float[groups];
        for (int row = first; row < end; row++)
        {
            byte* p = (byte*)w.Packed + (long)row * rowBytes;
            Int8Kernels.RowScales((ushort*)w.Scales + (long)row * groups, xScales, groups, rowScales);
            var acc0 = Vector256<float>.Zero;
            var acc1 = Vector256<float>.Zero;
            int g = 0;
            for (; g + 2 <= groups; g += 2)
            {
                acc0 = Vector256.MultiplyAddEstimate(Group(p + g * 24, xq + g * 2 * GroupSize), Vector256.Create(rowScales[g]), acc0);
                acc1 = Vector256.MultiplyAddEstimate(Group(p + g * 24 + 24, xq + (g + 1) * 2 * GroupSize), Vector256.Create(rowScales[g + 1]), acc1);
            }
            if (g < groups)
                acc0 = Vector256.MultiplyAddEstimate(Group(p + g * 24, xq + g * 2 * GroupSize), Vector256.Create(rowScales[g]), acc0);
            y[row] = Vector256.Sum(acc0 + acc1) + Int8Kernels.BiasTerm((ushort*)w.Biases + (long)row * groups, xSums, groups);
        }

        // A 3-bit group is 24 bytes; a = bytes 0-15, b = bytes 8-23 (see Int8Kernels.ThreeBitShuffles).
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        Vector256<float> Group(byte* p, short* x)
        {
            var a = Vector128.Load(p);
            var b = Vector128.Load(p + 8);
            var c0 = Int8Kernels.Codes3Bit(Vector256.Create(a, a), shuffle0, multipliers);
            var c1 = Int8Kernels.Codes3Bit(Vector256.Create(a, a), shuffle1, multipliers);
            var c2 = Int8Kernels.Codes3Bit(Vector256.Create(a, b), shuffle2, multipliers);
            var c3 = Int8Kernels.Codes3Bit(Vector256.Create(b, b), shuffle3, multipliers);
            return Combine(Dot(c0, c1, c2, c3, x), Dot(c0, c1, c2, c3, x + GroupSize));
        }
    }
}
