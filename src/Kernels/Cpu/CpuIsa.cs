namespace Pipeline.Kernels.Cpu;

/// <summary>The instruction-set paths of the CPU kernels (see <see cref="CpuKernels.Isa"/>).</summary>
public enum CpuIsa
{
    /// <summary>Plain scalar loops.</summary>
    Scalar,

    /// <summary>Portable Vector128 (SSE, AdvSimd) only.</summary>
    Vector128,

    /// <summary>Portable Vector256 only.</summary>
    Vector256,

    /// <summary>Portable Vector512 only.</summary>
    Vector512,

    /// <summary>The widest accelerated portable width plus the AVX2-specific code decoding and int16/int8 kernels.</summary>
    Avx2,
}
