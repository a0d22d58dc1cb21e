using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Pipeline.Kernels.Cpu;

/// <summary>
/// Single-threaded inner loops of the CPU backend, on raw pointers. The path is chosen once at
/// startup (<see cref="Isa"/>, from <see cref="IsaVariable"/>; tests switch it): scalar, portable
/// Vector128, Vector256 or Vector512, or the widest accelerated portable width plus the
/// AVX2-specific code decoding and integer kernels. The f32 kernels are written once, generic over
/// an <see cref="IVectorWidth{TVector}"/>, and instantiated per width (the scalar path is the
/// one-float instantiation); each public entry point switches on the width.
/// <para>
/// Quantized rows are read directly in MLX's packed layout (no repack), 8 elements at a time:
/// 8 elements of b bits are exactly b bytes of the row's LSB-first bitstream. With AVX2 and b &lt;= 4
/// those bytes are one uint, broadcast and shifted per lane by k*b. The portable decoding reads
/// them as a ulong u: elements 0-3 are the low 4b bits, elements 4-7 the next 4b; each half is
/// broadcast into 4 lanes and masked with (2^b - 1) &lt;&lt; (k*b) without shifting, so lane k holds
/// code * 2^(k*b), and that power of two is folded into the other operand (x pre-scaled by
/// 2^-(k*b), or scale * 2^-(k*b)), which is exact. Every width decodes whole 8-element chunks (one
/// Vector128 per half chunk, one Vector256 per chunk, one Vector512 per two chunks), so the lane
/// pattern, and with it the pre-scaled x, is the same for all widths. A group's contribution is
/// scale * sum(q*x) + bias * sum(x), with sum(x) per group computed once per token.
/// </para>
/// <para>
/// The small kernels' entry points are compiled fully optimized at once with each width's
/// instantiation inlined: behind a tier-0 dispatcher, or as a separate call, a 256-element Dot or
/// AddScaled took up to 2x as long as the hand-written Vector256 code it replaced.
/// </para>
/// </summary>
internal static unsafe class CpuKernels
{
    /// <summary>
    /// Environment variable choosing the path at startup: "scalar", "vector128", "vector256",
    /// "vector512" (portable code of that width only) or "avx2"; unset: the fastest the CPU has
    /// (see <see cref="DefaultIsa"/>).
    /// </summary>
    public const string IsaVariable = "PIPELINE_CPU_ISA";

    // A bad variable leaves the default here (a type initializer must not throw); CpuBackend's constructor reports it.
    private static CpuIsa s_isa = TryParseIsa(Environment.GetEnvironmentVariable(IsaVariable), out var isa, out _) ? isa : DefaultIsa;
    private static int s_vectorBits = VectorBitsOf(s_isa);

    /// <summary>
    /// The path the kernels take, process-wide. Setting it is for tests: every portable width runs
    /// anywhere (in software where not accelerated, e.g. Vector512 here); AVX2 needs <see cref="Avx2.IsSupported"/>.
    /// </summary>
    public static CpuIsa Isa
    {
        get => s_isa;
        set
        {
            if (value == CpuIsa.Avx2 && !Avx2.IsSupported)
                throw new PlatformNotSupportedException("this CPU has no AVX2");
            s_isa = value;
            s_vectorBits = VectorBitsOf(value);
        }
    }

    /// <summary>Whether any SIMD path is on (not <see cref="CpuIsa.Scalar"/>).</summary>
    public static bool UseVectors => s_isa != CpuIsa.Scalar;

    /// <summary>AVX2's per-lane shifts and integer dot products (else only the portable decoding).</summary>
    public static bool UseAvx2 => s_isa == CpuIsa.Avx2;

    /// <summary>Width in bits of the portable vectors the f32 kernels use (0: scalar).</summary>
    public static int VectorBits => s_vectorBits;

    /// <summary>AVX2 where the CPU has it, else the widest accelerated portable width, else scalar.</summary>
    public static CpuIsa DefaultIsa =>
        Avx2.IsSupported ? CpuIsa.Avx2
        : Vector512.IsHardwareAccelerated ? CpuIsa.Vector512
        : Vector256.IsHardwareAccelerated ? CpuIsa.Vector256
        : Vector128.IsHardwareAccelerated ? CpuIsa.Vector128
        : CpuIsa.Scalar;

    /// <summary>The paths this CPU accelerates (scalar always), in <see cref="IsaVariable"/>'s spelling.</summary>
    public static IEnumerable<string> AvailableIsas()
    {
        yield return "scalar";
        if (Vector128.IsHardwareAccelerated)
            yield return "vector128";
        if (Vector256.IsHardwareAccelerated)
            yield return "vector256";
        if (Vector512.IsHardwareAccelerated)
            yield return "vector512";
        if (Avx2.IsSupported)
            yield return "avx2";
    }

    /// <summary>
    /// A value of <see cref="IsaVariable"/> (null or empty: <see cref="DefaultIsa"/>). Throws, naming
    /// the variable and the value, when it is unknown or names a path this CPU does not accelerate.
    /// </summary>
    public static CpuIsa ParseIsa(string? value) =>
        TryParseIsa(value, out var isa, out string? error) ? isa : throw new InvalidOperationException(error);

    private static bool TryParseIsa(string? value, out CpuIsa isa, out string? error)
    {
        isa = DefaultIsa;
        error = null;
        if (string.IsNullOrEmpty(value))
            return true;
        CpuIsa? named = value switch
        {
            "scalar" => CpuIsa.Scalar,
            "vector128" => CpuIsa.Vector128,
            "vector256" => CpuIsa.Vector256,
            "vector512" => CpuIsa.Vector512,
            "avx2" => CpuIsa.Avx2,
            _ => null,
        };
        string expected = $"expected one of {string.Join(", ", AvailableIsas())}, or unset for the fastest";
        if (named is null)
            error = $"{IsaVariable}={value}: unknown value; {expected}";
        else if (!AvailableIsas().Contains(value))
            error = $"{IsaVariable}={value}: not accelerated on this CPU; {expected}";
        else
            isa = named.Value;
        return error is null;
    }

    private static int VectorBitsOf(CpuIsa isa) => isa switch
    {
        CpuIsa.Scalar => 0,
        CpuIsa.Vector128 => 128,
        CpuIsa.Vector256 => 256,
        CpuIsa.Vector512 => 512,
        _ => Vector512.IsHardwareAccelerated ? 512 : 256,
    };

    /// <summary>The path in words, for backend names and bench output.</summary>
    public static string IsaName => s_isa switch
    {
        CpuIsa.Scalar => "scalar",
        CpuIsa.Avx2 => $"AVX2 + Vector{s_vectorBits}",
        _ => $"Vector{s_vectorBits}",
    };

    // ---------------- dense dot products ----------------

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Dot(float* a, float* b, int n) => s_vectorBits switch
    {
        256 => Dot<Width256, Vector256<float>>(a, b, n),
        512 => Dot<Width512, Vector512<float>>(a, b, n),
        128 => Dot<Width128, Vector128<float>>(a, b, n),
        _ => Dot<Width1, float>(a, b, n),
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Dot<TWidth, TVector>(float* a, float* b, int n)
        where TWidth : struct, IVectorWidth<TVector>
        where TVector : struct
    {
        int width = TWidth.Count, i = 0;
        TVector acc0 = TWidth.Zero, acc1 = TWidth.Zero;
        for (; i + 2 * width <= n; i += 2 * width)
        {
            acc0 = TWidth.MultiplyAdd(TWidth.Load(a + i), TWidth.Load(b + i), acc0);
            acc1 = TWidth.MultiplyAdd(TWidth.Load(a + i + width), TWidth.Load(b + i + width), acc1);
        }
        if (i + width <= n)
        {
            acc0 = TWidth.MultiplyAdd(TWidth.Load(a + i), TWidth.Load(b + i), acc0);
            i += width;
        }
        float sum = TWidth.Sum(TWidth.Add(acc0, acc1));
        for (; i < n; i++)
            sum += a[i] * b[i];
        return sum;
    }

    /// <summary>
    /// dot(bf16 row, x) without materializing the row. Decode streams each row once: with AVX2, 8 values
    /// per zero-extending load and the row prefetched 2 KiB ahead (one core: about 7-8 -> 9-10 GB/s).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float DotBf16(ushort* w, float* x, int n)
    {
        int i = 0;
        float sum = 0;
        if (UseAvx2 && UseVectors && n >= 32)
        {
            var acc0 = Vector256<float>.Zero;
            var acc1 = Vector256<float>.Zero;
            var acc2 = Vector256<float>.Zero;
            var acc3 = Vector256<float>.Zero;
            for (; i + 32 <= n; i += 32)
            {
                Sse.Prefetch0(w + i + 1024);
                acc0 = Vector256.MultiplyAddEstimate(Int8Kernels.Bf16x8(w + i), Vector256.Load(x + i), acc0);
                acc1 = Vector256.MultiplyAddEstimate(Int8Kernels.Bf16x8(w + i + 8), Vector256.Load(x + i + 8), acc1);
                acc2 = Vector256.MultiplyAddEstimate(Int8Kernels.Bf16x8(w + i + 16), Vector256.Load(x + i + 16), acc2);
                acc3 = Vector256.MultiplyAddEstimate(Int8Kernels.Bf16x8(w + i + 24), Vector256.Load(x + i + 24), acc3);
            }
            for (; i + 8 <= n; i += 8)
                acc0 = Vector256.MultiplyAddEstimate(Int8Kernels.Bf16x8(w + i), Vector256.Load(x + i), acc0);
            sum = Vector256.Sum((acc0 + acc1) + (acc2 + acc3));
        }
        else if (UseVectors && n >= 16)
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
                    switch (s_vectorBits)
                    {
                        case 256: Bf16ToFloat<Width256, Vector256<float>>(source, destination, n); break;
                        case 512: Bf16ToFloat<Width512, Vector512<float>>(source, destination, n); break;
                        case 128: Bf16ToFloat<Width128, Vector128<float>>(source, destination, n); break;
                        default: Bf16ToFloat<Width1, float>(source, destination, n); break;
                    }
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

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Bf16ToFloat<TWidth, TVector>(ushort* source, float* destination, int n)
        where TWidth : struct, IVectorWidth<TVector>
        where TVector : struct
    {
        int width = TWidth.Count, i = 0;
        for (; i + width <= n; i += width)
            TWidth.Store(TWidth.LoadBf16(source + i), destination + i);
        for (; i < n; i++)
            destination[i] = Scalars.Bf16ToFloat(source[i]);
    }

    // ---------------- quantized rows ----------------

    /// <summary>2^-((i % 4) * b): the factor that undoes lane i's missing shift.</summary>
    public static float LaneFactor(int index, int bits) => MathF.ScaleB(1f, -(index & 3) * bits);

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
        bool eightBits = rows.Weight.Bits == 8;
        switch (s_vectorBits)
        {
            case 128:
                if (eightBits)
                    Dispatch<Width128, Vector128<float>, PortableCodes128<UnsignedLanes>>(ref rows);
                else
                    Dispatch<Width128, Vector128<float>, PortableCodes128<SignedLanes>>(ref rows);
                break;
            case 512:
                if (eightBits)
                    Dispatch<Width512, Vector512<float>, PortableCodes512<UnsignedLanes>>(ref rows);
                else
                    Dispatch<Width512, Vector512<float>, PortableCodes512<SignedLanes>>(ref rows);
                break;
            default:
                if (rows.Weight.Bits <= 4 && UseAvx2)
                    Dispatch<Width256, Vector256<float>, Avx2Codes>(ref rows);
                else if (eightBits)
                    Dispatch<Width256, Vector256<float>, PortableCodes256<UnsignedLanes>>(ref rows);
                else
                    Dispatch<Width256, Vector256<float>, PortableCodes256<SignedLanes>>(ref rows);
                break;
        }
    }

    private static void Dispatch<TWidth, TVector, TCodes>(ref QuantizedRows rows)
        where TWidth : struct, IVectorWidth<TVector>
        where TVector : struct
        where TCodes : struct, ICodes<TCodes, TVector>
    {
        switch (rows.Weight.ScaleType)
        {
            case ScalarType.BF16: MatVec1<TWidth, TVector, TCodes, Bf16Scales>(ref rows); break;
            case ScalarType.F16: MatVec1<TWidth, TVector, TCodes, F16Scales>(ref rows); break;
            default: MatVec1<TWidth, TVector, TCodes, F32Scales>(ref rows); break;
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

    /// <summary>
    /// Turns whole 8-code chunks into two vectors of floats: 2 * Count codes, that is
    /// 2 * Count * b / 8 bytes from p. Built once per kernel call (it holds the width's lane masks).
    /// </summary>
    internal interface ICodes<TSelf, TVector>
        where TSelf : struct, ICodes<TSelf, TVector>
        where TVector : struct
    {
        /// <summary>True when lane k comes out as code * 2^((k % 4) * b), so x must be the pre-scaled copy.</summary>
        static abstract bool ScaledLanes { get; }

        static abstract TSelf Create(int bits);

        void Decode(byte* p, out TVector first, out TVector second);
    }

    /// <summary>How masked lanes become floats: below 8 bits the top lane stays under bit 31 and the signed conversion is exact.</summary>
    internal interface ILaneSign
    {
        static abstract bool Unsigned { get; }
    }

    internal readonly struct SignedLanes : ILaneSign
    {
        public static bool Unsigned => false;
    }

    /// <summary>8-bit codes: lane 3 reaches bit 31, where a signed conversion would see a sign.</summary>
    internal readonly struct UnsignedLanes : ILaneSign
    {
        public static bool Unsigned => true;
    }

    /// <summary>The 4 lane masks (2^b - 1) &lt;&lt; (k * b) of a half chunk.</summary>
    private static Vector128<uint> HalfChunkMasks(int bits)
    {
        uint mask = (1u << bits) - 1;
        return Vector128.Create(mask, mask << bits, mask << (2 * bits), mask << (3 * bits));
    }

    /// <summary>Portable Vector128: one chunk's low and high 4b bits broadcast into 4 lanes each and masked in place.</summary>
    internal readonly struct PortableCodes128<TSign>(int bits) : ICodes<PortableCodes128<TSign>, Vector128<float>>
        where TSign : struct, ILaneSign
    {
        private readonly Vector128<uint> _masks = HalfChunkMasks(bits);
        private readonly int _hiShift = 4 * bits;

        public static bool ScaledLanes => true;

        public static PortableCodes128<TSign> Create(int bits) => new(bits);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Decode(byte* p, out Vector128<float> first, out Vector128<float> second)
        {
            ulong chunk = Unsafe.ReadUnaligned<ulong>(p);
            first = Convert(Vector128.Create((uint)chunk) & _masks);
            second = Convert(Vector128.Create((uint)(chunk >> _hiShift)) & _masks);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector128<float> Convert(Vector128<uint> words) =>
            TSign.Unsigned ? Vector128.ConvertToSingle(words) : Vector128.ConvertToSingle(words.AsInt32());
    }

    /// <summary>Portable Vector256: per chunk, the low and high 4b bits broadcast into lanes 0-3 and 4-7 and masked in place.</summary>
    internal readonly struct PortableCodes256<TSign>(int bits) : ICodes<PortableCodes256<TSign>, Vector256<float>>
        where TSign : struct, ILaneSign
    {
        private readonly Vector256<uint> _masks = Vector256.Create(HalfChunkMasks(bits), HalfChunkMasks(bits));
        private readonly nint _bits = bits;
        private readonly int _hiShift = 4 * bits;

        public static bool ScaledLanes => true;

        public static PortableCodes256<TSign> Create(int bits) => new(bits);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Decode(byte* p, out Vector256<float> first, out Vector256<float> second)
        {
            first = Chunk(p);
            second = Chunk(p + _bits);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private Vector256<float> Chunk(byte* p)
        {
            ulong chunk = Unsafe.ReadUnaligned<ulong>(p);
            var words = Vector256.Create(Vector128.Create((uint)chunk), Vector128.Create((uint)(chunk >> _hiShift))) & _masks;
            return TSign.Unsigned ? Vector256.ConvertToSingle(words) : Vector256.ConvertToSingle(words.AsInt32());
        }
    }

    /// <summary>Portable Vector512: two chunks per vector, each half chunk broadcast into 4 lanes and masked in place.</summary>
    internal readonly struct PortableCodes512<TSign>(int bits) : ICodes<PortableCodes512<TSign>, Vector512<float>>
        where TSign : struct, ILaneSign
    {
        private readonly Vector512<uint> _masks = Vector512.Create(Vector256.Create(HalfChunkMasks(bits), HalfChunkMasks(bits)), Vector256.Create(HalfChunkMasks(bits), HalfChunkMasks(bits)));
        private readonly nint _bits = bits;
        private readonly int _hiShift = 4 * bits;

        public static bool ScaledLanes => true;

        public static PortableCodes512<TSign> Create(int bits) => new(bits);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Decode(byte* p, out Vector512<float> first, out Vector512<float> second)
        {
            first = Chunks(p);
            second = Chunks(p + 2 * _bits);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private Vector512<float> Chunks(byte* p)
        {
            ulong lo = Unsafe.ReadUnaligned<ulong>(p), hi = Unsafe.ReadUnaligned<ulong>(p + _bits);
            var words = Vector512.Create(
                Vector256.Create(Vector128.Create((uint)lo), Vector128.Create((uint)(lo >> _hiShift))),
                Vector256.Create(Vector128.Create((uint)hi), Vector128.Create((uint)(hi >> _hiShift)))) & _masks;
            return TSign.Unsigned ? Vector512.ConvertToSingle(words) : Vector512.ConvertToSingle(words.AsInt32());
        }
    }

    /// <summary>AVX2, codes of at most 4 bits: 8 codes fit one uint; one broadcast and a per-lane shift give the codes themselves.</summary>
    internal readonly struct Avx2Codes(int bits) : ICodes<Avx2Codes, Vector256<float>>
    {
        private readonly Vector256<uint> _shifts = Vector256.Create(0u, 1, 2, 3, 4, 5, 6, 7) * (uint)bits;
        private readonly Vector256<uint> _mask = Vector256.Create((1u << bits) - 1);
        private readonly nint _bits = bits;

        public static bool ScaledLanes => false;

        public static Avx2Codes Create(int bits) => new(bits);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Decode(byte* p, out Vector256<float> first, out Vector256<float> second)
        {
            first = Chunk(p);
            second = Chunk(p + _bits);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private Vector256<float> Chunk(byte* p) =>
            Vector256.ConvertToSingle((Avx2.ShiftRightLogicalVariable(Vector256.Create(Unsafe.ReadUnaligned<uint>(p)), _shifts) & _mask).AsInt32());
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MatVec1<TWidth, TVector, TCodes, TScales>(ref QuantizedRows a)
        where TWidth : struct, IVectorWidth<TVector>
        where TVector : struct
        where TCodes : struct, ICodes<TCodes, TVector>
        where TScales : struct, IScales
    {
        var w = a.Weight;
        var codes = TCodes.Create(w.Bits);
        int bits = w.Bits, groups = w.GroupsPerRow, groupSize = w.GroupSize;
        // One Decode covers 2 vectors; groups (32, 64 or 128 codes) hold a whole number of them:
        // pairs of Decodes, then one more only for Vector512 with groups of 32.
        int width = TWidth.Count, step = 2 * width;
        nint stepBytes = step * bits / 8;
        int pairs = groupSize / (2 * step);
        bool oddStep = groupSize % (2 * step) != 0;
        int rowBytes = w.Cols * bits / 8;
        nint scales = w.Scales, biases = w.Biases;
        float* x = TCodes.ScaledLanes ? a.Xs : a.X;
        float* xSums = a.XSums, y = a.Y;

        for (int row = a.First; row < a.End; row++)
        {
            byte* p = a.Packed + (long)row * rowBytes;
            long firstGroup = (long)row * groups;
            float biasTerm = 0;
            var acc = TWidth.Zero;
            float* xg = x;
            for (int g = 0; g < groups; g++)
            {
                // Four independent chains: FMA latency, not one chain, bounds a row.
                TVector a0 = TWidth.Zero, a1 = TWidth.Zero, a2 = TWidth.Zero, a3 = TWidth.Zero;
                for (int k = 0; k < pairs; k++, p += 2 * stepBytes, xg += 2 * step)
                {
                    codes.Decode(p, out var c0, out var c1);
                    codes.Decode(p + stepBytes, out var c2, out var c3);
                    a0 = TWidth.MultiplyAdd(c0, TWidth.Load(xg), a0);
                    a1 = TWidth.MultiplyAdd(c1, TWidth.Load(xg + width), a1);
                    a2 = TWidth.MultiplyAdd(c2, TWidth.Load(xg + 2 * width), a2);
                    a3 = TWidth.MultiplyAdd(c3, TWidth.Load(xg + 3 * width), a3);
                }
                if (oddStep)
                {
                    codes.Decode(p, out var c0, out var c1);
                    a0 = TWidth.MultiplyAdd(c0, TWidth.Load(xg), a0);
                    a1 = TWidth.MultiplyAdd(c1, TWidth.Load(xg + width), a1);
                    p += stepBytes;
                    xg += step;
                }
                var sum = TWidth.Add(TWidth.Add(a0, a1), TWidth.Add(a2, a3));
                acc = TWidth.MultiplyAdd(sum, TWidth.Create(TScales.Load(scales, firstGroup + g)), acc);
                biasTerm += TScales.Load(biases, firstGroup + g) * xSums[g];
            }
            y[row] = TWidth.Sum(acc) + biasTerm;
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
    public static void DequantizeRow(QuantizedWeight w, int row, float* destination, float multiplier = 1f)
    {
        if (!UseVectors)
        {
            DequantizeRowScalar(w, row, destination, multiplier);
            return;
        }
        // The decoders read 8 bytes per chunk, up to 7 past the row: the matrix's last row goes through a padded copy.
        int rowBytes = w.Cols * w.Bits / 8;
        byte* packed = (byte*)w.Packed + (long)row * rowBytes;
        if (row == w.Rows - 1)
        {
            byte* padded = stackalloc byte[rowBytes + 8];
            Buffer.MemoryCopy(packed, padded, rowBytes, rowBytes);
            packed = padded;
        }
        bool eightBits = w.Bits == 8;
        switch (s_vectorBits)
        {
            case 128:
                if (eightBits)
                    DequantizeRow<Width128, Vector128<float>, PortableCodes128<UnsignedLanes>>(w, row, packed, destination, multiplier);
                else
                    DequantizeRow<Width128, Vector128<float>, PortableCodes128<SignedLanes>>(w, row, packed, destination, multiplier);
                break;
            case 512:
                if (eightBits)
                    DequantizeRow<Width512, Vector512<float>, PortableCodes512<UnsignedLanes>>(w, row, packed, destination, multiplier);
                else
                    DequantizeRow<Width512, Vector512<float>, PortableCodes512<SignedLanes>>(w, row, packed, destination, multiplier);
                break;
            default:
                if (eightBits)
                    DequantizeRow<Width256, Vector256<float>, PortableCodes256<UnsignedLanes>>(w, row, packed, destination, multiplier);
                else
                    DequantizeRow<Width256, Vector256<float>, PortableCodes256<SignedLanes>>(w, row, packed, destination, multiplier);
                break;
        }
    }

    private static void DequantizeRowScalar(QuantizedWeight w, int row, float* destination, float multiplier)
    {
        int bits = w.Bits, groupSize = w.GroupSize, groups = w.GroupsPerRow;
        byte* packed = (byte*)w.Packed + (long)row * (w.Cols * bits / 8);
        long firstGroup = (long)row * groups;
        for (int g = 0; g < groups; g++)
        {
            float scale = Scalars.Load(w.Scales, firstGroup + g, w.ScaleType);
            float bias = Scalars.Load(w.Biases, firstGroup + g, w.ScaleType);
            for (int i = g * groupSize; i < (g + 1) * groupSize; i++)
                destination[i] = (ScalarCode(packed, i, bits) * scale + bias) * multiplier;
        }
    }

    /// <summary>Row <paramref name="row"/> dequantized from its packed bytes (readable 7 bytes past the row).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DequantizeRow<TWidth, TVector, TCodes>(QuantizedWeight w, int row, byte* packed, float* destination, float multiplier)
        where TWidth : struct, IVectorWidth<TVector>
        where TVector : struct
        where TCodes : struct, ICodes<TCodes, TVector>
    {
        var codes = TCodes.Create(w.Bits);
        int bits = w.Bits, groups = w.GroupsPerRow, groupSize = w.GroupSize;
        int width = TWidth.Count, step = 2 * width;
        nint stepBytes = step * bits / 8;
        long firstGroup = (long)row * groups;
        float* factors = stackalloc float[width];
        for (int i = 0; i < width; i++)
            factors[i] = TCodes.ScaledLanes ? LaneFactor(i, bits) : 1f;
        var laneFactors = TWidth.Load(factors);
        var multiplierVector = TWidth.Create(multiplier);
        byte* p = packed;
        float* y = destination;
        for (int g = 0; g < groups; g++)
        {
            var scale = TWidth.Multiply(laneFactors, TWidth.Create(LoadScale(w.Scales, firstGroup + g, w.ScaleType)));
            var bias = TWidth.Create(LoadScale(w.Biases, firstGroup + g, w.ScaleType));
            for (int k = 0; k < groupSize; k += step, p += stepBytes, y += step)
            {
                codes.Decode(p, out var first, out var second);
                // code*2^(kb) * scale*2^(-kb) is exactly code*scale, so this is f32(q*scale) + bias.
                TWidth.Store(TWidth.Multiply(TWidth.Add(TWidth.Multiply(first, scale), bias), multiplierVector), y);
                TWidth.Store(TWidth.Multiply(TWidth.Add(TWidth.Multiply(second, scale), bias), multiplierVector), y + width);
            }
        }
    }

    /// <summary>Per-token preparation of x for the quantized kernels: lane pre-scaled copy and group sums.</summary>
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
        switch (s_vectorBits)
        {
            case 256: RmsNormRow<Width256, Vector256<float>>(x, y, weight, dim, eps); break;
            case 512: RmsNormRow<Width512, Vector512<float>>(x, y, weight, dim, eps); break;
            case 128: RmsNormRow<Width128, Vector128<float>>(x, y, weight, dim, eps); break;
            default: RmsNormRow<Width1, float>(x, y, weight, dim, eps); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void RmsNormRow<TWidth, TVector>(float* x, float* y, float* weight, int dim, float eps)
        where TWidth : struct, IVectorWidth<TVector>
        where TVector : struct
    {
        int width = TWidth.Count, i = 0;
        var acc = TWidth.Zero;
        for (; i + width <= dim; i += width)
        {
            var v = TWidth.Load(x + i);
            acc = TWidth.MultiplyAdd(v, v, acc);
        }
        float squares = TWidth.Sum(acc);
        for (; i < dim; i++)
            squares += x[i] * x[i];
        float inv = 1f / MathF.Sqrt(squares / dim + eps);

        var invVector = TWidth.Create(inv);
        for (i = 0; i + width <= dim; i += width)
        {
            var v = TWidth.Multiply(TWidth.Load(x + i), invVector);
            TWidth.Store(weight is null ? v : TWidth.Multiply(v, TWidth.Load(weight + i)), y + i);
        }
        for (; i < dim; i++)
            y[i] = weight is null ? x[i] * inv : x[i] * inv * weight[i];
    }

    /// <summary>Rotates one head: pairs (j, j + half) by (cos[j], sin[j]).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RopeHead(float* x, float* cos, float* sin, int half)
    {
        switch (s_vectorBits)
        {
            case 256: RopeHead<Width256, Vector256<float>>(x, cos, sin, half); break;
            case 512: RopeHead<Width512, Vector512<float>>(x, cos, sin, half); break;
            case 128: RopeHead<Width128, Vector128<float>>(x, cos, sin, half); break;
            default: RopeHead<Width1, float>(x, cos, sin, half); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void RopeHead<TWidth, TVector>(float* x, float* cos, float* sin, int half)
        where TWidth : struct, IVectorWidth<TVector>
        where TVector : struct
    {
        int width = TWidth.Count, j = 0;
        for (; j + width <= half; j += width)
        {
            var a = TWidth.Load(x + j);
            var b = TWidth.Load(x + j + half);
            var c = TWidth.Load(cos + j);
            var s = TWidth.Load(sin + j);
            TWidth.Store(TWidth.Subtract(TWidth.Multiply(a, c), TWidth.Multiply(b, s)), x + j);
            TWidth.Store(TWidth.Add(TWidth.Multiply(b, c), TWidth.Multiply(a, s)), x + j + half);
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
        switch (s_vectorBits)
        {
            case 256: GeGlu<Width256, Vector256<float>>(gate, up, y, n); break;
            case 512: GeGlu<Width512, Vector512<float>>(gate, up, y, n); break;
            case 128: GeGlu<Width128, Vector128<float>>(gate, up, y, n); break;
            default: GeGlu<Width1, float>(gate, up, y, n); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void GeGlu<TWidth, TVector>(float* gate, float* up, float* y, long n)
        where TWidth : struct, IVectorWidth<TVector>
        where TVector : struct
    {
        int width = TWidth.Count;
        long i = 0;
        var k = TWidth.Create(-2f * GeluK);
        var cubic = TWidth.Create(0.044715f);
        var one = TWidth.Create(1f);
        for (; i + width <= n; i += width)
        {
            var g = TWidth.Load(gate + i);
            var z = TWidth.Multiply(TWidth.Add(g, TWidth.Multiply(TWidth.Multiply(TWidth.Multiply(cubic, g), g), g)), k);
            TWidth.Store(TWidth.Divide(TWidth.Multiply(g, TWidth.Load(up + i)), TWidth.Add(one, TWidth.Exp(z))), y + i);
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
        switch (s_vectorBits)
        {
            case 256: Softcap<Width256, Vector256<float>>(x, n, cap); break;
            case 512: Softcap<Width512, Vector512<float>>(x, n, cap); break;
            case 128: Softcap<Width128, Vector128<float>>(x, n, cap); break;
            default: Softcap<Width1, float>(x, n, cap); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Softcap<TWidth, TVector>(float* x, long n, float cap)
        where TWidth : struct, IVectorWidth<TVector>
        where TVector : struct
    {
        int width = TWidth.Count;
        long i = 0;
        var twoOverCap = TWidth.Create(2f / cap);
        var capVector = TWidth.Create(cap);
        var one = TWidth.Create(1f);
        var two = TWidth.Create(2f);
        for (; i + width <= n; i += width)
        {
            var e = TWidth.Exp(TWidth.Multiply(TWidth.Load(x + i), twoOverCap));
            TWidth.Store(TWidth.Multiply(capVector, TWidth.Subtract(one, TWidth.Divide(two, TWidth.Add(e, one)))), x + i);
        }
        for (; i < n; i++)
            x[i] = cap * MathF.Tanh(x[i] / cap);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Add(float* a, float* b, float* y, long n)
    {
        switch (s_vectorBits)
        {
            case 256: Add<Width256, Vector256<float>>(a, b, y, n); break;
            case 512: Add<Width512, Vector512<float>>(a, b, y, n); break;
            case 128: Add<Width128, Vector128<float>>(a, b, y, n); break;
            default: Add<Width1, float>(a, b, y, n); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Add<TWidth, TVector>(float* a, float* b, float* y, long n)
        where TWidth : struct, IVectorWidth<TVector>
        where TVector : struct
    {
        int width = TWidth.Count;
        long i = 0;
        for (; i + width <= n; i += width)
            TWidth.Store(TWidth.Add(TWidth.Load(a + i), TWidth.Load(b + i)), y + i);
        for (; i < n; i++)
            y[i] = a[i] + b[i];
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Scale(float* x, long n, float factor)
    {
        switch (s_vectorBits)
        {
            case 256: Scale<Width256, Vector256<float>>(x, n, factor); break;
            case 512: Scale<Width512, Vector512<float>>(x, n, factor); break;
            case 128: Scale<Width128, Vector128<float>>(x, n, factor); break;
            default: Scale<Width1, float>(x, n, factor); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Scale<TWidth, TVector>(float* x, long n, float factor)
        where TWidth : struct, IVectorWidth<TVector>
        where TVector : struct
    {
        int width = TWidth.Count;
        long i = 0;
        var f = TWidth.Create(factor);
        for (; i + width <= n; i += width)
            TWidth.Store(TWidth.Multiply(TWidth.Load(x + i), f), x + i);
        for (; i < n; i++)
            x[i] *= factor;
    }

    /// <summary>y += a * x over n values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AddScaled(float* y, float* x, float a, int n)
    {
        switch (s_vectorBits)
        {
            case 256: AddScaled<Width256, Vector256<float>>(y, x, a, n); break;
            case 512: AddScaled<Width512, Vector512<float>>(y, x, a, n); break;
            case 128: AddScaled<Width128, Vector128<float>>(y, x, a, n); break;
            default: AddScaled<Width1, float>(y, x, a, n); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void AddScaled<TWidth, TVector>(float* y, float* x, float a, int n)
        where TWidth : struct, IVectorWidth<TVector>
        where TVector : struct
    {
        int width = TWidth.Count, i = 0;
        var av = TWidth.Create(a);
        for (; i + width <= n; i += width)
            TWidth.Store(TWidth.MultiplyAdd(TWidth.Load(x + i), av, TWidth.Load(y + i)), y + i);
        for (; i < n; i++)
            y[i] += a * x[i];
    }

    /// <summary>x[i] = exp(x[i] - max) over n values; returns their sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float ExpShifted(float* x, int n, float max) => s_vectorBits switch
    {
        256 => ExpShifted<Width256, Vector256<float>>(x, n, max),
        512 => ExpShifted<Width512, Vector512<float>>(x, n, max),
        128 => ExpShifted<Width128, Vector128<float>>(x, n, max),
        _ => ExpShifted<Width1, float>(x, n, max),
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float ExpShifted<TWidth, TVector>(float* x, int n, float max)
        where TWidth : struct, IVectorWidth<TVector>
        where TVector : struct
    {
        int width = TWidth.Count, i = 0;
        var m = TWidth.Create(max);
        var acc = TWidth.Zero;
        for (; i + width <= n; i += width)
        {
            var e = TWidth.Exp(TWidth.Subtract(TWidth.Load(x + i), m));
            TWidth.Store(e, x + i);
            acc = TWidth.Add(acc, e);
        }
        float sum = TWidth.Sum(acc);
        for (; i < n; i++)
        {
            x[i] = MathF.Exp(x[i] - max);
            sum += x[i];
        }
        return sum;
    }
}
