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
/// Three int8 terms, multiplied with u8 codes by vpmaddubsw (32 codes per instruction).
/// Per group t = x * 127 / max|x|, hi = round(t), mid = round((t - hi) * 181), lo = round(((t - hi) * 181 - mid) * 181),
/// so x = step * (32761 hi + 181 mid + lo) with step = max|x| / (127 * 32761), up to 1.2e-7 of max|x|. The
/// int16 products of each term are summed (at most 4 * 2 * 15 * 127 = 15240: no saturation) and one
/// vpmaddwd per term against (32761, 181, 1) adds them into int32 (at most 1.01e9), so a group adds
/// scale * step * S + bias * sum(x), sum(x) from the f32 x. Codes come out of the packed bytes with a
/// shift and an and per 32 (2-bit: byte j of vector k is element 4j+k of a pair of groups; 4-bit: low
/// and high nibbles of 16 bytes of two groups, one group per 128-bit lane); x is stored once per op in
/// that order, so each 128-bit lane holds one group and a pair of groups shares the int16-to-int32 step
/// and one scale FMA.
/// </para>
/// <para>
/// 3 bits: the same terms, one group per 128-bit lane. Codes come out as bytes: a code starts at bit 3k of its 3-byte chunk,
/// so its offset in its byte (3k mod 8, the "residue") is the same for code k of every chunk. A vpshufb
/// gathers into each dword the bytes holding four codes of one residue (four chunks), one vpsrlvd shifts
/// each dword by that residue and an and keeps 3 bits. The two residues whose codes cross a byte (codes
/// 2 and 5 of a chunk) take two bytes per code: 16-bit words, masked and packed to bytes (vpackuswb).
/// See <see cref="ThreeBitLayout"/>.
/// </para>
/// <para>
/// Decode streams every weight once, so each kernel prefetches the packed codes
/// <see cref="PrefetchBytes"/> ahead and the next row's scales and biases: without it one core waited
/// on memory (4-bit: 27-34 TSC cycles per 128 codes streamed against 16 from L2).
/// </para>
/// </summary>
internal static unsafe class SplitActivationKernels
{
    /// <summary>Group size the kernels are written for.</summary>
    public const int GroupSize = 64;

    /// <summary>Largest |hi| of the terms (int8).</summary>
    private const float ByteLevels = 127f;

    /// <summary>Steps of mid per unit of hi, and of lo per unit of mid.</summary>
    private const int MidSteps = 181;

    /// <summary>Weight of hi against lo: MidSteps^2, still an int16 vpmaddwd factor.</summary>
    private const int HiWeight = MidSteps * MidSteps;

    /// <summary>How far ahead of the codes being multiplied the packed codes are prefetched.</summary>
    private const int PrefetchBytes = 2048;

    /// <summary>Whether these kernels apply to this weight on this machine (and AVX2 is not switched off).</summary>
    public static bool Supports(QuantizedWeight w) => Int8Kernels.Supports(w);

    /// <summary>
    /// Int16 values one token's prepared x takes: three int8 terms per element of whole pairs of groups
    /// (the same for every <paramref name="bits"/> the kernels take).
    /// </summary>
    public static int InputShorts(int cols, int bits) => 3 * GroupSize * ((cols / GroupSize + 1) / 2);

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
        int* terms = stackalloc int[3 * GroupSize];   // [hi | mid | lo] of one group, element order
        var midSteps = Vector256.Create((float)MidSteps);
        for (int g = 0; g < groups; g++)
        {
            float* xg = x + g * GroupSize;
            var (max, sum) = GroupMaxAndSum(xg);
            xSums[g] = sum;
            xSteps[g] = max / ByteLevels / HiWeight;
            var inverse = Vector256.Create(max > 0 ? ByteLevels / max : 0f);
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
            // upper 128-bit lane of each term vector.
            sbyte* block = (sbyte*)xq + g / 2 * 6 * GroupSize + (g & 1) * 16;
            byte* slots = bits switch
            {
                2 => TwoBitSlots,
                3 => (g & 1) == 0 ? ThreeBitLayout.FirstSlots : ThreeBitLayout.SecondSlots,
                _ => FourBitSlots,
            };
            for (int i = 0; i < GroupSize; i++)
            {
                int slot = slots[i];
                block[slot] = (sbyte)terms[i];
                block[2 * GroupSize + slot] = (sbyte)terms[GroupSize + i];
                block[4 * GroupSize + slot] = (sbyte)terms[2 * GroupSize + i];
            }
        }
        if (groups % 2 == 1)
        {
            // A lone last group (3/4-bit): its missing partner's terms, the upper lanes of the 12 term vectors, are zero.
            sbyte* block = (sbyte*)xq + groups / 2 * 6 * GroupSize + 16;
            for (int v = 0; v < 12; v++)
                Vector128<sbyte>.Zero.Store(block + 32 * v);
        }
    }

    /// <summary>max |x| and sum(x) over one group of 64 values (both activation quantizers start with these).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static (float Max, float Sum) GroupMaxAndSum(float* xg)
    {
        var maxes = Vector256<float>.Zero;
        var sums = Vector256<float>.Zero;
        for (int i = 0; i < GroupSize; i += 8)
        {
            var v = Vector256.Load(xg + i);
            maxes = Vector256.Max(maxes, Vector256.Abs(v));
            sums += v;
        }
        var half = Vector128.Max(maxes.GetLower(), maxes.GetUpper());
        half = Vector128.Max(half, Vector128.Shuffle(half, Vector128.Create(2, 3, 0, 1)));
        return (MathF.Max(half.ToScalar(), half.GetElement(1)), Vector256.Sum(sums));
    }

    /// <summary>
    /// Byte of a pair's term vectors (128 bytes) that element i of its first group goes to (+16 for
    /// the second group). 2-bit: vector i % 4, byte i / 4. 4-bit: element 2b is the low nibble of packed
    /// byte b, 2b+1 the high one; vectors are (bytes 0-15 low, high nibbles; bytes 16-31 low, high).
    /// </summary>
    internal static readonly byte* TwoBitSlots = Table(i => i % 4 * 32 + i / 4);

    internal static readonly byte* FourBitSlots = Table(i => ((i / 2 < 16 ? 0 : 2) + i % 2) * 32 + i / 2 % 16);

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
            sbyte* x = (sbyte*)(xq + (long)t * shorts);
            float* steps = xSteps + (long)t * groups, sums = xSums + (long)t * groups, yt = y + t * yStride;
            switch (w.Bits)
            {
                case 4: MatVec4Bit(w, first, end, x, steps, sums, yt); break;
                case 3: MatVec3Bit(w, first, end, x, steps, sums, yt); break;
                default: MatVec2Bit(w, first, end, x, steps, sums, yt); break;
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

    /// <summary>Per-lane scales of a pair of groups: step * scale of group g in lanes 0-3, of group g+1 in 4-7.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> PairScale(float* rowScales, int g) =>
        Vector256.Create(Vector128.Create(rowScales[g]), Vector128.Create(rowScales[g + 1]));

    /// <summary>Lane scales of a lone last group (its missing partner's lanes zero).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> LoneScale(float* rowScales, int g) =>
        Vector256.Create(Vector128.Create(rowScales[g]), Vector128<float>.Zero);

    // ---------------- Three int8 terms against u8 codes ----------------

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

    /// <summary>A pair of groups (<see cref="IPairCodes{TSelf}"/>) against its three x terms.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Pair<TCodes>(in TCodes codes, byte* p, sbyte* x)
        where TCodes : struct, IPairCodes<TCodes>
    {
        codes.Pair(p, out var c0, out var c1, out var c2, out var c3);
        return ThreeTerms(c0, c1, c2, c3, x);
    }

    /// <summary>A lone last group (its partner lane zero) against its three x terms.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Lone<TCodes>(in TCodes codes, byte* p, sbyte* x)
        where TCodes : struct, IPairCodes<TCodes>
    {
        codes.Lone(p, out var c0, out var c1, out var c2, out var c3);
        return ThreeTerms(c0, c1, c2, c3, x);
    }

    // ---------------- 2 bits ----------------

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MatVec2Bit(QuantizedWeight w, int first, int end, sbyte* xq, float* xSteps, float* xSums, float* y)
    {
        int groups = w.GroupsPerRow, rowBytes = w.Cols / 4;
        var codes = TwoBitCodes.Create();
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
                acc0 = Vector256.MultiplyAddEstimate(Pair(codes, p + g * 16, xq + g * 3 * GroupSize), PairScale(rowScales, g), acc0);
                acc1 = Vector256.MultiplyAddEstimate(Pair(codes, p + g * 16 + 32, xq + (g + 2) * 3 * GroupSize), PairScale(rowScales, g + 2), acc1);
            }
            if (g < groups)
                acc0 = Vector256.MultiplyAddEstimate(Pair(codes, p + g * 16, xq + g * 3 * GroupSize), PairScale(rowScales, g), acc0);
            y[row] = Vector256.Sum(acc0 + acc1) + Int8Kernels.BiasTerm((ushort*)w.Biases + (long)row * groups, xSums, groups);
        }
    }

    // ---------------- 4 bits ----------------

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MatVec4Bit(QuantizedWeight w, int first, int end, sbyte* xq, float* xSteps, float* xSums, float* y)
    {
        int groups = w.GroupsPerRow, rowBytes = w.Cols / 2;
        var codes = FourBitCodes.Create();
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
                acc0 = Vector256.MultiplyAddEstimate(Pair(codes, p + g * 32, xq + g * 3 * GroupSize), PairScale(rowScales, g), acc0);
                acc1 = Vector256.MultiplyAddEstimate(Pair(codes, p + g * 32 + 64, xq + (g + 2) * 3 * GroupSize), PairScale(rowScales, g + 2), acc1);
            }
            if (g + 2 <= groups)
            {
                acc0 = Vector256.MultiplyAddEstimate(Pair(codes, p + g * 32, xq + g * 3 * GroupSize), PairScale(rowScales, g), acc0);
                g += 2;
            }
            if (g < groups)
                acc1 = Vector256.MultiplyAddEstimate(Lone(codes, p + g * 32, xq + g * 3 * GroupSize), LoneScale(rowScales, g), acc1);
            y[row] = Vector256.Sum(acc0 + acc1) + Int8Kernels.BiasTerm((ushort*)w.Biases + (long)row * groups, xSums, groups);
        }
    }

    // ---------------- 3 bits ----------------

    /// <summary>
    /// Where the 3-bit kernel finds the codes of a pair of groups (48 packed bytes; a group is 8 chunks
    /// of 3 bytes, code k of a chunk at bits 3k..3k+2, so at offset r = 3k mod 8 of byte 3k / 8: codes
    /// 2 and 5, r = 6 and 7, cross a byte). A 16-byte window from group byte 0 holds chunks 0-3, one
    /// from group byte 8 chunks 4-7 (at window bytes 4-15). Two source registers:
    /// S1 = pair bytes 8-39 (lane 0: first group's window 8, lane 1: second group's window 0) and
    /// S2 = pair bytes 0-15 and 32-47 (lane 0: first group's window 0, lane 1: second group's window 8).
    /// Per lane, dword d of code vector
    /// 0: codes of residue r = d of the 4 chunks of S1's window (one byte each, shifted right by r);
    /// 1: the same from S2; 2: residue 4 + d % 2, dwords 0-1 from S1 and 2-3 from S2 (a blend);
    /// 3: words of two bytes, residue 6 + d / 2 of two chunks, 8 words from S1 then 8 from S2, each
    /// masked to 3 bits, packed to bytes. Slots say where element i of a group lands (vector * 32 + byte
    /// of its lane), i.e. where QuantizeInput puts its x terms.
    /// </summary>
    internal static class ThreeBitLayout
    {
        public static readonly Vector256<byte> Shuffle0, Shuffle1, Shuffle2From1, Shuffle2From2, Shuffle3From1, Shuffle3From2;
        public static readonly Vector256<uint> Shifts01 = Vector256.Create(0u, 1, 2, 3, 0, 1, 2, 3);
        public static readonly Vector256<uint> Shifts2 = Vector256.Create(4u, 5, 4, 5, 4, 5, 4, 5);
        public static readonly Vector256<uint> Shifts3 = Vector256.Create(6u, 6, 7, 7, 6, 6, 7, 7);
        public static readonly byte* FirstSlots = (byte*)NativeMemory.Alloc(GroupSize), SecondSlots = (byte*)NativeMemory.Alloc(GroupSize);

        static ThreeBitLayout()
        {
            var shuffle0 = Unused();
            var shuffle1 = Unused();
            var shuffle2From1 = Unused();
            var shuffle2From2 = Unused();
            var shuffle3From1 = Unused();
            var shuffle3From2 = Unused();
            for (int lane = 0; lane < 2; lane++)
            {
                int window1 = lane == 0 ? 8 : 0, window2 = lane == 0 ? 0 : 8;
                byte* slots = lane == 0 ? FirstSlots : SecondSlots;
                new Span<byte>(slots, GroupSize).Fill(0xFF);
                int at = lane * 16;
                for (int d = 0; d < 4; d++)
                {
                    for (int b = 0; b < 4; b++)
                    {
                        Place(shuffle0, at + 4 * d + b, slots, 0, window1, b, d);
                        Place(shuffle1, at + 4 * d + b, slots, 1, window2, b, d);
                        if (d < 2)
                            Place(shuffle2From1, at + 4 * d + b, slots, 2, window1, b, 4 + d);
                        else
                            Place(shuffle2From2, at + 4 * d + b, slots, 2, window2, b, 4 + d - 2);
                    }
                    for (int word = 0; word < 2; word++)
                    {
                        int chunk = 2 * (d % 2) + word, residue = 6 + d / 2;
                        PlaceWord(shuffle3From1, at + 4 * d + 2 * word, slots, 96 + 2 * d + word, window1, chunk, residue);
                        PlaceWord(shuffle3From2, at + 4 * d + 2 * word, slots, 96 + 8 + 2 * d + word, window2, chunk, residue);
                    }
                }
                for (int i = 0; i < GroupSize; i++)
                {
                    if (slots[i] == 0xFF)
                        throw new InvalidOperationException($"3-bit layout leaves element {i} of lane {lane} without a slot");
                }
            }
            Shuffle0 = Vector256.Create(shuffle0);
            Shuffle1 = Vector256.Create(shuffle1);
            Shuffle2From1 = Vector256.Create(shuffle2From1);
            Shuffle2From2 = Vector256.Create(shuffle2From2);
            Shuffle3From1 = Vector256.Create(shuffle3From1);
            Shuffle3From2 = Vector256.Create(shuffle3From2);
        }

        /// <summary>vpshufb controls start as "zero" everywhere (bytes no code uses).</summary>
        private static byte[] Unused()
        {
            var control = new byte[32];
            Array.Fill(control, (byte)0x80);
            return control;
        }

        /// <summary>Code of residue r in chunk (window's first chunk + index): its element and the window byte holding its first bit.</summary>
        private static (int Element, int Byte) Code(int window, int index, int residue)
        {
            int chunk = window / 8 * 4 + index, k = 3 * residue % 8;
            return (8 * chunk + k, 3 * chunk + 3 * k / 8 - window);
        }

        private static void Place(byte[] control, int position, byte* slots, int vector, int window, int index, int residue)
        {
            var (element, source) = Code(window, index, residue);
            control[position] = (byte)source;
            slots[element] = (byte)(vector * 32 + position % 16);
        }

        private static void PlaceWord(byte[] control, int position, byte* slots, int slot, int window, int index, int residue)
        {
            var (element, source) = Code(window, index, residue);
            control[position] = (byte)source;
            control[position + 1] = (byte)(source + 1);
            slots[element] = (byte)slot;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MatVec3Bit(QuantizedWeight w, int first, int end, sbyte* xq, float* xSteps, float* xSums, float* y)
    {
        int groups = w.GroupsPerRow, rowBytes = w.Cols * 3 / 8;
        var codes = ThreeBitCodes.Create();
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
                byte* q = p + g * 24;
                Sse.Prefetch0(q + PrefetchBytes);
                Sse.Prefetch0(q + PrefetchBytes + 64);
                acc0 = Vector256.MultiplyAddEstimate(Pair(codes, q, xq + g * 3 * GroupSize),
                                                     PairScale(rowScales, g), acc0);
                acc1 = Vector256.MultiplyAddEstimate(Pair(codes, q + 48, xq + (g + 2) * 3 * GroupSize),
                                                     PairScale(rowScales, g + 2), acc1);
            }
            if (g + 2 <= groups)
            {
                byte* q = p + g * 24;
                acc0 = Vector256.MultiplyAddEstimate(Pair(codes, q, xq + g * 3 * GroupSize),
                                                     PairScale(rowScales, g), acc0);
                g += 2;
            }
            if (g < groups)
            {
                // A lone last group: only its own 24 bytes are read; the partner lane is zero.
                byte* q = p + g * 24;
                acc1 = Vector256.MultiplyAddEstimate(Lone(codes, q, xq + g * 3 * GroupSize),
                                                     LoneScale(rowScales, g), acc1);
            }
            y[row] = Vector256.Sum(acc0 + acc1) + Int8Kernels.BiasTerm((ushort*)w.Biases + (long)row * groups, xSums, groups);
        }
    }
}
