namespace Pipeline.Kernels.Metal.Tests.Emulation;

/// <summary>The emulator itself: geometry, barriers, simd collectives, matrices, and violations.</summary>
public class HarnessTests
{
    private static Emulator Emu => Emulator.Shared;

    private static DispatchGeometry Geometry(long gx, long gy, long gz, long tx, long ty, long tz) =>
        DispatchGeometry.Create(MTLSize.Of(gx, gy, gz), MTLSize.Of(tx, ty, tz));

    [Fact]
    public void ThreadPositionAttributes_FollowTheDispatchGeometry()
    {
        var g = Geometry(3, 2, 1, 20, 2, 2); // 80 threads per group: simdgroups of 32, 32, 16
        long total = g.TotalThreads;
        using var output = new GuardedBuffer(total * 19 * sizeof(uint));
        Emu.Dispatch("probe_thread_ids", g, KernelArg.Buffer(0, output));
        var o = output.ToArray<uint>();
        for (uint tgz = 0; tgz < 1; tgz++)
            for (uint tgy = 0; tgy < 2; tgy++)
                for (uint tgx = 0; tgx < 3; tgx++)
                    for (uint i = 0; i < 80; i++)
                    {
                        uint lx = i % 20, ly = i / 20 % 2, lz = i / 40;
                        uint gx = tgx * 20 + lx, gy = tgy * 2 + ly, gz = tgz * 2 + lz;
                        long linear = ((long)gz * 4 + gy) * 60 + gx;
                        var t = o.AsSpan((int)(linear * 19), 19).ToArray();
                        Assert.Equal(new uint[]
                        {
                            gx, gy, gz, lx, ly, lz, tgx, tgy, tgz, 80, 3, 2, (uint)total, i, i % 32, i / 32, 32, 3, 0xC0FFEE,
                        }, t);
                    }
    }

    [Fact]
    public void ReductionWithBarriers_IsExact()
    {
        var rng = new Random(1);
        var x = Enumerable.Range(0, 4 * 256).Select(_ => (float)rng.Next(-1000, 1000)).ToArray();
        using var xb = GuardedBuffer.Of<float>(x);
        using var yb = new GuardedBuffer(4 * sizeof(float));
        Emu.Dispatch("probe_reduce", Geometry(4, 1, 1, 256, 1, 1), KernelArg.Buffer(0, xb), KernelArg.Buffer(1, yb));
        for (int g = 0; g < 4; g++)
            Assert.Equal(x.Skip(g * 256).Take(256).Sum(), yb.AsSpan<float>()[g]);
    }

    [Fact]
    public void MissingBarrier_GivesWrongResults()
    {
        var rng = new Random(2);
        var x = Enumerable.Range(0, 4 * 256).Select(_ => (float)rng.Next(1, 1000)).ToArray();
        using var xb = GuardedBuffer.Of<float>(x);
        using var yb = new GuardedBuffer(4 * sizeof(float));
        Emu.Dispatch("probe_reduce_missing_barrier", Geometry(4, 1, 1, 256, 1, 1), KernelArg.Buffer(0, xb), KernelArg.Buffer(1, yb));
        int wrong = Enumerable.Range(0, 4).Count(g => yb.AsSpan<float>()[g] != x.Skip(g * 256).Take(256).Sum());
        Assert.True(wrong >= 1, "every threadgroup summed correctly although the first barrier is missing");
    }

    [Fact]
    public void SimdCollectives_ExchangeBetweenLanes()
    {
        const int threads = 48; // second simdgroup has 16 lanes; the others are absent
        var rng = new Random(3);
        var x = Enumerable.Range(0, threads).Select(_ => (float)rng.Next(-100, 100)).ToArray();
        using var xb = GuardedBuffer.Of<float>(x);
        using var ob = new GuardedBuffer(threads * 8 * sizeof(float));
        Emu.Dispatch("probe_simd_ops", Geometry(1, 1, 1, threads, 1, 1), KernelArg.Buffer(0, xb), KernelArg.Buffer(1, ob));
        var o = ob.ToArray<float>();
        for (int t = 0; t < threads; t++)
        {
            int sg = t / 32, lane = t % 32, lanes = Math.Min(32, threads - sg * 32);
            float Lane(int l) => l >= 0 && l < lanes ? x[sg * 32 + l] : float.NaN;
            var group = Enumerable.Range(0, lanes).Select(Lane).ToArray();
            Assert.Equal(group.Sum(), o[t * 8 + 0]);
            Assert.Equal(group.Max(), o[t * 8 + 1]);
            Assert.Equal(group.Min(), o[t * 8 + 2]);
            Assert.Equal(Lane(lane * 7 % 32), o[t * 8 + 3]);
            Assert.Equal(lane + 3 < 32 ? Lane(lane + 3) : x[t], o[t * 8 + 4]);
            Assert.Equal(lane - 5 >= 0 ? Lane(lane - 5) : x[t], o[t * 8 + 5]);
            Assert.Equal(Lane(lane ^ 6), o[t * 8 + 6]);
            Assert.Equal(Lane(9), o[t * 8 + 7]);
        }
    }

    [Fact]
    public void SimdSum_CoversOnlyLanesThatHaveNotExited()
    {
        var x = Enumerable.Range(1, 64).Select(i => (float)i).ToArray();
        using var xb = GuardedBuffer.Of<float>(x);
        using var ob = GuardedBuffer.Of<float>(new float[64]);
        Emu.Dispatch("probe_simd_sum_after_exit", Geometry(1, 1, 1, 64, 1, 1),
            KernelArg.Buffer(0, xb), KernelArg.Buffer(1, ob), KernelArg.Value(2, 45u));
        var o = ob.ToArray<float>();
        Assert.All(o[..32], v => Assert.Equal(x[..32].Sum(), v));
        Assert.All(o[32..45], v => Assert.Equal(x[32..45].Sum(), v));
        Assert.All(o[45..], v => Assert.Equal(0f, v));
    }

    [Fact]
    public void SimdgroupMatrix_MultiplyAccumulate()
    {
        var rng = new Random(4);
        float[] R() => Enumerable.Range(0, 64).Select(_ => (float)rng.Next(-8, 8)).ToArray();
        float[] a = R(), b = R(), c = R();
        var bt = new float[64];
        for (int r = 0; r < 8; r++)
            for (int k = 0; k < 8; k++)
                bt[k * 8 + r] = b[r * 8 + k];
        using var ab = GuardedBuffer.Of<float>(a);
        using var btb = GuardedBuffer.Of<float>(bt);
        using var cb = GuardedBuffer.Of<float>(c);
        using var db = new GuardedBuffer(64 * sizeof(float));
        Emu.Dispatch("probe_simdgroup_matmul", Geometry(1, 1, 1, 32, 1, 1),
            KernelArg.Buffer(0, ab), KernelArg.Buffer(1, btb), KernelArg.Buffer(2, cb), KernelArg.Buffer(3, db));
        var d = db.ToArray<float>();
        for (int r = 0; r < 8; r++)
            for (int col = 0; col < 8; col++)
            {
                float expected = c[r * 8 + col];
                for (int k = 0; k < 8; k++)
                    expected += a[r * 8 + k] * b[k * 8 + col];
                Assert.Equal(expected, d[r * 8 + col]);
            }
    }

    [Theory]
    [InlineData("probe_divergent_barrier", 32, "exited")]
    [InlineData("probe_barrier_after_exit", 64, "exited")]
    [InlineData("probe_divergent_simd", 32, "divergent simdgroup")]
    [InlineData("probe_nonuniform_broadcast", 32, "not uniform")]
    public void Violations_AreReported(string kernel, int threads, string expected)
    {
        using var y = new GuardedBuffer(threads * sizeof(float));
        var e = Assert.Throws<EmulatedKernelException>(() =>
            Emu.Dispatch(kernel, Geometry(1, 1, 1, threads, 1, 1), KernelArg.Buffer(0, y)));
        Assert.Contains(expected, e.Message);
        Assert.Contains(kernel, e.Message);
    }

    [Fact]
    public void Binding_MismatchedStructSize_IsRejected()
    {
        using var x = new GuardedBuffer(64 * sizeof(float));
        using var o = new GuardedBuffer(64 * sizeof(float));
        var e = Assert.Throws<ArgumentException>(() => Emu.Dispatch("probe_simd_sum_after_exit", Geometry(1, 1, 1, 64, 1, 1),
            KernelArg.Buffer(0, x), KernelArg.Buffer(1, o), KernelArg.Value(2, 45UL)));
        Assert.Contains("4-byte struct", e.Message);
    }

    [Fact]
    public void Binding_MissingBuffer_IsRejected()
    {
        using var x = new GuardedBuffer(64 * sizeof(float));
        var e = Assert.Throws<ArgumentException>(() => Emu.Dispatch("probe_reduce", Geometry(1, 1, 1, 256, 1, 1), KernelArg.Buffer(0, x)));
        Assert.Contains("buffer(1) is not bound", e.Message);
    }

    [Fact]
    public void PortableFiberSwitch_RunsTheSameProbes()
    {
        var emu = Emulator.PortableFibers;
        var rng = new Random(5);
        var x = Enumerable.Range(0, 2 * 256).Select(_ => (float)rng.Next(-1000, 1000)).ToArray();
        using var xb = GuardedBuffer.Of<float>(x);
        using var yb = new GuardedBuffer(2 * sizeof(float));
        emu.Dispatch("probe_reduce", Geometry(2, 1, 1, 256, 1, 1), KernelArg.Buffer(0, xb), KernelArg.Buffer(1, yb));
        Assert.Equal(x[..256].Sum(), yb.AsSpan<float>()[0]);
        Assert.Equal(x[256..].Sum(), yb.AsSpan<float>()[1]);
        using var y = new GuardedBuffer(32 * sizeof(float));
        Assert.Throws<EmulatedKernelException>(() => emu.Dispatch("probe_divergent_simd", Geometry(1, 1, 1, 32, 1, 1), KernelArg.Buffer(0, y)));
    }
}
