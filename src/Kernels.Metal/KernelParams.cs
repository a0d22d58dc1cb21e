using System.Runtime.InteropServices;

namespace Pipeline.Kernels.Metal;

// Field-for-field mirrors of the MSL parameter structs (Kernels/*.metal), passed with setBytes.
// Every field is 4 bytes, so both compilers lay them out identically; KernelParamsTests checks
// the names, order and sizes against the .metal sources and the emulator checks sizes at launch.

[StructLayout(LayoutKind.Sequential)]
internal struct LinearParams
{
    public uint OutRows, Cols, Tokens, GroupSize, ScaleType;
}

[StructLayout(LayoutKind.Sequential)]
internal struct ElementwiseParams
{
    public uint N;
    public float Value;
}

[StructLayout(LayoutKind.Sequential)]
internal struct NormParams
{
    public uint Rows, Dim;
    public float Eps;
    public uint WeightType, HasWeight;
}

[StructLayout(LayoutKind.Sequential)]
internal struct RopeParams
{
    public uint Tokens, Heads, HeadDim;
}

[StructLayout(LayoutKind.Sequential)]
internal struct EmbedParams
{
    public uint Cols, Tokens, Quantized, Bits, GroupSize, ScaleType, DenseType;
    public float Scale;
}

[StructLayout(LayoutKind.Sequential)]
internal struct AttentionParams
{
    public uint Tokens, Heads, KvHeads, HeadDim, Window, Capacity, Start;
    public float Scale;
    public uint RangeCount;
}

[StructLayout(LayoutKind.Sequential)]
internal struct StoreKvParams
{
    public uint Tokens, KvWidth, Capacity, Start, First;
}

[StructLayout(LayoutKind.Sequential)]
internal struct TopKParams
{
    public uint N, K, HasIndices;
}
