using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Pipeline.Kernels.Cpu;

/// <summary>
/// Single-threaded inner loops of the CPU backend, on raw pointers. Three paths, chosen at startup
/// and switchable for tests: AVX2 (<see cref="UseAvx2"/>), portable Vector256, scalar
/// (<see cref="UseVectors"/> off).
/// <para>
/// Quantized rows are read directly in MLX's packed layout (no repack), 8 elements at a time:
/// 8 elements of b bits are exactly b bytes of the row's LSB-first bitstream. With AVX2 and b &lt;= 4
/// those bytes are one uint, broadcast and shifted per lane by k*b. The portable decoding reads
/// them as a ulong u: elements 0-3 are the low 4b bits, elements 4-7 the next 4b; each half is
/// broadcast into 4 lanes and masked with (2^b - 1) &lt;&lt; (k*b) without shifting, so lane k holds
/// code * 2^(k*b), and that power of two is folded into the other operand (x pre-scaled by
/// 2^-(k*b), or scale * 2^-(k*b)), which is exact. A group's contribution is
/// scale * sum(q*x) + bias * sum(x), with sum(x) per group computed once per token.
/// </para>
/// </summary>
internal static unsafe class CpuKernels
{
    /// <summary>
    /// Environment variable capping the instruction set at startup: "scalar", "vector256" (portable
    /// Vector256, no AVX2-specific code) or "avx2" (the default where supported).
    /// </summary>
    public const string IsaVariable = "PIPELINE_CPU_ISA";

    public static bool UseVectors { get; set; } = Vector256.IsHardwareAccelerated && Isa() != "scalar";

    /// <summary>AVX2's per-lane shifts and integer dot products (else the portable Vector256 decoding).</summary>
    public static bool UseAvx2 { get; set; } = Avx2.IsSupported && Isa() is not ("scalar" or "vector256");

    private static string Isa()
    {
        string? value = Environment.GetEnvironmentVariable(IsaVariable);
        if (value is null or "" or "avx2")
            return "avx2";
        if (value is "scalar" or "vector256")
            return value;
        throw new InvalidOperationException($"{IsaVariable}={value}: expected scalar, vector256 or avx2");
    }

    // ---------------- dense dot products ----------------

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Dot(float* a, float* b, int n)
    {
        int i = 0;
        float sum = 0;
        if (UseVectors && n >= 8)
        {
            var acc0 = Vector256<float>.Zero;
            var acc1 = Vector256<float>.Zero;
            for (; i + 16 <= n; i += 16)
            {
                acc0 = Vector256.MultiplyAddEstimate(Vector256.Load(a + i), Vector256.Load(b + i), acc0);
                acc1 = Vector256.MultiplyAddEstimate(Vector256.Load(a + i + 8), Vector256.Load(b + i + 8), acc1);
            }
            for (; i + 8 <= n; i += 8)
                acc0 = Vector256.MultiplyAddEstimate(Vector256.Load(a + i), Vector256.Load(b + i), acc0);
            sum = Vector256.Sum(acc0 + acc1);
        }
        for (; i < n; i++)
            sum += a[i] * b[i];
        return sum;
    }

    /// <summary>dot(bf16 row, x) without materializing the row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float DotBf16(ushort* w, float* x, int n)
    {
        int i = 0;
        float sum = 0;
        if (UseVectors && n >= 16)
        {
            var acc0 = Vector256<float>.Zero;
            var acc1 = Vector256<float>.Zero;
            for (; i + 16 <= n; i += 16)
            {
                var (lo, hi) = Vector256.Widen(Vector256.Load(w + i));
                acc0 = Vector256.MultiplyAddEstimate(Vector256.ShiftLeft(lo, 16).AsSingle(), Vector256.Load(x + i), acc0);
                acc1 = Vector256.MultiplyAddEstimate(Vector256.ShiftLeft(hi, 16).AsSingle(), Vector256.Load(x + i + 8), acc1);
            }
            sum = Vector256.Sum(acc0 + acc1);
        }
        for (; i < n; i++)
            sum += Scalars.Bf16ToFloat(w[i]) * x[i];
        return sum;
    }

    /// <summary>Converts n dense values of any checkpoint type to f32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ToFloat(nint data, long offset, ScalarType type, float* destination, int n)
    {
        switch (type)
        {
            case ScalarType.F32:
                Buffer.MemoryCopy((float*)data + offset, destination, (long)n * 4, (long)n * 4);
                break;
            case ScalarType.BF16:
                {
                    ushort* source = (ushort*)data + offset;
                    int i = 0;
                    if (UseVectors)
                    {
                        for (; i + 16 <= n; i += 16)
                        {
                            var (lo, hi) = Vector256.Widen(Vector256.Load(source + i));
                            Vector256.ShiftLeft(lo, 16).AsSingle().Store(destination + i);
                            Vector256.ShiftLeft(hi, 16).AsSingle().Store(destination + i + 8);
                        }
                    }
                    for (; i < n; i++)
                        destination[i] = Scalars.Bf16ToFloat(source[i]);
                    break;
                }
            default:
                {
                    ushort* source = (ushort*)data + offset;
                    for (int i = 0; i < n; i++)
                        destination[i] = Scalars.F16ToFloat(source[i]);
                    break;
                }
        }
    }

    // ---------------- quantized rows ----------------

    /// <summary>The 8 lane masks (2^b - 1) &lt;&lt; ((lane % 4) * b).</summary>
    public static Vector256<uint> LaneMasks(int bits)
    {
        uint mask = (1u << bits) - 1;
        return Vector256.Create(mask, mask << bits, mask << (2 * bits), mask << (3 * bits),
                                mask, mask << bits, mask << (2 * bits), mask << (3 * bits));
    }

    /// <summary>2^-((i % 4) * b): the factor that undoes lane i's missing shift.</summary>
    public static float LaneFactor(int index, int bits) => MathF.ScaleB(1f, -(index & 3) * bits);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong ReadChunk(byte* row, int offset, int rowBytes, int bits)
    {
        if (offset + 8 <= rowBytes)
            return Unsafe.ReadUnaligned<ulong>(row + offset);
        ulong value = 0;
        for (int i = 0; i < bits; i++)
            value |= (ulong)row[offset + i] << (8 * i);
        return value;
    }

    /// <summary>Eight codes, lane k scaled by 2^((k%4)*b), as floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> ShiftedCodes(ulong chunk, int bits, Vector256<uint> masks)
    {
        uint lo = (uint)chunk, hi = (uint)(chunk >> (4 * bits));
        var words = Vector256.Create(Vector128.Create(lo), Vector128.Create(hi)) & masks;
        // Lane 3 of 8-bit codes reaches bit 31, where int conversion would see a sign.
        return bits == 8 ? Vector256.ConvertToSingle(words) : Vector256.ConvertToSingle(words.AsInt32());
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static uint ScalarCode(byte* row, int element, int bits)
    {
        int bit = element * bits;
        uint code = 0;
        for (int i = 0; i < bits; i++, bit++)
            code |= (uint)((row[bit >> 3] >> (bit & 7)) & 1) << i;
        return code;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float LoadScale(nint data, long index, ScalarType type) => type switch
    {
        ScalarType.BF16 => BitConverter.Int32BitsToSingle(((ushort*)data)[index] << 16),
        ScalarType.F32 => ((float*)data)[index],
        _ => Scalars.F16ToFloat(((ushort*)data)[index]),
    };

    /// <summary>
    /// y[r] = row r . x for rows [first, end), one token: xs is x pre-scaled by <see cref="LaneFactor"/>
    /// and xSums holds sum(x) per group.
    /// </summary>
    public static void MatVecQuantized(QuantizedWeight w, int first, int end, float* x, float* xs, float* xSums, float* y)
    {
        if (!UseVectors)
        {
            MatVecQuantizedScalar(w, first, end, x, xSums, y);
            return;
        }
        var rows = new QuantizedRows(w, (byte*)w.Packed, first, end, x, xs, xSums, y);
        ForEachRowRange(ref rows);
    }

    /// <summary>
    /// Runs the kernel over the rows; the vector kernels read 8 bytes per chunk, which may run up to
    /// 7 bytes past a row: harmless inside the matrix, so only the matrix's last row is copied to a
    /// padded buffer first.
    /// </summary>
    private static void ForEachRowRange(ref QuantizedRows rows)
    {
        int end = rows.End;
        bool lastRow = end == rows.Weight.Rows;
        if (lastRow)
            rows.End = end - 1;
        Dispatch(ref rows);
        if (lastRow)
        {
            int rowBytes = rows.Weight.Cols * rows.Weight.Bits / 8;
            byte* padded = stackalloc byte[rowBytes + 8];
            Buffer.MemoryCopy(rows.Packed + (long)(end - 1) * rowBytes, padded, rowBytes, rowBytes);
            rows.Packed = padded - (long)(end - 1) * rowBytes;
            rows.First = end - 1;
            rows.End = end;
            Dispatch(ref rows);
        }
    }

    private static void Dispatch(ref QuantizedRows rows)
    {
        if (rows.First >= rows.End)
            return;
        int bits = rows.Weight.Bits;
        if (bits <= 4 && UseAvx2)
            Dispatch<Avx2Codes>(ref rows);
        else if (bits == 8)
            Dispatch<PortableWideCodes>(ref rows);
        else
            Dispatch<PortableCodes>(ref rows);
    }

    private static void Dispatch<TCodes>(ref QuantizedRows rows)
        where TCodes : struct, ICodes
    {
        switch (rows.Weight.ScaleType)
        {
            case ScalarType.BF16: MatVec1<TCodes, Bf16Scales>(ref rows); break;
            case ScalarType.F16: MatVec1<TCodes, F16Scales>(ref rows); break;
            default: MatVec1<TCodes, F32Scales>(ref rows); break;
        }
    }

    /// <summary>Arguments of a quantized row-range kernel (a struct so the padded-last-row pass can redirect Packed).</summary>
    private struct QuantizedRows(QuantizedWeight weight, byte* packed, int first, int end, float* x, float* xs, float* xSums, float* y)
    {
        public readonly QuantizedWeight Weight = weight;
        public byte* Packed = packed;
        public int First = first, End = end;
        public readonly float* X = x, Xs = xs, XSums = xSums, Y = y;
    }

    /// <summary>Constants a chunk decoder needs, built once per kernel call.</summary>
    private readonly struct CodeConstants(int bits)
    {
        public readonly int Bits = bits;
        public readonly int HiShift = 4 * bits;
        public readonly Vector256<uint> LaneMasks = CpuKernels.LaneMasks(bits);
        public readonly Vector256<uint> Shifts = Vector256.Create(0u, 1, 2, 3, 4, 5, 6, 7) * (uint)bits;
        public readonly Vector256<uint> Mask = Vector256.Create((1u << bits) - 1);
    }

    /// <summary>Turns the 8 codes of the b-byte chunk at p into floats.</summary>
    private interface ICodes
    {
        /// <summary>True when lane k comes out as code * 2^((k % 4) * b), so x must be the pre-scaled copy.</summary>
        static abstract bool ScaledLanes { get; }

        static abstract Vector256<float> Decode(byte* p, in CodeConstants c);
    }

    /// <summary>
    /// Portable: the chunk's low and high 4b bits broadcast into lanes 0-3 and 4-7 and masked in
    /// place, lane k keeping code * 2^((k%4)*b). Below 8 bits the top lane stays under bit 31, so the
    /// signed conversion is exact.
    /// </summary>
    private readonly struct PortableCodes : ICodes
    {
        public static bool ScaledLanes => true;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Decode(byte* p, in CodeConstants c)
        {
            ulong chunk = Unsafe.ReadUnaligned<ulong>(p);
            var words = Vector256.Create(Vector128.Create((uint)chunk), Vector128.Create((uint)(chunk >> c.HiShift))) & c.LaneMasks;
            return Vector256.ConvertToSingle(words.AsInt32());
        }
    }

    /// <summary>As <see cref="PortableCodes"/> for 8-bit codes, whose lane 3 reaches bit 31.</summary>
    private readonly struct PortableWideCodes : ICodes
    {
        public static bool ScaledLanes => true;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Decode(byte* p, in CodeConstants c)
        {
            ulong chunk = Unsafe.ReadUnaligned<ulong>(p);
            var words = Vector256.Create(Vector128.Create((uint)chunk), Vector128.Create((uint)(chunk >> c.HiShift))) & c.LaneMasks;
            return Vector256.ConvertToSingle(words);
        }
    }

    /// <summary>AVX2, codes of at most 4 bits: 8 codes fit one uint; one broadcast and a per-lane shift give the codes themselves.</summary>
    private readonly struct Avx2Codes : ICodes
    {
        public static bool ScaledLanes => false;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Decode(byte* p, in CodeConstants c)
        {
            var words = Avx2.ShiftRightLogicalVariable(Vector256.Create(Unsafe.ReadUnaligned<uint>(p)), c.Shifts) & c.Mask;
            return Vector256.ConvertToSingle(words.AsInt32());
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MatVec1<TCodes, TScales>(ref QuantizedRows a)
        where TCodes : struct, ICodes
        where TScales : struct, IScales
    {
        var w = a.Weight;
        var c = new CodeConstants(w.Bits);
        int bits = w.Bits, groups = w.GroupsPerRow, chunksPerGroup = w.GroupSize / 8;
        int rowBytes = w.Cols * bits / 8;
        nint scales = w.Scales, biases = w.Biases;
        float* x = TCodes.ScaledLanes ? a.Xs : a.X;
        float* xSums = a.XSums, y = a.Y;

        for (int row = a.First; row < a.End; row++)
        {
            byte* p = a.Packed + (long)row * rowBytes;
            long firstGroup = (long)row * groups;
            float biasTerm = 0;
            var acc = Vector256<float>.Zero;
            float* xg = x;
            for (int g = 0; g < groups; g++)
            {
                // Four independent chains (groups of 32, 64 or 128 are 4, 8 or 16 chunks): FMA latency, not one chain, bounds a row.
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
                for (int k = 0; k < chunksPerGroup; k += 4, p += 4 * bits, xg += 32)
                {
                    a0 = Vector256.MultiplyAddEstimate(TCodes.Decode(p, in c), Vector256.Load(xg), a0);
                    a1 = Vector256.MultiplyAddEstimate(TCodes.Decode(p + bits, in c), Vector256.Load(xg + 8), a1);
                    a2 = Vector256.MultiplyAddEstimate(TCodes.Decode(p + 2 * bits, in c), Vector256.Load(xg + 16), a2);
                    a3 = Vector256.MultiplyAddEstimate(TCodes.Decode(p + 3 * bits, in c), Vector256.Load(xg + 24), a3);
                }
                acc = Vector256.MultiplyAddEstimate((a0 + a1) + (a2 + a3), Vector256.Create(TScales.Load(scales, firstGroup + g)), acc);
                biasTerm += TScales.Load(biases, firstGroup + g) * xSums[g];
            }
            y[row] = Vector256.Sum(acc) + biasTerm;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MatVecQuantizedScalar(QuantizedWeight w, int first, int end, float* x, float* xSums, float* y)
    {
        int bits = w.Bits, groupSize = w.GroupSize, groups = w.GroupsPerRow;
        int rowBytes = w.Cols * bits / 8;
        for (int row = first; row < end; row++)
        {
            byte* packed = (byte*)w.Packed + (long)row * rowBytes;
            long firstGroup = (long)row * groups;
            float total = 0;
            for (int g = 0; g < groups; g++)
            {
                float codeDot = 0;
                for (int i = g * groupSize; i < (g + 1) * groupSize; i++)
                    codeDot += ScalarCode(packed, i, bits) * x[i];
                total += codeDot * LoadScale(w.Scales, firstGroup + g, w.ScaleType)
                       + LoadScale(w.Biases, firstGroup + g, w.ScaleType) * xSums[g];
            }
            y[row] = total;
        }
    }

    private interface IScales
    {
        static abstract float Load(nint data, long index);
    }

    private readonly struct Bf16Scales : IScales
    {
        public static float Load(nint data, long index) => BitConverter.Int32BitsToSingle(((ushort*)data)[index] << 16);
    }

    private readonly struct F16Scales : IScales
    {
        public static float Load(nint data, long index) => Scalars.F16ToFloat(((ushort*)data)[index]);
    }

    private readonly struct F32Scales : IScales
    {
        public static float Load(nint data, long index) => ((float*)data)[index];
    }

    /// <summary>Row r of a quantized matrix as f32: w = q * scale + bias.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DequantizeRow(QuantizedWeight w, int row, float* destination, float multiplier = 1f)
    {
        int bits = w.Bits, groupSize = w.GroupSize, groups = w.GroupsPerRow;
        int rowBytes = w.Cols * bits / 8;
        byte* packed = (byte*)w.Packed + (long)row * rowBytes;
        long firstGroup = (long)row * groups;

        if (!UseVectors)
        {
            for (int g = 0; g < groups; g++)
            {
                float scale = Scalars.Load(w.Scales, firstGroup + g, w.ScaleType);
                float bias = Scalars.Load(w.Biases, firstGroup + g, w.ScaleType);
                for (int i = g * groupSize; i < (g + 1) * groupSize; i++)
                    destination[i] = (ScalarCode(packed, i, bits) * scale + bias) * multiplier;
            }
            return;
        }

        var masks = LaneMasks(bits);
        var laneFactors = Vector256.Create(1f, LaneFactor(1, bits), LaneFactor(2, bits), LaneFactor(3, bits),
                                           1f, LaneFactor(1, bits), LaneFactor(2, bits), LaneFactor(3, bits));
        var multiplierVector = Vector256.Create(multiplier);
        int chunksPerGroup = groupSize / 8;
        int offset = 0;
        float* y = destination;
        for (int g = 0; g < groups; g++)
        {
            var scale = laneFactors * LoadScale(w.Scales, firstGroup + g, w.ScaleType);
            var bias = Vector256.Create(LoadScale(w.Biases, firstGroup + g, w.ScaleType));
            for (int c = 0; c < chunksPerGroup; c++, offset += bits, y += 8)
            {
                ulong chunk = ReadChunk(packed, offset, rowBytes, bits);
                // code*2^(kb) * scale*2^(-kb) is exactly code*scale, so this is f32(q*scale) + bias.
                var value = ShiftedCodes(chunk, bits, masks) * scale + bias;
                (value * multiplierVector).Store(y);
            }
        }
    }

    /// <summary>Per-token preparation of x for <see cref="DotQuantized"/>: lane pre-scaled copy and group sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PrepareQuantizedInput(float* x, int cols, int bits, int groupSize, float* xs, float* xSums)
    {
        for (int g = 0; g < cols / groupSize; g++)
        {
            float sum = 0;
            for (int i = g * groupSize; i < (g + 1) * groupSize; i++)
            {
                sum += x[i];
                xs[i] = x[i] * LaneFactor(i, bits);
            }
            xSums[g] = sum;
        }
    }

    // ---------------- elementwise ----------------

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RmsNormRow(float* x, float* y, float* weight, int dim, float eps)
    {
        int i = 0;
        float squares = 0;
        if (UseVectors)
        {
            var acc = Vector256<float>.Zero;
            for (; i + 8 <= dim; i += 8)
            {
                var v = Vector256.Load(x + i);
                acc = Vector256.MultiplyAddEstimate(v, v, acc);
            }
            squares = Vector256.Sum(acc);
        }
        for (; i < dim; i++)
            squares += x[i] * x[i];
        float inv = 1f / MathF.Sqrt(squares / dim + eps);

        i = 0;
        if (UseVectors)
        {
            var invVector = Vector256.Create(inv);
            for (; i + 8 <= dim; i += 8)
            {
                var v = Vector256.Load(x + i) * invVector;
                (weight is null ? v : v * Vector256.Load(weight + i)).Store(y + i);
            }
        }
        for (; i < dim; i++)
            y[i] = weight is null ? x[i] * inv : x[i] * inv * weight[i];
    }

    /// <summary>Rotates one head: pairs (j, j + half) by (cos[j], sin[j]).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RopeHead(float* x, float* cos, float* sin, int half)
    {
        int j = 0;
        if (UseVectors)
        {
            for (; j + 8 <= half; j += 8)
            {
                var a = Vector256.Load(x + j);
                var b = Vector256.Load(x + j + half);
                var c = Vector256.Load(cos + j);
                var s = Vector256.Load(sin + j);
                (a * c - b * s).Store(x + j);
                (b * c + a * s).Store(x + j + half);
            }
        }
        for (; j < half; j++)
        {
            float a = x[j], b = x[j + half];
            x[j] = a * cos[j] - b * sin[j];
            x[j + half] = b * cos[j] + a * sin[j];
        }
    }

    private const float GeluK = 0.7978845608028654f; // sqrt(2/pi)

    /// <summary>y = gelu_tanh(g) * u, using 0.5(1 + tanh(z)) = 1 / (1 + exp(-2z)).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void GeGlu(float* gate, float* up, float* y, long n)
    {
        long i = 0;
        if (UseVectors)
        {
            var k = Vector256.Create(-2f * GeluK);
            var cubic = Vector256.Create(0.044715f);
            var one = Vector256<float>.One;
            for (; i + 8 <= n; i += 8)
            {
                var g = Vector256.Load(gate + i);
                var z = (g + cubic * g * g * g) * k;
                (g * Vector256.Load(up + i) / (one + Vector256.Exp(z))).Store(y + i);
            }
        }
        for (; i < n; i++)
        {
            float g = gate[i];
            y[i] = g * up[i] / (1f + MathF.Exp(-2f * GeluK * (g + 0.044715f * g * g * g)));
        }
    }

    /// <summary>x = cap * tanh(x / cap), using tanh(z) = 1 - 2 / (exp(2z) + 1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Softcap(float* x, long n, float cap)
    {
        long i = 0;
        if (UseVectors)
        {
            var twoOverCap = Vector256.Create(2f / cap);
            var capVector = Vector256.Create(cap);
            var one = Vector256<float>.One;
            var two = Vector256.Create(2f);
            for (; i + 8 <= n; i += 8)
            {
                var e = Vector256.Exp(Vector256.Load(x + i) * twoOverCap);
                (capVector * (one - two / (e + one))).Store(x + i);
            }
        }
        for (; i < n; i++)
            x[i] = cap * MathF.Tanh(x[i] / cap);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Add(float* a, float* b, float* y, long n)
    {
        long i = 0;
        if (UseVectors)
        {
            for (; i + 8 <= n; i += 8)
                (Vector256.Load(a + i) + Vector256.Load(b + i)).Store(y + i);
        }
        for (; i < n; i++)
            y[i] = a[i] + b[i];
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Scale(float* x, long n, float factor)
    {
        long i = 0;
        if (UseVectors)
        {
            var f = Vector256.Create(factor);
            for (; i + 8 <= n; i += 8)
                (Vector256.Load(x + i) * f).Store(x + i);
        }
        for (; i < n; i++)
            x[i] *= factor;
    }

    /// <summary>y += a * x over n values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AddScaled(float* y, float* x, float a, int n)
    {
        int i = 0;
        if (UseVectors)
        {
            var av = Vector256.Create(a);
            for (; i + 8 <= n; i += 8)
                Vector256.MultiplyAddEstimate(Vector256.Load(x + i), av, Vector256.Load(y + i)).Store(y + i);
        }
        for (; i < n; i++)
            y[i] += a * x[i];
    }

    /// <summary>x[i] = exp(x[i] - max) over n values; returns their sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float ExpShifted(float* x, int n, float max)
    {
        int i = 0;
        float sum = 0;
        if (UseVectors)
        {
            var m = Vector256.Create(max);
            var acc = Vector256<float>.Zero;
            for (; i + 8 <= n; i += 8)
            {
                var e = Vector256.Exp(Vector256.Load(x + i) - m);
                e.Store(x + i);
                acc += e;
            }
            sum = Vector256.Sum(acc);
        }
        for (; i < n; i++)
        {
            x[i] = MathF.Exp(x[i] - max);
            sum += x[i];
        }
        return sum;
    }
}
