using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Pipeline.Kernels.Cpu;

/// <summary>
/// Single-threaded inner loops of the CPU backend, on raw pointers. Vector256 where the hardware
/// accelerates it, scalar otherwise (<see cref="UseVectors"/> can force the scalar path for tests).
/// <para>
/// Quantized rows are read directly in MLX's packed layout, 8 elements at a time: 8 elements of
/// b bits are exactly b bytes, read as one little-endian ulong u. Elements 0-3 are the low 4b bits
/// of u and elements 4-7 the next 4b bits; both halves are broadcast into 4 lanes each and masked
/// with (2^b - 1) &lt;&lt; (lane*b) without shifting, so lane k holds code * 2^(k*b). That power of
/// two is folded into the other operand (x pre-scaled by 2^-(k*b), or scale * 2^-(k*b)), which is
/// exact. A group's contribution is scale * sum(q*x) + bias * sum(x).
/// </para>
/// </summary>
internal static unsafe class CpuKernels
{
    public static bool UseVectors { get; set; } = Vector256.IsHardwareAccelerated;

    // ---------------- dense dot products ----------------

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

    private static uint ScalarCode(byte* row, int element, int bits)
    {
        int bit = element * bits;
        uint code = 0;
        for (int i = 0; i < bits; i++, bit++)
            code |= (uint)((row[bit >> 3] >> (bit & 7)) & 1) << i;
        return code;
    }

    /// <summary>
    /// Row r of a quantized matrix dotted with one token: x is pre-scaled by <see cref="LaneFactor"/>
    /// (xs, vector path) and xSums holds sum(x) per group.
    /// </summary>
    public static float DotQuantized(QuantizedWeight w, int row, float* x, float* xs, float* xSums, Vector256<uint> masks)
    {
        int bits = w.Bits, groupSize = w.GroupSize, groups = w.GroupsPerRow;
        int rowBytes = w.Cols * bits / 8;
        byte* packed = (byte*)w.Packed + (long)row * rowBytes;
        long firstGroup = (long)row * groups;
        float biasTerm = 0;

        if (!UseVectors)
        {
            float total = 0;
            for (int g = 0; g < groups; g++)
            {
                float codeDot = 0;
                for (int i = g * groupSize; i < (g + 1) * groupSize; i++)
                    codeDot += ScalarCode(packed, i, bits) * x[i];
                total += codeDot * Scalars.Load(w.Scales, firstGroup + g, w.ScaleType);
                biasTerm += Scalars.Load(w.Biases, firstGroup + g, w.ScaleType) * xSums[g];
            }
            return total + biasTerm;
        }

        var acc = Vector256<float>.Zero;
        int chunksPerGroup = groupSize / 8;
        int offset = 0;
        float* xg = xs;
        for (int g = 0; g < groups; g++)
        {
            var groupAcc = Vector256<float>.Zero;
            for (int c = 0; c < chunksPerGroup; c++, offset += bits, xg += 8)
            {
                ulong chunk = ReadChunk(packed, offset, rowBytes, bits);
                groupAcc = Vector256.MultiplyAddEstimate(ShiftedCodes(chunk, bits, masks), Vector256.Load(xg), groupAcc);
            }
            acc = Vector256.MultiplyAddEstimate(groupAcc, Vector256.Create(Scalars.Load(w.Scales, firstGroup + g, w.ScaleType)), acc);
            biasTerm += Scalars.Load(w.Biases, firstGroup + g, w.ScaleType) * xSums[g];
        }
        return Vector256.Sum(acc) + biasTerm;
    }

    /// <summary>Row r of a quantized matrix as f32: w = q * scale + bias.</summary>
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
            var scale = laneFactors * Scalars.Load(w.Scales, firstGroup + g, w.ScaleType);
            var bias = Vector256.Create(Scalars.Load(w.Biases, firstGroup + g, w.ScaleType));
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
