namespace Pipeline.Kernels.Metal.Tests.Emulation;

/// <summary>The shim accepts the MSL subset the kernels use and rejects what it does not emulate.</summary>
public class SubsetTests
{
    private const string Head = "#include <metal_stdlib>\nusing namespace metal;\n";

    [Fact]
    public void SupportedSubset_Compiles()
    {
        var (ok, diagnostics) = Emulator.TryCompileKernelSource(Head + """
            struct Params { uint n; float eps; };
            inline float twice(float v) { return 2.0f * v; }
            kernel void k(device const float4* x [[buffer(0)]], device half* y [[buffer(1)]],
                          constant Params& p [[buffer(2)]], uint3 gid [[thread_position_in_grid]],
                          ushort lane [[thread_index_in_simdgroup]]) {
                threadgroup float shared[32];
                float4 v = x[gid.x] * 2.0f + float4(1.0f, 2.0f, 3.0f, 4.0f);
                shared[lane] = dot(v, v) + fast::exp(v.x) + precise::tanh(v.y);
                threadgroup_barrier(mem_flags::mem_threadgroup);
                float s = simd_sum(shared[lane]) + simd_shuffle_down(v.w, 1) + as_type<float>(p.n);
                y[gid.x] = half(twice(s) + float(y[0]) * p.eps);
            }
            """);
        Assert.True(ok, diagnostics);
    }

    [Theory]
    [InlineData("double d = 1.0; y[0] = float(d);", "double")]
    [InlineData("y[0] = float(x[0] * 0.5);", "double promotion")]
    [InlineData("bfloat b = bfloat(1.0f); y[0] = float(b);", "bfloat type")]
    [InlineData("half h = half(1.0f); half g = h * h; y[0] = float(g);", "half arithmetic")]
    [InlineData("float2 v = float2(1.0f, 2.0f); float2 w = v.yx; y[0] = w.x;", "multi-component swizzle")]
    [InlineData("printf(\"%f\", x[0]);", "printf")]
    [InlineData("atomic_fetch_add_explicit((device atomic_uint*)y, 1u, memory_order_relaxed);", "atomics")]
    [InlineData("y[0] = simd_prefix_exclusive_sum(x[0]);", "unsupported simd function")]
    public void OutsideTheSubset_FailsToCompile(string body, string what)
    {
        var (ok, _) = Emulator.TryCompileKernelSource(Head +
            "kernel void k(device const float* x [[buffer(0)]], device float* y [[buffer(1)]]) {\n" + body + "\n}\n");
        Assert.False(ok, $"{what} compiled but the emulator does not implement it");
    }

    [Theory]
    [InlineData("device float* y [[buffer(0)]], float4 in [[stage_in]]", "stage_in")]
    [InlineData("device float* y [[buffer(0)]], threadgroup float* t [[threadgroup(0)]]", "threadgroup parameters")]
    [InlineData("device float* y [[buffer(0)]], uint q [[quadgroup_index_in_threadgroup]]", "quadgroup attributes")]
    public void UnsupportedAttributes_FailToCompile(string parameters, string what)
    {
        var (ok, _) = Emulator.TryCompileKernelSource(Head + $"kernel void k({parameters}) {{ y[0] = 1.0f; }}\n");
        Assert.False(ok, $"{what} compiled but the emulator does not implement it");
    }

    [Fact]
    public void OtherMetalHeaders_AreNotAvailable()
    {
        var (ok, _) = Emulator.TryCompileKernelSource("#include <metal_compute>\n" + Head +
            "kernel void k(device float* y [[buffer(0)]]) { y[0] = 1.0f; }\n");
        Assert.False(ok);
    }
}
