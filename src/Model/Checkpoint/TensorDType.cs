using Pipeline.Kernels;

namespace Pipeline.Model.Checkpoint;

/// <summary>The safetensors element types Pipeline reads; any other dtype is a load error.</summary>
public enum TensorDType
{
    BF16,
    F16,
    F32,
    U32,
    I32,
    U8,
    I8,
    F64,
}

public static class TensorDTypes
{
    public static int SizeOf(TensorDType type) => type switch
    {
        TensorDType.U8 or TensorDType.I8 => 1,
        TensorDType.BF16 or TensorDType.F16 => 2,
        TensorDType.F32 or TensorDType.U32 or TensorDType.I32 => 4,
        TensorDType.F64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, null),
    };

    /// <summary>The safetensors header spelling ("BF16", "U32", ...).</summary>
    public static string HeaderName(TensorDType type) => type.ToString();

    public static bool TryParse(string headerName, out TensorDType type)
    {
        foreach (var candidate in Enum.GetValues<TensorDType>())
        {
            if (HeaderName(candidate) == headerName)
            {
                type = candidate;
                return true;
            }
        }
        type = default;
        return false;
    }

    /// <summary>The kernel scalar type of a float dtype; null for integer and F64 tensors.</summary>
    public static ScalarType? ToScalarType(TensorDType type) => type switch
    {
        TensorDType.BF16 => ScalarType.BF16,
        TensorDType.F16 => ScalarType.F16,
        TensorDType.F32 => ScalarType.F32,
        _ => null,
    };

    public static TensorDType FromScalarType(ScalarType type) => type switch
    {
        ScalarType.BF16 => TensorDType.BF16,
        ScalarType.F16 => TensorDType.F16,
        _ => TensorDType.F32,
    };
}
