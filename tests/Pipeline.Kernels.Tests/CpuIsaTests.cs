using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Pipeline.Kernels.Cpu;

namespace Pipeline.Kernels.Tests;

/// <summary>Choosing the kernel path: PIPELINE_CPU_ISA's values, its errors, and what the backend reports.</summary>
public sealed class CpuIsaParsingTests
{
    [Fact]
    public void KnownValuesSelectTheirPath()
    {
        Assert.Equal(CpuKernels.DefaultIsa, CpuKernels.ParseIsa(null));
        Assert.Equal(CpuKernels.DefaultIsa, CpuKernels.ParseIsa(""));
        Assert.Equal(CpuIsa.Scalar, CpuKernels.ParseIsa("scalar"));
        if (Vector128.IsHardwareAccelerated)
            Assert.Equal(CpuIsa.Vector128, CpuKernels.ParseIsa("vector128"));
        if (Vector256.IsHardwareAccelerated)
            Assert.Equal(CpuIsa.Vector256, CpuKernels.ParseIsa("vector256"));
        if (Avx2.IsSupported)
            Assert.Equal(CpuIsa.Avx2, CpuKernels.ParseIsa("avx2"));
    }

    [Fact]
    public void UnknownValueNamesTheVariableAndTheValue()
    {
        var e = Assert.Throws<InvalidOperationException>(() => CpuKernels.ParseIsa("AVX2"));
        Assert.Contains("PIPELINE_CPU_ISA=AVX2: unknown value", e.Message);
        Assert.Contains("expected one of scalar", e.Message);
        Assert.Throws<InvalidOperationException>(() => CpuKernels.ParseIsa("sse"));
    }

    [Fact]
    public void Vector512IsRefusedWhereNotAccelerated()
    {
        if (Vector512.IsHardwareAccelerated)
        {
            Assert.Equal(CpuIsa.Vector512, CpuKernels.ParseIsa("vector512"));
            return;
        }
        var e = Assert.Throws<InvalidOperationException>(() => CpuKernels.ParseIsa("vector512"));
        Assert.Contains("PIPELINE_CPU_ISA=vector512: not accelerated on this CPU", e.Message);
        Assert.DoesNotContain("vector512", e.Message[e.Message.IndexOf("expected", StringComparison.Ordinal)..]);
    }
}

/// <summary>The process-wide switch and variable (in the non-parallel collection: other tests build backends meanwhile).</summary>
[Collection(nameof(ScalarKernelCollection))]
public sealed class CpuIsaSwitchTests
{
    [Fact]
    public void BackendRefusesABadVariableWithOneClearMessage()
    {
        string? previous = Environment.GetEnvironmentVariable(CpuKernels.IsaVariable);
        Environment.SetEnvironmentVariable(CpuKernels.IsaVariable, "vector1024");
        try
        {
            var e = Assert.Throws<InvalidOperationException>(() => new CpuBackend(threads: 1));
            Assert.StartsWith("PIPELINE_CPU_ISA=vector1024: unknown value", e.Message);
        }
        finally
        {
            Environment.SetEnvironmentVariable(CpuKernels.IsaVariable, previous);
        }
    }

    [Theory]
    [InlineData(CpuIsa.Scalar, 0, "scalar")]
    [InlineData(CpuIsa.Vector128, 128, "Vector128")]
    [InlineData(CpuIsa.Vector256, 256, "Vector256")]
    [InlineData(CpuIsa.Vector512, 512, "Vector512")]
    public void ForcedPathShowsInTheBackendName(CpuIsa isa, int bits, string name)
    {
        var previous = CpuKernels.Isa;
        try
        {
            CpuKernels.Isa = isa;
            Assert.Equal(bits, CpuKernels.VectorBits);
            Assert.Equal(isa != CpuIsa.Scalar, CpuKernels.UseVectors);
            Assert.False(CpuKernels.UseAvx2);
            using var backend = new CpuBackend(threads: 1);
            Assert.Equal($"cpu (1 threads, {name})", backend.Name);
        }
        finally
        {
            CpuKernels.Isa = previous;
        }
    }

    [Fact]
    public void Avx2PathUsesTheWidestPortableWidth()
    {
        if (!Avx2.IsSupported)
        {
            Assert.Throws<PlatformNotSupportedException>(() => CpuKernels.Isa = CpuIsa.Avx2);
            return;
        }
        var previous = CpuKernels.Isa;
        try
        {
            CpuKernels.Isa = CpuIsa.Avx2;
            int bits = Vector512.IsHardwareAccelerated ? 512 : 256;
            Assert.Equal(bits, CpuKernels.VectorBits);
            Assert.True(CpuKernels.UseAvx2);
            Assert.Contains($"AVX2 + Vector{bits}", CpuKernels.IsaName);
        }
        finally
        {
            CpuKernels.Isa = previous;
        }
    }
}
