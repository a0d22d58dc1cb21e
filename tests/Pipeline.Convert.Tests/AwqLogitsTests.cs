using Pipeline.Kernels;
using Pipeline.Model;
using Pipeline.Model.Checkpoint;
using Xunit.Abstractions;

namespace Pipeline.Convert.Tests;

/// <summary>AWQ folding is exact: with quantization off (f32 output), the folded model's logits equal the original's.</summary>
public class AwqLogitsTests(ITestOutputHelper output)
{
    [Fact]
    public void TinyA_FoldedInF32_GivesTheOriginalLogits()
    {
        using var temp = TestPaths.NewTempFolder();
        string imatrix;
        using (var original = SafetensorsSet.Open(TestPaths.TinyBf16))
            imatrix = AwqFoldingTests.WriteImatrix(original, temp.Path, new Random(21), skip: null);
        string folded = Converter.Run(new ConvertOptions
        {
            InputDir = TestPaths.TinyBf16,
            OutputDir = Path.Combine(temp.Path, "folded"),
            ImatrixPath = imatrix,
            OutputType = ScalarType.F32,
        }, null, _ => { });

        int[] ids = FixtureSequences.Ids("random_3w"); // 53 tokens: the 16-token sliding windows wrap
        var expected = AllLogits(TestPaths.TinyBf16, ids);
        var actual = AllLogits(folded, ids);

        float scale = expected.Max(MathF.Abs);
        float worst = 0;
        for (int i = 0; i < expected.Length; i++)
            worst = MathF.Max(worst, MathF.Abs(expected[i] - actual[i]));
        output.WriteLine($"max |diff| {worst}, max |logit| {scale}, relative {worst / scale}");
        Assert.True(worst <= 1e-4f * scale, $"max |diff| {worst} exceeds 1e-4 x max |logit| {scale}");

        // The folded model really is different on disk: its projections carry the scales.
        using var foldedSet = SafetensorsSet.Open(folded);
        using var originalSet = SafetensorsSet.Open(TestPaths.TinyBf16);
        Assert.NotEqual(
            AwqFoldingTests.Load(originalSet.Get("model.language_model.layers.3.mlp.gate_proj.weight"))[5],
            AwqFoldingTests.Load(foldedSet.Get("language_model.model.layers.3.mlp.gate_proj.weight"))[5]);
    }

    /// <summary>Logits after every position, [positions, vocab] flattened.</summary>
    internal static float[] AllLogits(string model, int[] ids)
    {
        using var engine = Engine.Load(model, new EngineOptions { MaxContext = 512, Threads = 2 });
        using var session = engine.OpenSession();
        int vocab = engine.VocabSize;
        var all = new float[(long)ids.Length * vocab];
        session.Prefill(ids, (index, logits) => logits.CopyTo(all.AsSpan(index * vocab, vocab)));
        return all;
    }
}
