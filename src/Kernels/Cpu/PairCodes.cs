using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Pipeline.Kernels.Cpu;

// Code unpacking shared by the int8 and split-activation kernels: a pair of MLX groups of 64 codes as four
// u8 vectors, one group per 128-bit lane (the activations are stored in the matching order).

/// <summary>How one bit width's packed pair of groups (16 * Bits bytes) becomes four u8 code vectors.</summary>
internal unsafe interface IPairCodes<TSelf>
    where TSelf : struct, IPairCodes<TSelf>
{
    static abstract int Bits { get; }

    /// <summary>The unpacker with its constants loaded (once per kernel call).</summary>
    static abstract TSelf Create();

    void Pair(byte* p, out Vector256<byte> c0, out Vector256<byte> c1, out Vector256<byte> c2, out Vector256<byte> c3);

    /// <summary>A lone last group: reads only its own bytes; the high lanes are zero codes.</summary>
    void Lone(byte* p, out Vector256<byte> c0, out Vector256<byte> c1, out Vector256<byte> c2, out Vector256<byte> c3);
}

/// <summary>2 bits: 32 bytes, byte j of vector k is element 4j+k (shift 2k).</summary>
internal readonly unsafe struct TwoBitCodes : IPairCodes<TwoBitCodes>
{
    public static int Bits => 2;

    public static TwoBitCodes Create() => default;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Pair(byte* p, out Vector256<byte> c0, out Vector256<byte> c1, out Vector256<byte> c2, out Vector256<byte> c3) =>
        Split(Vector256.Load(p), out c0, out c1, out c2, out c3);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Lone(byte* p, out Vector256<byte> c0, out Vector256<byte> c1, out Vector256<byte> c2, out Vector256<byte> c3) =>
        Split(Vector256.Create(Vector128.Load(p), Vector128<byte>.Zero), out c0, out c1, out c2, out c3);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Split(Vector256<byte> packed, out Vector256<byte> c0, out Vector256<byte> c1, out Vector256<byte> c2, out Vector256<byte> c3)
    {
        var mask = Vector256.Create((byte)3);
        var words = packed.AsUInt16();
        c0 = packed & mask;
        c1 = Avx2.ShiftRightLogical(words, 2).AsByte() & mask;
        c2 = Avx2.ShiftRightLogical(words, 4).AsByte() & mask;
        c3 = Avx2.ShiftRightLogical(words, 6).AsByte() & mask;
    }
}

/// <summary>4 bits: low and high nibbles of bytes 0-15, then of bytes 16-31, of each group.</summary>
internal readonly unsafe struct FourBitCodes : IPairCodes<FourBitCodes>
{
    public static int Bits => 4;

    public static FourBitCodes Create() => default;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Pair(byte* p, out Vector256<byte> c0, out Vector256<byte> c1, out Vector256<byte> c2, out Vector256<byte> c3) =>
        Split(Vector256.Create(Vector128.Load(p), Vector128.Load(p + 32)), Vector256.Create(Vector128.Load(p + 16), Vector128.Load(p + 48)), out c0, out c1, out c2, out c3);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Lone(byte* p, out Vector256<byte> c0, out Vector256<byte> c1, out Vector256<byte> c2, out Vector256<byte> c3) =>
        Split(Vector256.Create(Vector128.Load(p), Vector128<byte>.Zero), Vector256.Create(Vector128.Load(p + 16), Vector128<byte>.Zero), out c0, out c1, out c2, out c3);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Split(Vector256<byte> front, Vector256<byte> back, out Vector256<byte> c0, out Vector256<byte> c1, out Vector256<byte> c2, out Vector256<byte> c3)
    {
        var mask = Vector256.Create((byte)0x0F);
        c0 = front & mask;
        c1 = Avx2.ShiftRightLogical(front.AsUInt16(), 4).AsByte() & mask;
        c2 = back & mask;
        c3 = Avx2.ShiftRightLogical(back.AsUInt16(), 4).AsByte() & mask;
    }
}

/// <summary>3 bits: 48 bytes, unpacked by residue (see <see cref="SplitActivationKernels.ThreeBitLayout"/>).</summary>
internal readonly unsafe struct ThreeBitCodes : IPairCodes<ThreeBitCodes>
{
    private readonly Vector256<byte> _shuffle0, _shuffle1, _shuffle2From1, _shuffle2From2, _shuffle3From1, _shuffle3From2;
    private readonly Vector256<uint> _shifts01, _shifts2, _shifts3;

    public ThreeBitCodes()
    {
        _shuffle0 = SplitActivationKernels.ThreeBitLayout.Shuffle0;
        _shuffle1 = SplitActivationKernels.ThreeBitLayout.Shuffle1;
        _shuffle2From1 = SplitActivationKernels.ThreeBitLayout.Shuffle2From1;
        _shuffle2From2 = SplitActivationKernels.ThreeBitLayout.Shuffle2From2;
        _shuffle3From1 = SplitActivationKernels.ThreeBitLayout.Shuffle3From1;
        _shuffle3From2 = SplitActivationKernels.ThreeBitLayout.Shuffle3From2;
        _shifts01 = SplitActivationKernels.ThreeBitLayout.Shifts01;
        _shifts2 = SplitActivationKernels.ThreeBitLayout.Shifts2;
        _shifts3 = SplitActivationKernels.ThreeBitLayout.Shifts3;
    }

    public static int Bits => 3;

    public static ThreeBitCodes Create() => new();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Pair(byte* p, out Vector256<byte> c0, out Vector256<byte> c1, out Vector256<byte> c2, out Vector256<byte> c3) =>
        Split(Vector256.Load(p + 8), Vector256.Create(Vector128.Load(p), Vector128.Load(p + 32)), out c0, out c1, out c2, out c3);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Lone(byte* p, out Vector256<byte> c0, out Vector256<byte> c1, out Vector256<byte> c2, out Vector256<byte> c3) =>
        Split(Vector256.Create(Vector128.Load(p + 8), Vector128<byte>.Zero), Vector256.Create(Vector128.Load(p), Vector128<byte>.Zero), out c0, out c1, out c2, out c3);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Split(Vector256<byte> s1, Vector256<byte> s2, out Vector256<byte> c0, out Vector256<byte> c1, out Vector256<byte> c2, out Vector256<byte> c3)
    {
        var byteMask = Vector256.Create((byte)7);
        c0 = Avx2.ShiftRightLogicalVariable(Avx2.Shuffle(s1, _shuffle0).AsUInt32(), _shifts01).AsByte() & byteMask;
        c1 = Avx2.ShiftRightLogicalVariable(Avx2.Shuffle(s2, _shuffle1).AsUInt32(), _shifts01).AsByte() & byteMask;
        var blend = Avx2.Blend(Avx2.Shuffle(s1, _shuffle2From1).AsUInt32(), Avx2.Shuffle(s2, _shuffle2From2).AsUInt32(), 0b1100_1100);
        c2 = Avx2.ShiftRightLogicalVariable(blend, _shifts2).AsByte() & byteMask;
        var wordMask = Vector256.Create((short)7);
        var words1 = Avx2.ShiftRightLogicalVariable(Avx2.Shuffle(s1, _shuffle3From1).AsUInt32(), _shifts3).AsInt16() & wordMask;
        var words2 = Avx2.ShiftRightLogicalVariable(Avx2.Shuffle(s2, _shuffle3From2).AsUInt32(), _shifts3).AsInt16() & wordMask;
        c3 = Avx2.PackUnsignedSaturate(words1, words2);
    }
}
