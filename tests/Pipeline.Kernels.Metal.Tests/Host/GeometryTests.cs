namespace Pipeline.Kernels.Metal.Tests.Host;

/// <summary>The launch geometry the backend dispatches (and the emulator runs) for the model's shapes.</summary>
public class GeometryTests
{
    [Theory]
    [InlineData(262_144, 1, 32_768)]   // tied head
    [InlineData(5376, 1, 672)]
    [InlineData(21_504, 1, 2688)]      // gate/up of the 31B
    [InlineData(9, 3, 2)]              // row tail
    public void Qmv_EightRowsPerThreadgroupOfTwoSimdgroups(int rows, int tokens, int groups)
    {
        var g = KernelGeometry.Qmv(rows, tokens);
        Assert.Equal(MTLSize.Of(groups, tokens), g.Threadgroups);
        Assert.Equal(MTLSize.Of(64), g.ThreadsPerThreadgroup);
    }

    [Theory]
    [InlineData(64, 32)]
    [InlineData(256, 64)]
    [InlineData(512, 128)]
    [InlineData(5376, 1024)]
    [InlineData(1, 32)]
    public void RmsNorm_ThreadsCoverAQuarterOfTheRowWithinMetalLimits(int dim, int threads)
    {
        var g = KernelGeometry.RmsNorm(7, dim);
        Assert.Equal(MTLSize.Of(7), g.Threadgroups);
        Assert.Equal(MTLSize.Of(threads), g.ThreadsPerThreadgroup);
        Assert.Equal(0, threads % DispatchGeometry.SimdWidth);
    }

    [Fact]
    public void OtherFamilies()
    {
        Assert.Equal(new DispatchGeometry(MTLSize.Of(32, 5), MTLSize.Of(128)), KernelGeometry.Attention(32, 5));
        Assert.Equal(new DispatchGeometry(MTLSize.Of(168, 4), MTLSize.Of(128)), KernelGeometry.Matmul(5376, 100));
        Assert.Equal(new DispatchGeometry(MTLSize.Of(21), MTLSize.Of(256)), KernelGeometry.Embed(5376, 1));
        Assert.Equal(new DispatchGeometry(MTLSize.Of(1), MTLSize.Of(256)), KernelGeometry.Elementwise(1));
        Assert.Equal(new DispatchGeometry(MTLSize.Of(128), MTLSize.Of(256)), KernelGeometry.TopK(262_144));
        Assert.Equal(new DispatchGeometry(MTLSize.Of(2), MTLSize.Of(256)), KernelGeometry.Rope(1, 1, 1024));
    }

    [Fact]
    public void OversizedThreadgroups_AreRejected()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => DispatchGeometry.Create(MTLSize.Of(1), MTLSize.Of(32, 33)));
        Assert.Contains("1056 threads", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => MTLSize.Of(0));
    }
}
