using Pipeline.Model.TestModels;
using Pipeline.Model.Tests.Checkpoint;

namespace Pipeline.Model.Tests.Vision;

/// <summary>
/// Which layers let an image's rows see the image's later rows: sliding-window layers only, as Hugging
/// Face's Gemma-4 builds its masks (the same-image OR-mask goes into the sliding mask alone). Checked on
/// two generated "mid" variants, one with only full-attention layers and one with only sliding layers.
/// </summary>
public sealed class ImageMaskLayerTypeTests
{
    [Theory]
    [InlineData(1, false)]     // every layer full attention: causal inside the image
    [InlineData(1000, true)]   // every layer sliding: bidirectional inside the image
    public void AnEarlierImageRowSeesALaterOne_OnlyOnSlidingLayers(int fullAttentionPeriod, bool expectSeen)
    {
        var preset = TestModelPreset.Mid with { Name = "mid-mask", FullAttentionPeriod = fullAttentionPeriod };
        using var folder = new TempFolder();
        TestModelGenerator.Generate(preset, TestModelQuant.UdQ2Kxl, seed: 3, folder.Path);
        using var engine = Engine.Load(folder.Path, new EngineOptions { Threads = 1 });
        int hidden = preset.HiddenSize;
        Assert.Equal(fullAttentionPeriod == 1, engine.Config.IsFullAttention(0));

        var random = new Random(5);
        var rows = new float[3 * hidden];                          // [3, hidden]: an image of three rows
        for (int i = 0; i < rows.Length; i++)
            rows[i] = (float)(random.NextDouble() * 2 - 1);
        var changed = (float[])rows.Clone();
        for (int c = 0; c < hidden; c++)
            changed[2 * hidden + c] += 0.5f;                        // only the last image row differs

        int[] ids = [2, 105, 7, 7, 7, 106];
        var baseline = Logits(engine, ids, rows);
        var perturbed = Logits(engine, ids, changed);
        Assert.Equal(baseline[1], perturbed[1]);                   // before the image: untouched either way
        for (int p = 2; p <= 3; p++)
        {
            if (expectSeen)
                Assert.True(MaxDiff(baseline[p], perturbed[p]) > 1e-3, $"image row {p - 2} did not see the last row on sliding layers");
            else
                Assert.Equal(baseline[p], perturbed[p]);
        }
        Assert.True(MaxDiff(baseline[4], perturbed[4]) > 1e-3);   // the changed row itself
    }

    private static List<float[]> Logits(Engine engine, int[] ids, float[] imageRows)
    {
        using var session = engine.OpenSession();
        var all = new List<float[]>();
        session.Prefill(ids, [new EmbeddingSpan(2, imageRows)], (_, logits) => all.Add(logits.ToArray()));
        return all;
    }

    private static double MaxDiff(float[] a, float[] b)
    {
        double max = 0;
        for (int i = 0; i < a.Length; i++)
            max = Math.Max(max, Math.Abs((double)a[i] - b[i]));
        return max;
    }
}
