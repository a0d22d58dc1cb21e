using System.Text.Json;
using Pipeline.Actors.Execution;
using Pipeline.Model.TestModels;
using Pipeline.Model.Vision;
using SkiaSharp;

namespace Pipeline.Host.Tests.Serve;

/// <summary>
/// An image chat end to end: an OpenAI-style request with an image_url data: URI goes through the HTTP API,
/// the actors and the vision encoder of the tiny preset (which has a vision tower), and the image's soft tokens
/// show up in the prompt.
/// </summary>
[Collection(ServeCollection.Name)]
public sealed class ImageChatTests(ServeFixture fixture) : IDisposable
{
    private readonly string _directory = GenerateVisionModel();

    private static string GenerateVisionModel()
    {
        string directory = Path.Combine(Path.GetTempPath(), "pipeline-serve-vision-" + Guid.NewGuid().ToString("N"));
        TestModelGenerator.Generate(TestModelPreset.Tiny, TestModelQuant.UdQ2Kxl, seed: 5, directory);
        return directory;
    }

    [Fact]
    public async Task ImageUrlDataUri_IsEncodedIntoThePrompt_AndAnswered()
    {
        await using var server = await TestServer.StartAsync(fixture, null, _ => Task.Run(() => PipelineModel.Load(_directory, threads: 1)));
        await server.WaitReadyAsync();
        const int width = 200, height = 120;
        string dataUri = "data:image/png;base64," + System.Convert.ToBase64String(Png(width, height));
        var (h, w) = Gemma4ImageProcessor.TargetSize(height, width, Gemma4ImageProcessor.DefaultBudget, 16, 3);
        int softTokens = h / 48 * (w / 48);

        object UserWith(bool image) => new
        {
            role = "user",
            content = image
                ? new object[] { new { type = "text", text = "What is in this picture?" }, new { type = "image_url", image_url = new { url = dataUri } } }
                : new object[] { new { type = "text", text = "What is in this picture?" } },
        };
        var (withImage, _) = await server.PostJsonAsync("/v1/chat/completions", Bodies.Chat(UserWith(true)).With("max_tokens", 3).With("seed", 7));
        var (textOnly, _) = await server.PostJsonAsync("/v1/chat/completions", Bodies.Chat(UserWith(false)).With("max_tokens", 3).With("seed", 7));

        int Prompt(JsonElement body) => body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
        int extra = Prompt(withImage) - Prompt(textOnly);
        // The image adds its soft tokens plus the begin/end-of-image markers (less any placeholder text the template drops).
        Assert.InRange(extra, softTokens, softTokens + 3);
        Assert.Equal(3, withImage.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal("length", withImage.GetProperty("choices")[0].GetProperty("finish_reason").GetString());

        // Same image, same seed: the same answer (the image rows are deterministic).
        var (again, _) = await server.PostJsonAsync("/v1/chat/completions", Bodies.Chat(UserWith(true)).With("max_tokens", 3).With("seed", 7));
        Assert.Equal(
            withImage.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString(),
            again.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
    }

    private static byte[] Png(int width, int height)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++)
                bitmap.SetPixel(x, y, new SKColor((byte)(x * 255 / width), (byte)(y * 255 / height), (byte)((x + y) % 256)));
        }
        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
