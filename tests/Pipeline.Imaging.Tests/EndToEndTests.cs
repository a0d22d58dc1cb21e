using Pipeline.Model;
using Pipeline.Model.TestModels;
using Pipeline.Model.Vision;
using SkiaSharp;

namespace Pipeline.Imaging.Tests;

/// <summary>The whole image path on a generated tiny model: bytes, decode, preprocess, tower, prompt, prefill, greedy tokens.</summary>
public sealed class EndToEndTests : IDisposable
{
    private readonly string _model = Path.Combine(Path.GetTempPath(), "pipeline-vision-e2e-" + Guid.NewGuid().ToString("N"));

    public EndToEndTests() => TestModelGenerator.Generate(TestModelPreset.Tiny, TestModelQuant.UdQ2Kxl, seed: 23, _model);

    public void Dispose()
    {
        try
        {
            Directory.Delete(_model, recursive: true);
        }
        catch (IOException)
        {
            // A mapping still closing; the OS temp cleaner gets it.
        }
    }

    [Fact]
    public void PngImage_AtTheDefaultBudget_DrivesGeneration()
    {
        // A 300 x 200 PNG: 960 x 624 after resizing, 60 x 39 patches, 20 x 13 groups = 260 soft tokens.
        var png = TestImages.Encode(300, 200, SKColorType.Rgba8888, SKAlphaType.Unpremul, TestImages.PatternRgba(300, 200), SKEncodedImageFormat.Png);
        var first = Generate(png);
        var second = Generate(png);
        Assert.Equal(first.Tokens, second.Tokens);
        Assert.Equal(260, first.SoftTokens);

        // Another image changes what the model says.
        var other = TestImages.Encode(300, 200, SKColorType.Rgba8888, SKAlphaType.Unpremul, new byte[300 * 200 * 4], SKEncodedImageFormat.Png);
        Assert.NotEqual(first.LastLogits, Generate(other).LastLogits);
    }

    private (int SoftTokens, int[] Tokens, float[] LastLogits) Generate(byte[] png)
    {
        // MaxBatchRows must hold a whole image (up to 280 rows at the default budget).
        using var engine = Engine.Load(_model, new EngineOptions { Threads = 2, MaxBatchRows = 512 });
        var vision = engine.Checkpoint.Vision!;
        var image = Gemma4ImageProcessor.Preprocess(ImageDecoder.Decode(png, "test.png"), vision);
        Assert.Equal((624, 960), (image.Height, image.Width));
        using var encoder = new Gemma4VisionEncoder(engine.Backend, engine.Checkpoint);
        var rows = encoder.EncodeToHost(image);
        Assert.True(Array.TrueForAll(rows, float.IsFinite), "non-finite image embeddings");

        // <bos><|turn>user\n<|image|>Describe.<turn|>\n<|turn>model\n, the template's shape with placeholder ids.
        int[] prompt = [2, 105, 2364, 107, vision.ImageTokenId, 82858, 236761, 106, 107, 105, 4368, 107];
        var (ids, spans) = ImagePrompt.Expand(prompt, [rows], vision, engine.Config.HiddenSize);
        Assert.Equal(prompt.Length + image.SoftTokens + 1, ids.Length);

        using var session = engine.OpenSession();
        session.Prefill(ids, spans);
        var tokens = new int[4];
        for (int i = 0; i < tokens.Length; i++)
        {
            tokens[i] = Argmax(session.Logits);
            session.Decode(tokens[i]);
        }
        return (image.SoftTokens, tokens, session.Logits.ToArray());
    }

    private static int Argmax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++)
        {
            if (logits[i] > logits[best])
                best = i;
        }
        return best;
    }
}
