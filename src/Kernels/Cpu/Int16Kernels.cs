using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Pipeline.Kernels.Cpu;

/// <summary>
/// Quantized matvec on activations split into exact integer terms, with integer dot products: the
/// default decode path for 2-, 3- and 4-bit weights with groups of 64 and bf16 scales. Rounding is at
/// f32 level (about 1e-7 of a group's largest |x|), so the model tests' 5e-3 against the f32
/// reference hold; one int16 term alone (1.5e-5) moved the tiny test model's logits by 2.5e-2.
/// <para>
/// 2 and 4 bits: three int8 terms, multiplied with u8 codes by vpmaddubsw (32 codes per instruction).
/// Per group t = x * 127 / max|x|, hi = round(t), mid = round((t - hi) * 181), lo = round(((t - hi) * 181 - mid) * 181),
/// so x = step * (32761 hi + 181 mid + lo) with step = max|x| / (127 * 32761), up to 1.2e-7 of max|x|. The
/// int16 products of each term are summed (at most 4 * 2 * 15 * 127 = 15240: no saturation) and one
/// vpmaddwd per term against (32761, 181, 1) adds them into int32 (at most 1.01e9), so a group adds
/// scale * step * S + bias * sum(x), sum(x) from the f32 x. Codes come out of the packed bytes with a
/// shift and an and per 32 (2-bit: byte j of vector k is element 4j+k of a pair of groups; 4-bit: low
/// and high nibbles of 16 bytes of two groups, one group per 128-bit lane); x is stored once per op in
/// that order, so each vector lane holds one group and a pair of groups shares the int16-to-int32 step.
/// </para>
/// <para>
/// 3 bits: codes cut out as 16-bit words (a vpshufb puts the two bytes around each code in a word,
/// one vpsrlvd shifts each pair of words by their code's offset; two 16-byte loads per group) against
/// two int16 terms,
/// hi = round(t) with t = x * 32767 / max|x| and lo = round((t - hi) * 1024), combined in int32 as
/// (q . hi) * 1024 + q . lo (at most 8 * 7 * (32767 * 1024 + 512) = 1.88e9 per lane): up to 1.5e-8 of max|x|.
/// </para>
/// <para>
/// Decode streams every weight once, so each kernel prefetches the packed codes
/// <see cref="PrefetchBytes"/> ahead and the next row's scales and biases: without it one core waited
/// on memory (4-bit: 27-34 TSC cycles per 128 codes streamed against 16 from L2).
/// </para>
/// </summary>
internal static unsafe class Int16Kernels
{
    /// <summary>Group size the kernels are written for.</summary>
    public const int GroupSize = 64;

    /// <summary>Largest |hi| of the 2/4-bit terms (int8).</summary>
    private const float ByteLevels = 127f;

    /// <summary>Steps of mid per unit of hi, and of lo per unit of mid (2/4 bits).</summary>
    private const int MidSteps = 181;

    /// <summary>Weight of hi against lo: MidSteps^2, still an int16 vpmaddwd factor.</summary>
    private const int HiWeight = MidSteps * MidSteps;

    /// <summary>Largest |hi| of the 3-bit terms (int16).</summary>
    private const float ShortLevels = 32767f;

    /// <summary>Steps of lo per unit of hi (3 bits); a power of two so the int32 combine is a shift.</summary>
    private const int ThreeBitLowShift = 10;

    /// <summary>How far ahead of the codes being multiplied the packed codes are prefetched.</summary>
    private const int PrefetchBytes = 2048;

    /// <summary>Whether these kernels apply to this weight on this machine (and AVX2 is not switched off).</summary>
    public static bool Supports(QuantizedWeight w) => Int8Kernels.Supports(w);

    /// <summary>
    /// Int16 values one token's prepared x takes for a <paramref name="bits"/>-bit weight: two int16 terms
    /// per element (3 bits), or three int8 terms per element of whole pairs of groups (2, 4 bits).
    /// </summary>
    public static int InputShorts(int cols, int bits) => bits == 3 ? 2 * cols : 3 * GroupSize * ((cols / GroupSize + 1) / 2);

    /// <summary>
    /// Splits one token's x[cols] for a <paramref name="bits"/>-bit weight into its integer terms
    /// (<see cref="InputShorts"/>, in the weight's code order) and per group of 64 the step and sum(x).
    /// Vectorized (it runs on one thread before the matvec is split): terms of 8 elements at a time,
    /// then stored to their slots through a table.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeInput(float* x, int cols, int bits, short* xq, float* xSteps, float* xSums)
    {
        int groups = cols / GroupSize;
        int* terms = stackalloc int[3 * GroupSize];   // [hi | mid | lo] or [hi | lo] of one group, element order
        for (int g = 0; g < groups; g++)
        {
            float* xg = x + g * GroupSize;
            var maxes = Vector256<float>.Zero;
            var sums = Vector256<float>.Zero;
            for (int i = 0; i < GroupSize; i += 8)
            {
                var v = Vector256.Load(xg + i);
                maxes = Vector256.Max(maxes, Vector256.Abs(v));
                sums += v;
            }
            float max = MaxAcross(maxes);
            xSums[g] = Vector256.Sum(sums);
            if (bits == 3)
            {
                xSteps[g] = max / ShortLevels / (1 << ThreeBitLowShift);
                var inverse = Vector256.Create(max > 0 ? ShortLevels / max : 0f);
                for (int i = 0; i < GroupSize; i += 8)
                {
                    var t = Vector256.Load(xg + i) * inverse;
                    var hi = Vector256.Round(t);
                    Vector256.ConvertToInt32(hi).Store(terms + i);
                    Vector256.ConvertToInt32(Vector256.Round((t - hi) * Vector256.Create((float)(1 << ThreeBitLowShift)))).Store(terms + GroupSize + i);
                }
                short* q = xq + g * 2 * GroupSize;
                byte* slots = ThreeBitSlots;
                for (int i = 0; i < GroupSize; i++)
                {
                    q[slots[i]] = (short)terms[i];
                    q[GroupSize + slots[i]] = (short)terms[GroupSize + i];
                }
            }
            else
            {
                xSteps[g] = max / ByteLevels / HiWeight;
                var inverse = Vector256.Create(max > 0 ? ByteLevels / max : 0f);
                var midSteps = Vector256.Create((float)MidSteps);
                for (int i = 0; i < GroupSize; i += 8)
                {
                    var t = Vector256.Load(xg + i) * inverse;
                    var hi = Vector256.Round(t);
                    var midScaled = (t - hi) * midSteps;
                    var mid = Vector256.Round(midScaled);
                    Vector256.ConvertToInt32(hi).Store(terms + i);
                    Vector256.ConvertToInt32(mid).Store(terms + GroupSize + i);
                    Vector256.ConvertToInt32(Vector256.Round((midScaled - mid) * midSteps)).Store(terms + 2 * GroupSize + i);
                }
                // [hi | mid | lo] of 128 bytes per pair of groups; the second group of a pair fills the
                // upper 128-bit lane (4-bit) or bytes 16-31 (2-bit) of each term vector.
                sbyte* block = (sbyte*)xq + g / 2 * 6 * GroupSize + (g & 1) * 16;
                byte* slots = bits == 2 ? TwoBitSlots : FourBitSlots;
                for (int i = 0; i < GroupSize; i++)
                {
                    int slot = slots[i];
                    block[slot] = (sbyte)terms[i];
                    block[2 * GroupSize + slot] = (sbyte)terms[GroupSize + i];
                    block[4 * GroupSize + slot] = (sbyte)terms[2 * GroupSize + i];
                }
            }
        }
        if (bits != 3 && groups % 2 == 1)
        {
            // A lone last group (4-bit only): its missing partner's terms are zero.
            sbyte* block = (sbyte*)xq + groups / 2 * 6 * GroupSize + 16;
            for (int i = 0; i < GroupSize; i++)
            {
                int slot = FourBitSlots[i];
                block[slot] = block[2 * GroupSize + slot] = block[4 * GroupSize + slot] = 0;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float MaxAcross(Vector256<float> v)
    {
        var half = Vector128.Max(v.GetLower(), v.GetUpper());
        half = Vector128.Max(half, Vector128.Shuffle(half, Vector128.Create(2, 3, 0, 1)));
        return MathF.Max(half.ToScalar(), half.GetElement(1));
    }

    /// <summary>
    /// Byte of a pair's term vectors (128 bytes) that element i of its first group goes to (+16 for
    /// the second group). 2-bit: vector i % 4, byte i / 4. 4-bit: element 2b is the low nibble of packed
    /// byte b, 2b+1 the high one; vectors are (bytes 0-15 low, high nibbles; bytes 16-31 low, high).
    /// </summary>
    private static readonly byte* TwoBitSlots = Table(i => i % 4 * 32 + i / 4);

    private static readonly byte* FourBitSlots = Table(i => ((i / 2 < 16 ? 0 : 2) + i % 2) * 32 + i / 2 % 16);

    /// <summary>Short of a 3-bit group's terms that element i goes to: word w of code vector c holds element 8 * (2c + w % 2) + (w % 8) / 2 + 4 * (w / 8).</summary>
    private static readonly byte* ThreeBitSlots = Table(i =>
    {
        int chunk = i / 8, code = i % 8;
        return chunk / 2 * 16 + code / 4 * 8 + code % 4 * 2 + chunk % 2;
    });

    /// <summary>A process-lifetime native table of 64 slots (read in the hot loop without bounds checks).</summary>
    private static byte* Table(Func<int, int> slot)
    {
        byte* table = (byte*)NativeMemory.Alloc(GroupSize);
        for (int i = 0; i < GroupSize; i++)
            table[i] = (byte)slot(i);
        return table;
    }

    /// <summary>
    /// y[t * yStride + r] for rows [first, end) and <paramref name="tokens"/> consecutive tokens whose
    /// prepared inputs are xq + t * InputShorts, xSteps/xSums + t * groups.
    /// </summary>
    public static void MatVec(QuantizedWeight w, int first, int end, short* xq, float* xSteps, float* xSums, float* y, long yStride, int tokens)
    {
        int groups = w.GroupsPerRow, shorts = InputShorts(w.Cols, w.Bits);
        for (int t = 0; t < tokens; t++)
        {
            short* x = xq + (long)t * shorts;
            float* steps = xSteps + (long)t * groups, sums = xSums + (long)t * groups, yt = y + t * yStride;
            switch (w.Bits)
            {
                case 4: MatVec4Bit(w, first, end, (sbyte*)x, steps, sums, yt); break;
                case 3: MatVec3Bit(w, first, end, x, steps, sums, yt); break;
                default: MatVec2Bit(w, first, end, (sbyte*)x, steps, sums, yt); break;
            }
        }
    }

    /// <summary>Prefetches the scales and biases of a row (bf16, groups of them).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchRowScales(QuantizedWeight w, long row, int groups)
    {
        ushort* scales = (ushort*)w.Scales + row * groups, biases = (ushort*)w.Biases + row * groups;
        for (int g = 0; g < groups; g += 32)
        {
            Sse.Prefetch0(scales + g);
            Sse.Prefetch0(biases + g);
        }
    }

    // ---------------- 2 and 4 bits: three int8 terms ----------------

    /// <summary>One term: four u8 code vectors against 128 consecutive int8 x, int16 pair sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Term(Vector256<byte> c0, Vector256<byte> c1, Vector256<byte> c2, Vector256<byte> c3, sbyte* x) =>
        (Avx2.MultiplyAddAdjacent(c0, Vector256.Load(x)) + Avx2.MultiplyAddAdjacent(c1, Vector256.Load(x + 32)))
        + (Avx2.MultiplyAddAdjacent(c2, Vector256.Load(x + 64)) + Avx2.MultiplyAddAdjacent(c3, Vector256.Load(x + 96)));

    /// <summary>32761 (q . hi) + 181 (q . mid) + q . lo of a pair of groups as f32: lanes 0-3 first group, 4-7 second.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> ThreeTerms(Vector256<byte> c0, Vector256<byte> c1, Vector256<byte> c2, Vector256<byte> c3, sbyte* x)
    {
        var sum = Avx2.MultiplyAddAdjacent(Term(c0, c1, c2, c3, x), Vector256.Create((short)HiWeight))
                + Avx2.MultiplyAddAdjacent(Term(c0, c1, c2, c3, x + 2 * GroupSize), Vector256.Create((short)MidSteps))
                + Avx2.MultiplyAddAdjacent(Term(c0, c1, c2, c3, x + 4 * GroupSize), Vector256.Create((short)1));
        return Vector256.ConvertToSingle(sum);
    }

    /// <summary>A pair of 2-bit groups: 32 packed bytes, byte j holding elements 4j..4j+3.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Pair2Bit(byte* p, sbyte* x)
    {
        var packed = Vector256.Load(p);
        var words = packed.AsUInt16();
        var mask = Vector256.Create((byte)3);
        var c0 = packed & mask;
        var c1 = Avx2.ShiftRightLogical(words, 2).AsByte() & mask;
        var c2 = Avx2.ShiftRightLogical(words, 4).AsByte() & mask;
        var c3 = Avx2.ShiftRightLogical(words, 6).AsByte() & mask;
        return ThreeTerms(c0, c1, c2, c3, x);
    }

    /// <summary>Per-lane scales of a pair of groups: step * scale of group g in lanes 0-3, of group g+1 in 4-7.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> PairScale(float* rowScales, int g) =>
        Vector256.Create(Vector128.Create(rowScales[g]), Vector128.Create(rowScales[g + 1]));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MatVec2Bit(QuantizedWeight w, int first, int end, sbyte* xq, float* xSteps, float* xSums, float* y)
    {
        int groups = w.GroupsPerRow, rowBytes = w.Cols / 4;
        float* rowScales = stackalloc float[groups];
        for (int row = first; row < end; row++)
        {
            byte* p = (byte*)w.Packed + (long)row * rowBytes;
            Int8Kernels.RowScales((ushort*)w.Scales + (long)row * groups, xSteps, groups, rowScales);
            PrefetchRowScales(w, row + 1, groups);
            var acc0 = Vector256<float>.Zero;
            var acc1 = Vector256<float>.Zero;
            int g = 0;
            for (; g + 4 <= groups; g += 4)
            {
                Sse.Prefetch0(p + g * 16 + PrefetchBytes);
                acc0 = Vector256.MultiplyAddEstimate(Pair2Bit(p + g * 16, xq + g * 3 * GroupSize), PairScale(rowScales, g), acc0);
                acc1 = Vector256.MultiplyAddEstimate(Pair2Bit(p + g * 16 + 32, xq + (g + 2) * 3 * GroupSize), PairScale(rowScales, g + 2), acc1);
            }
            if (g < groups)
                acc0 = Vector256.MultiplyAddEstimate(Pair2Bit(p + g * 16, xq + g * 3 * GroupSize), PairScale(rowScales, g), acc0);
            y[row] = Vector256.Sum(acc0 + acc1) + Int8Kernels.BiasTerm((ushort*)w.Biases + (long)row * groups, xSums, groups);
        }
    }

    /// <summary>A pair of 4-bit groups (64 packed bytes), or a lone group when <paramref name="second"/> is null.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Pair4Bit(byte* first, byte* second, sbyte* x)
    {
        // Bytes 0-15 of both groups, then bytes 16-31: each 128-bit lane is one group.
        var front = Vector256.Create(Vector128.Load(first), second is null ? Vector128<byte>.Zero : Vector128.Load(second));
        var back = Vector256.Create(Vector128.Load(first + 16), second is null ? Vector128<byte>.Zero : Vector128.Load(second + 16));
        var mask = Vector256.Create((byte)0x0F);
        var c0 = front & mask;
        var c1 = Avx2.ShiftRightLogical(front.AsUInt16(), 4).AsByte() & mask;
        var c2 = back & mask;
        var c3 = Avx2.ShiftRightLogical(back.AsUInt16(), 4).AsByte() & mask;
        return ThreeTerms(c0, c1, c2, c3, x);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MatVec4Bit(QuantizedWeight w, int first, int end, sbyte* xq, float* xSteps, float* xSums, float* y)
    {
        int groups = w.GroupsPerRow, rowBytes = w.Cols / 2;
        float* rowScales = stackalloc float[groups];
        for (int row = first; row < end; row++)
        {
            byte* p = (byte*)w.Packed + (long)row * rowBytes;
            Int8Kernels.RowScales((ushort*)w.Scales + (long)row * groups, xSteps, groups, rowScales);
            PrefetchRowScales(w, row + 1, groups);
            var acc0 = Vector256<float>.Zero;
            var acc1 = Vector256<float>.Zero;
            int g = 0;
            for (; g + 4 <= groups; g += 4)
            {
                Sse.Prefetch0(p + g * 32 + PrefetchBytes);
                Sse.Prefetch0(p + g * 32 + PrefetchBytes + 64);
                acc0 = Vector256.MultiplyAddEstimate(Pair4Bit(p + g * 32, p + g * 32 + 32, xq + g * 3 * GroupSize), PairScale(rowScales, g), acc0);
                acc1 = Vector256.MultiplyAddEstimate(Pair4Bit(p + g * 32 + 64, p + g * 32 + 96, xq + (g + 2) * 3 * GroupSize), PairScale(rowScales, g + 2), acc1);
            }
            if (g + 2 <= groups)
            {
                acc0 = Vector256.MultiplyAddEstimate(Pair4Bit(p + g * 32, p + g * 32 + 32, xq + g * 3 * GroupSize), PairScale(rowScales, g), acc0);
                g += 2;
            }
            if (g < groups)
            {
                var scale = Vector256.Create(Vector128.Create(rowScales[g]), Vector128<float>.Zero);
                acc1 = Vector256.MultiplyAddEstimate(Pair4Bit(p + g * 32, null, xq + g * 3 * GroupSize), scale, acc1);
            }
            y[row] = Vector256.Sum(acc0 + acc1) + Int8Kernels.BiasTerm((ushort*)w.Biases + (long)row * groups, xSums, groups);
        }
    }

    // ---------------- 3 bits: two int16 terms ----------------

    /// <summary>Where code vector c of a group reads its 16 bytes (both lanes): chunks 2c and 2c+1 (3 bytes each) lie inside.</summary>
    private static readonly int[] ThreeBitSources = [0, 0, 8, 8];

    /// <summary>
    /// vpshufb controls per code vector c: dword d of lane L holds code j = d + 4L of chunk 2c (low word)
    /// and of chunk 2c+1 (high word), each word the two chunk bytes from byte min(3j / 8, 1) on.
    /// </summary>
    private static readonly Vector256<byte>[] ThreeBitShuffles = [ThreeBitShuffle(0), ThreeBitShuffle(1), ThreeBitShuffle(2), ThreeBitShuffle(3)];

    /// <summary>Offset of code j in its word: 3j - 8 * min(3j / 8, 1).</summary>
    private static readonly Vector256<uint> ThreeBitShifts = Vector256.Create(0u, 3, 6, 1, 4, 7, 10, 13);

    private static Vector256<byte> ThreeBitShuffle(int c)
    {
        var control = new byte[32];
        for (int lane = 0; lane < 2; lane++)
        {
            for (int d = 0; d < 4; d++)
            {
                int j = d + 4 * lane;
                for (int high = 0; high < 2; high++)
                {
                    int source = 3 * (2 * c + high) + Math.Min(3 * j / 8, 1) - ThreeBitSources[c];
                    control[lane * 16 + d * 4 + high * 2] = (byte)source;
                    control[lane * 16 + d * 4 + high * 2 + 1] = (byte)(source + 1);
                }
            }
        }
        return Vector256.Create(control);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MatVec3Bit(QuantizedWeight w, int first, int end, short* xq, float* xSteps, float* xSums, float* y)
    {
        int groups = w.GroupsPerRow, rowBytes = w.Cols * 3 / 8;
        var shuffle0 = ThreeBitShuffles[0];
        var shuffle1 = ThreeBitShuffles[1];
        var shuffle2 = ThreeBitShuffles[2];
        var shuffle3 = ThreeBitShuffles[3];
        var shifts = ThreeBitShifts;
        float* rowScales = stackalloc float[groups];
        for (int row = first; row < end; row++)
        {
            byte* p = (byte*)w.Packed + (long)row * rowBytes;
            Int8Kernels.RowScales((ushort*)w.Scales + (long)row * groups, xSteps, groups, rowScales);
            PrefetchRowScales(w, row + 1, groups);
            var acc0 = Vector256<float>.Zero;
            var acc1 = Vector256<float>.Zero;
            int g = 0;
            for (; g + 2 <= groups; g += 2)
            {
                Sse.Prefetch0(p + g * 24 + PrefetchBytes);
                acc0 = Vector256.MultiplyAddEstimate(Group(p + g * 24, xq + g * 2 * GroupSize), Vector256.Create(rowScales[g]), acc0);
                acc1 = Vector256.MultiplyAddEstimate(Group(p + g * 24 + 24, xq + (g + 1) * 2 * GroupSize), Vector256.Create(rowScales[g + 1]), acc1);
            }
            if (g < groups)
                acc0 = Vector256.MultiplyAddEstimate(Group(p + g * 24, xq + g * 2 * GroupSize), Vector256.Create(rowScales[g]), acc0);
            y[row] = Vector256.Sum(acc0 + acc1) + Int8Kernels.BiasTerm((ushort*)w.Biases + (long)row * groups, xSums, groups);
        }

        // A 3-bit group is 24 bytes: 8 chunks of 3 bytes, code j of a chunk at bits 3j..3j+2.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        Vector256<float> Group(byte* p, short* x)
        {
            var mask = Vector256.Create(0x00070007u);
            var front = Avx2.BroadcastVector128ToVector256(p);       // chunks 0-3 (bytes 0-11)
            var back = Avx2.BroadcastVector128ToVector256(p + 8);    // chunks 4-7 (bytes 12-23)
            var c0 = (Avx2.ShiftRightLogicalVariable(Avx2.Shuffle(front, shuffle0).AsUInt32(), shifts) & mask).AsInt16();
            var c1 = (Avx2.ShiftRightLogicalVariable(Avx2.Shuffle(front, shuffle1).AsUInt32(), shifts) & mask).AsInt16();
            var c2 = (Avx2.ShiftRightLogicalVariable(Avx2.Shuffle(back, shuffle2).AsUInt32(), shifts) & mask).AsInt16();
            var c3 = (Avx2.ShiftRightLogicalVariable(Avx2.Shuffle(back, shuffle3).AsUInt32(), shifts) & mask).AsInt16();
            var hi = (Avx2.MultiplyAddAdjacent(c0, Vector256.Load(x)) + Avx2.MultiplyAddAdjacent(c1, Vector256.Load(x + 16)))
                   + (Avx2.MultiplyAddAdjacent(c2, Vector256.Load(x + 32)) + Avx2.MultiplyAddAdjacent(c3, Vector256.Load(x + 48)));
            var lo = (Avx2.MultiplyAddAdjacent(c0, Vector256.Load(x + 64)) + Avx2.MultiplyAddAdjacent(c1, Vector256.Load(x + 80)))
                   + (Avx2.MultiplyAddAdjacent(c2, Vector256.Load(x + 96)) + Avx2.MultiplyAddAdjacent(c3, Vector256.Load(x + 112)));
            return Vector256.ConvertToSingle(Avx2.ShiftLeftLogical(hi, ThreeBitLowShift) + lo);
        }
    }
}
