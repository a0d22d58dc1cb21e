using Pipeline.Kernels;
using Pipeline.Kernels.Reference;
using Pipeline.Model.Vision;

namespace Pipeline.Model.Tests.Vision;

/// <summary>
/// Images in the text model's prompt: token layout, embedding spans, bidirectional image blocks, blocking,
/// truncation. Runs that block the prompt differently agree to 2e-3 (float summation order in the
/// kernels; logits are ~10); the effects tested for are above 1e-2.
/// </summary>
[Collection(TinyVisionCollection.Name)]
public sealed class ImagePromptTests : IDisposable
{
    private const int Boi = 255999, Image = 258880, Eoi = 258882, Hidden = 64;
    private const double Tolerance = 2e-3;

    private readonly Engine _engine;
    private readonly Engine _small;
    private readonly float[] _imageRows;   // [6, 64]: a real 2 x 3-group image through the tiny tower

    public ImagePromptTests(TinyVisionModels models)
    {
        _engine = Engine.Load(models.Mlx, new EngineOptions { Threads = 2 });
        _small = Engine.Load(models.Mlx, new EngineOptions { Threads = 2, MaxBatchRows = 8, MaxLogitRows = 3, SlidingCacheReserve = 0, InitialCacheCapacity = 8 });
        using var encoder = new Gemma4VisionEncoder(_engine.Backend, _engine.Checkpoint, maxSoftTokens: 70);
        _imageRows = encoder.EncodeToHost(VisionEncoderTests.GridImage(6, 9, seed: 21));
    }

    public void Dispose()
    {
        _engine.Dispose();
        _small.Dispose();
    }

    /// <summary>[bos, text x4, placeholder, text x3] expanded: boi at 5, image rows at 6..11, eoi at 12, text at 13..15.</summary>
    private (int[] Ids, EmbeddingSpan[] Spans) Prompt(float[] rows, int lastToken = 1596) =>
        ImagePrompt.Expand([2, 105, 2364, 107, 9259, Image, 236787, 3048, lastToken], [rows], _engine.Checkpoint.Vision!, Hidden);

    [Fact]
    public void Expand_LaysOutBoiImageTokensEoi()
    {
        var vision = _engine.Checkpoint.Vision!;
        Assert.Equal([Boi, Image, Image, Image, Eoi], ImagePrompt.ImageTokens(vision, 3));

        var two = new float[2 * Hidden];
        var (ids, spans) = ImagePrompt.Expand([2, Image, 10, Image], [_imageRows, two], vision, Hidden);
        Assert.Equal([2, Boi, Image, Image, Image, Image, Image, Image, Eoi, 10, Boi, Image, Image, Eoi], ids);
        Assert.Equal(2, spans.Length);
        Assert.Equal((2, 6), (spans[0].Start, spans[0].Count(Hidden)));
        Assert.Equal((11, 2), (spans[1].Start, spans[1].Count(Hidden)));

        var ex = Assert.Throws<ArgumentException>(() => ImagePrompt.Expand([2, Image, Image], [two], vision, Hidden));
        Assert.Contains("2 image placeholders", ex.Message);
        Assert.Throws<ArgumentException>(() => ImagePrompt.Expand([2, Image], [new float[70]], vision, Hidden));
    }

    [Fact]
    public void OneRowSpan_OfATokensOwnScaledEmbedding_EqualsThatToken()
    {
        // Rows are used as given: a 1-row span holding Embed[id] * bf16(sqrt(hidden)) is exactly the token.
        int[] ids = [2, 105, 2364, 107, 9259];
        var row = new float[Hidden];
        for (int c = 0; c < Hidden; c++)
            row[c] = ReferenceWeights.At(_engine.Checkpoint.Embedding, ids[3], c) * Scalars.RoundToBf16(MathF.Sqrt(Hidden));
        var plain = AllLogits(_engine, ids, []);
        var spanned = AllLogits(_engine, [2, 105, 2364, Image, 9259], [new EmbeddingSpan(3, row)]);
        for (int p = 0; p < ids.Length; p++)
            Assert.True(MaxDiff(plain[p], spanned[p]) < 1e-5, $"position {p}");

        // Two rows given as a span see each other: the first row's output changes though its inputs do not.
        // (The second row's changes too, through the first row's changed states in later layers.)
        var twoRows = new float[2 * Hidden];
        for (int c = 0; c < Hidden; c++)
        {
            twoRows[c] = row[c];
            twoRows[Hidden + c] = ReferenceWeights.At(_engine.Checkpoint.Embedding, ids[4], c) * 8f;
        }
        var bidirectional = AllLogits(_engine, [2, 105, 2364, Image, Image], [new EmbeddingSpan(3, twoRows)]);
        Assert.True(MaxDiff(plain[3], bidirectional[3]) > 1e-2, "the first row of a span did not see the second");
        Assert.Equal(plain[2], bidirectional[2]);
    }

    [Fact]
    public void LaterImageRow_ChangesEarlierImagePositions_LaterTextDoesNot()
    {
        var (ids, spans) = Prompt(_imageRows);
        Assert.Equal(16, ids.Length);
        var baseline = AllLogits(_engine, ids, spans);

        // A later image row reaches every earlier image position, and nothing before the image.
        var perturbed = (float[])_imageRows.Clone();
        for (int c = 0; c < Hidden; c++)
            perturbed[5 * Hidden + c] += 0.5f * MathF.Sin(c);
        var (_, perturbedSpans) = Prompt(perturbed);
        var image = AllLogits(_engine, ids, perturbedSpans);
        for (int p = 0; p < 6; p++)
            Assert.Equal(baseline[p], image[p]);
        for (int p = 6; p < 12; p++)
            Assert.True(MaxDiff(baseline[p], image[p]) > 1e-2, $"image position {p} did not see the last image row");

        // A later text token reaches nothing before it.
        var (textIds, textSpans) = Prompt(_imageRows, lastToken: 4000);
        var text = AllLogits(_engine, textIds, textSpans);
        for (int p = 0; p < 15; p++)
            Assert.Equal(baseline[p], text[p]);
        Assert.True(MaxDiff(baseline[15], text[15]) > 1e-2);
    }

    [Fact]
    public void SmallBlocks_EndBeforeAnImage_AndGiveTheSameLogits()
    {
        // Blocks of 8 would cut the image (positions 6..11): the first block stops at 6.
        var (ids, spans) = Prompt(_imageRows);
        var expected = AllLogits(_engine, ids, spans);
        var actual = AllLogits(_small, ids, spans);
        for (int p = 0; p < ids.Length; p++)
            Assert.True(MaxDiff(expected[p], actual[p]) < Tolerance, $"position {p}: {MaxDiff(expected[p], actual[p])}");
    }

    [Fact]
    public void ImageLongerThanABlock_IsRefused_AndTheSessionIsUnchanged()
    {
        var nine = new float[9 * Hidden];
        using var session = _small.OpenSession();
        session.Prefill([2, 105]);
        var (ids, spans) = ImagePrompt.Expand([Image], [nine], _small.Checkpoint.Vision!, Hidden);
        var ex = Assert.Throws<ArgumentException>(() => session.Prefill(ids, spans));
        Assert.Contains("MaxBatchRows", ex.Message);
        Assert.Equal(2, session.Length);
        Assert.Empty(session.Embedded);
    }

    [Fact]
    public void MalformedSpans_AreRefused_AndTheSessionIsUnchanged()
    {
        using var session = _engine.OpenSession();
        session.Prefill([2]);
        int[] ids = [105, Image, Image, Image, 107];
        var two = new float[2 * Hidden];
        Assert.Contains("not a positive multiple", Assert.Throws<ArgumentException>(() => session.Prefill(ids, [new EmbeddingSpan(1, new float[Hidden + 1])])).Message);
        Assert.Contains("inside the 5 ids", Assert.Throws<ArgumentOutOfRangeException>(() => session.Prefill(ids, [new EmbeddingSpan(4, two)])).Message);
        Assert.Contains("disjoint", Assert.Throws<ArgumentOutOfRangeException>(() => session.Prefill(ids, [new EmbeddingSpan(1, two), new EmbeddingSpan(2, two)])).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => session.Prefill(ids, [new EmbeddingSpan(-1, two)]));
        Assert.Equal(1, session.Length);
        Assert.Empty(session.Embedded);
    }

    [Fact]
    public void PrefillInPieces_EqualsOnePrefill()
    {
        var (ids, spans) = Prompt(_imageRows);
        var expected = AllLogits(_engine, ids, spans);
        using var session = _engine.OpenSession();
        session.Prefill(ids.AsSpan(0, 5));
        var pieces = new List<float[]>();
        session.Prefill(ids.AsSpan(5, 9), [spans[0] with { Start = 1 }], (_, logits) => pieces.Add(logits.ToArray()));
        session.Prefill(ids.AsSpan(14), [], (_, logits) => pieces.Add(logits.ToArray()));
        for (int i = 0; i < pieces.Count; i++)
            Assert.True(MaxDiff(expected[5 + i], pieces[i]) < Tolerance, $"position {5 + i}");
    }

    [Fact]
    public void TruncatingIntoAnImage_RecomputesItsKeptRows_AsAFreshPrefillWouldHave()
    {
        var (ids, spans) = Prompt(_imageRows);
        using var session = _engine.OpenSession();
        session.Prefill(ids, spans);

        // Keep boi and three image rows: the cache goes back to the image start.
        session.Truncate(9);
        Assert.Equal(6, session.CachedLength);
        Assert.Equal(3, session.Embedded.Single().Count(Hidden));
        var rest = new List<float[]>();
        session.Prefill(ids.AsSpan(9), [new EmbeddingSpan(0, _imageRows.AsMemory(3 * Hidden))], (_, logits) => rest.Add(logits.ToArray()));

        // The same as a fresh prompt holding the image as two separate spans.
        var fresh = AllLogits(_engine, ids, [new EmbeddingSpan(6, _imageRows.AsMemory(0, 3 * Hidden)), new EmbeddingSpan(9, _imageRows.AsMemory(3 * Hidden))]);
        for (int i = 0; i < rest.Count; i++)
            Assert.True(MaxDiff(fresh[9 + i], rest[i]) < Tolerance, $"position {9 + i}");

        // Truncating before the image and prefilling it again restores the original logits.
        var original = AllLogits(_engine, ids, spans);
        session.Truncate(6);
        Assert.Empty(session.Embedded);
        session.Prefill(ids.AsSpan(6), [spans[0] with { Start = 0 }]);
        Assert.True(MaxDiff(original[^1], session.Logits.ToArray()) < Tolerance);
    }

    [Fact]
    public void ReplayAfterADeepTruncation_KeepsTheImage()
    {
        // Rings of exactly the 16-token window: truncating far back forces a replay from position 0,
        // which must embed the image rows again.
        var (head, spans) = Prompt(_imageRows);
        var ids = head.Concat(Enumerable.Range(0, 30).Select(i => 1000 + 37 * i)).ToArray();
        var expected = AllLogits(_small, ids.AsSpan(0, 20).ToArray(), spans);
        using var session = _small.OpenSession();
        session.Prefill(ids, spans);
        session.Truncate(19);
        Assert.True(session.CachedLength < 19, "expected the rings to force a replay");
        session.Prefill(ids.AsSpan(19, 1));
        Assert.True(MaxDiff(expected[19], session.Logits.ToArray()) < Tolerance);
    }

    private static List<float[]> AllLogits(Engine engine, int[] ids, EmbeddingSpan[] spans)
    {
        using var session = engine.OpenSession();
        var all = new List<float[]>();
        session.Prefill(ids, spans, (_, logits) => all.Add(logits.ToArray()));
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
