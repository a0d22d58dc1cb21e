using Pipeline.Kernels.Metal.Tests.Emulation;
using Pipeline.Kernels.Reference;

using Pipeline.Kernels.Testing;

namespace Pipeline.Kernels.Metal.Tests.Conformance;

/// <summary>MetalBackend's host-side behaviour under emulation: batching, weight wrapping, top-k, bad input.</summary>
public sealed class BackendBehaviourTests : IDisposable
{
    private readonly EmulatedGpu _gpu = new();
    private readonly MetalBackend _metal;

    public BackendBehaviourTests() => _metal = new MetalBackend(_gpu);

    public void Dispose() => _metal.Dispose();

    [Fact]
    public void LongOpStreams_AreSplitIntoCommandBuffers_AndStayOrdered()
    {
        var x = Enumerable.Range(0, 1000).Select(i => (float)i).ToArray();
        using var a = ConformanceChecks.Upload(_metal, x);
        using var b = _metal.Allocate(x.Length);
        for (int i = 0; i < 100; i++)
        {
            _metal.Add(a, a, b);   // b = 2a
            _metal.Scale(b, 0.5f); // b = a
            _metal.Copy(b, a);
            using var scratch = _metal.Allocate(8);   // disposed while work is still queued
            _metal.Scale(scratch, 2f);
        }
        int before = _gpu.Submitted;
        Assert.True(before >= 400 / MetalBackend.CallsPerCommandBuffer - 1, $"only {before} command buffers for 400 dispatches");
        Assert.Equal(x, ConformanceChecks.ReadAll(_metal, a));
        Assert.Equal(before + 1, _gpu.Submitted);   // Read committed the tail and waited
    }

    [Fact]
    public void PageAlignedWeights_AreWrappedWithoutCopy_OthersAreCopied()
    {
        using var aligned = new RandomWeights(7, pageAligned: true);
        using var unaligned = new RandomWeights(7);
        ConformanceChecks.Linear(_metal, aligned, aligned.Quantized(24, 128, 4, 64), 1);
        Assert.Equal(3, _gpu.ZeroCopyWraps);
        Assert.Equal(0, _gpu.CopiedWraps);
        ConformanceChecks.Linear(_metal, unaligned, unaligned.Quantized(24, 128, 4, 64), 1);
        Assert.Equal(3, _gpu.CopiedWraps);
        // The same weight object is wrapped once.
        var dense = aligned.Dense(8, 64, ScalarType.BF16);
        ConformanceChecks.Linear(_metal, aligned, dense, 1);
        ConformanceChecks.Linear(_metal, aligned, dense, 5);
        Assert.Equal(4, _gpu.ZeroCopyWraps);
    }

    [Theory]
    [InlineData(262_144, 1)]    // the Gemma vocabulary: 128 chunks, then merge passes
    [InlineData(262_144, 16)]
    [InlineData(5_000, 64)]     // tail chunk; k up to the limit
    [InlineData(40, 40)]        // k = n
    public void TopK_MatchesASort(int n, int k)
    {
        var rng = new Random(n + k);
        var logits = Enumerable.Range(0, n).Select(_ => (float)Math.Round(rng.NextDouble() * 200 - 100, 1)).ToArray();  // many ties
        using var buffer = ConformanceChecks.Upload(_metal, logits);
        var ids = new int[k];
        var values = new float[k];
        _metal.TopK(buffer, ids, values);
        var expected = logits.Select((v, i) => (v, i)).OrderByDescending(p => p.v).ThenBy(p => p.i).Take(k).ToArray();
        Assert.Equal(expected.Select(p => p.i), ids);
        Assert.Equal(expected.Select(p => p.v), values);
    }

    [Fact]
    public void BadInput_IsRejectedWithClearMessages()
    {
        using var weights = new RandomWeights(3);
        using var x = _metal.Allocate(64);
        using var y = _metal.Allocate(8);
        using var foreign = new ReferenceBackend().Allocate(8);
        var dense = weights.Dense(8, 64, ScalarType.F32);
        Assert.Contains("not allocated by this", Assert.Throws<ArgumentException>(() => _metal.Linear(dense, x, foreign, 1)).Message);
        Assert.Contains("output has 8 elements, expected 4",
            Assert.Throws<ArgumentException>(() => _metal.Linear(weights.Dense(4, 64, ScalarType.F32), x, y, 1)).Message);
        var odd = weights.Quantized(8, 64, 4, 64);
        var badGroup = new QuantizedWeight(odd.Packed, odd.Scales, odd.Biases, 8, 64, 4, 8, ScalarType.BF16);
        Assert.Contains("group 8", Assert.Throws<ArgumentException>(() => _metal.Linear(badGroup, x, y, 1)).Message);
        Assert.Contains("token id 50", Assert.Throws<ArgumentOutOfRangeException>(() => _metal.Embed(weights.Dense(50, 8, ScalarType.BF16), [50], 1f, y)).Message);
        using var q = _metal.Allocate(1024);
        var wide = new AttentionShape(1, 1, 1024, 0, 1f);
        using var cache = _metal.Allocate(1024);
        Assert.Contains("head dim 1024", Assert.Throws<ArgumentException>(() =>
            _metal.Attention(q, q, q, new KvStore(cache, cache, 1), 0, 1, wide, q, [])).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => _metal.TopK(y, new int[65], new float[65]));
        Assert.Throws<ArgumentOutOfRangeException>(() => _metal.TopK(y, new int[9], new float[9]));
        // A rejected op leaves nothing half-recorded behind.
        ConformanceChecks.Linear(_metal, weights, dense, 1);
    }

    [Fact]
    public void KernelViolation_SurfacesAtTheNextSyncPoint_AndTheBackendRecovers()
    {
        // A kernel dispatched with more threads per threadgroup than Metal allows fails in the
        // emulator; the error must reach the caller at Synchronize, not vanish on the GPU thread.
        var batch = new CommandBatch();
        var call = batch.Add("scale_f32", DispatchGeometry.Create(MTLSize.Of(1), MTLSize.Of(1024)));
        var buffer = _gpu.NewBuffer(4096);
        CommandBatch.Bind(call, 0, buffer, 0);
        batch.BindValue(call, 1, new ElementwiseParams { N = 1024, Value = 2f });
        call.Geometry = new DispatchGeometry(MTLSize.Of(1), MTLSize.Of(2048));
        _gpu.Submit(batch);
        var e = Assert.Throws<InvalidOperationException>(_gpu.WaitIdle);
        Assert.Contains("exceeds Metal's limit", e.Message);
        _gpu.Free(buffer);
        ConformanceChecks.Elementwise(_metal, new RandomWeights(1), 33);
    }
}
