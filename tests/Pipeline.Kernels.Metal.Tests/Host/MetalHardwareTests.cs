using Pipeline.Kernels.Metal.Tests.Conformance;

using Pipeline.Kernels.Testing;

namespace Pipeline.Kernels.Metal.Tests.Host;

/// <summary>
/// The real Metal backend against the reference backend, on a Mac: the emulated conformance cases
/// that matter most, on the GPU. Run with `dotnet test tests/Pipeline.Kernels.Metal.Tests
/// --filter MetalHardwareTests` (docs/METAL.md).
/// </summary>
public sealed class MetalHardwareTests
{
    [MetalHardwareFact]
    public void Linear_AllBitWidthsAndDenseTypes()
    {
        using var metal = MetalBackend.Create();
        using var w = new RandomWeights(11);
        foreach (int bits in new[] { 2, 3, 4, 5, 6, 8 })
        {
            ConformanceChecks.Linear(metal, w, w.Quantized(45, 1088, bits, 64), 1);
            ConformanceChecks.Linear(metal, w, w.Quantized(45, 256, bits, 128), 37);
        }
        foreach (var type in new[] { ScalarType.BF16, ScalarType.F16, ScalarType.F32 })
        {
            ConformanceChecks.Linear(metal, w, w.Dense(57, 131, type, 0.1f), 1);
            ConformanceChecks.Linear(metal, w, w.Dense(40, 64, type, 0.1f), 35);
        }
        using var aligned = new RandomWeights(12, pageAligned: true);
        ConformanceChecks.Linear(metal, aligned, aligned.Quantized(300, 5376, 4, 64), 1);
    }

    [MetalHardwareFact]
    public void NormsRopeEmbedElementwise()
    {
        using var metal = MetalBackend.Create();
        using var w = new RandomWeights(13);
        ConformanceChecks.RmsNorm(metal, w, 2, 5376, ScalarType.BF16);
        ConformanceChecks.RmsNorm(metal, w, 40, 512, null);
        ConformanceChecks.Rope(metal, w, 9, 8, 256, 0.0, 3);
        ConformanceChecks.Rope(metal, w, 2, 4, 512, 0.25, 262000);
        ConformanceChecks.Embed(metal, w.Quantized(50, 192, 3, 64), [0, 49, 7], 73.5f);
        ConformanceChecks.Elementwise(metal, w, 100_003);
    }

    [MetalHardwareFact]
    public void Attention_SlidingAndFullShapes()
    {
        using var metal = MetalBackend.Create();
        using var w = new RandomWeights(14);
        ConformanceChecks.Attention(metal, w, new AttentionShape(16, 8, 256, 8, 1f), 8, 21, 2, []);
        ConformanceChecks.Attention(metal, w, new AttentionShape(32, 4, 512, 0, 1f), 24, 17, 3, []);
        ConformanceChecks.Attention(metal, w, new AttentionShape(4, 2, 16, 0, 1f), 64, 10, 12, [new TokenRange(2, 6)]);
        ConformanceChecks.AttentionRing(metal, w);
    }

    [MetalHardwareFact]
    public void TopK_OverTheVocabulary()
    {
        using var metal = MetalBackend.Create();
        var rng = new Random(15);
        var logits = Enumerable.Range(0, 262_144).Select(_ => (float)rng.NextDouble()).ToArray();
        using var buffer = ConformanceChecks.Upload(metal, logits);
        var ids = new int[16];
        var values = new float[16];
        metal.TopK(buffer, ids, values);
        var expected = logits.Select((v, i) => (v, i)).OrderByDescending(p => p.v).ThenBy(p => p.i).Take(16).ToArray();
        Assert.Equal(expected.Select(p => p.i), ids);
    }
}
