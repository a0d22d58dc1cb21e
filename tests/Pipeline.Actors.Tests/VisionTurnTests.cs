using Akka.Actor;
using Pipeline.Actors.Actors;
using Pipeline.Actors.Execution;
using Pipeline.Actors.Hosting;
using Pipeline.Actors.Messages;
using Pipeline.Actors.Sessions;
using Pipeline.Actors.Tests.Infrastructure;
using Pipeline.Imaging;
using Pipeline.Model;
using Pipeline.Model.Sampling;
using Pipeline.Model.TestModels;
using Pipeline.Model.Vision;
using SkiaSharp;

namespace Pipeline.Actors.Tests;

/// <summary>
/// The tiny preset (with its vision tower) generated into a temp folder: the actors' model and a bare
/// engine on the same folder as the reference.
/// </summary>
public sealed class TinyVisionModel : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "pipeline-actors-vision-" + Guid.NewGuid().ToString("N"));
    private readonly Engine _engine;
    private readonly Gemma4VisionEncoder _encoder;

    public TinyVisionModel()
    {
        TestModelGenerator.Generate(TestModelPreset.Tiny, TestModelQuant.UdQ2Kxl, seed: 23, _directory);
        Model = PipelineModel.Load(_directory, threads: 1);
        _engine = Engine.Load(_directory, new EngineOptions { Threads = 1 });
        _encoder = new Gemma4VisionEncoder(_engine.Backend, _engine.Checkpoint);
    }

    public PipelineModel Model { get; }

    public (ActorSystem System, PipelineClient Client) Start(ISessionStore? store = null, string name = "vision-test")
    {
        var system = ActorSystem.Create(name, PipelineConfig.Load(TinyModel.TestHocon));
        return (system, PipelineClient.Start(system, Model, store));
    }

    /// <summary>
    /// What the bare engine does with <paramref name="transcript"/>: render, tokenize, decode and encode
    /// every image, expand the image tokens, prefill in one call, sample as the sampler stage does.
    /// </summary>
    public (int[] PromptIds, int[] Generated) Generate(IReadOnlyList<ChatMessage> transcript, GenerationOptions options)
    {
        lock (_engine)
        {
            string text = Model.ChatFormat.Render(transcript, new PromptSettings(options.EnableThinking, options.ReasoningEffort, options.ToolsJson));
            int[] ids = Model.Tokenizer.Encode(text, addSpecialTokens: false);
            var vision = _engine.Checkpoint.Vision!;
            var rows = transcript.SelectMany(m => m.Images ?? []).Select(image =>
            {
                byte[] bytes = SessionActor.ImageBytes(image, out string? error) ?? throw new ArgumentException(error);
                return (ReadOnlyMemory<float>)_encoder.EncodeToHost(Gemma4ImageProcessor.Preprocess(ImageDecoder.Decode(bytes), vision));
            }).ToArray();
            var (expanded, spans) = ImagePrompt.Expand(ids, rows, vision, _engine.Config.HiddenSize);

            using var session = _engine.OpenSession();
            session.Prefill(expanded, spans);
            var sampler = new Sampler(_engine.VocabSize, Model.SamplingFor(options));
            var generated = new List<int>();
            for (int produced = 1; ; produced++)
            {
                int token = sampler.Sample(session.Logits);
                var stop = sampler.Observe(token);
                if (Model.StopTokenIds.Contains(token))
                    break;
                generated.Add(token);
                if (stop != SamplerStop.None || produced >= options.MaxNewTokens)
                    break;
                session.Decode(token);
            }
            return (expanded, generated.ToArray());
        }
    }

    /// <summary>A small PNG with a colour pattern (resized up to the 280-token budget by preprocessing: 260 soft tokens).</summary>
    public static byte[] Png(int width, int height, int seed)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        var random = new Random(seed);
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++)
                bitmap.SetPixel(x, y, new SKColor((byte)(x * 255 / width), (byte)random.Next(256), (byte)(y * 255 / height)));
        }
        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    public void Dispose()
    {
        _encoder.Dispose();
        _engine.Dispose();
        Model.Dispose();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
            // A mapping still closing; the OS temp cleaner gets it.
        }
    }
}

/// <summary>Image turns through the actors: same tokens as the bare engine, rebuilt after a restart, remote URLs refused.</summary>
public class VisionTurnTests(TinyVisionModel tiny) : IClassFixture<TinyVisionModel>
{
    private static readonly GenerationOptions s_options = new() { Temperature = 1.0f, TopK = 40, Seed = 11, MaxNewTokens = 6 };

    private static ChatMessage ImageMessage() =>
        ChatMessage.FromUser("Describe these two pictures.") with
        {
            Images =
            [
                new ImagePart("image/png", TinyVisionModel.Png(48, 32, seed: 1), null),
                new ImagePart(null, null, "data:image/png;base64," + Convert.ToBase64String(TinyVisionModel.Png(40, 40, seed: 2))),
            ],
        };

    [Fact]
    public async Task An_image_turn_through_the_actors_gives_the_bare_engines_tokens()
    {
        var (system, client) = tiny.Start();
        using var _ = system;
        var completed = TurnRecording.Attach(system);
        var request = new TurnRequest { SessionId = "vision-turn", Messages = [ImageMessage()], Options = s_options };

        var result = await client.RunTurnAsync(request).WaitAsync(TimeSpan.FromSeconds(120));
        Assert.Null(result.Finished.Error);
        var record = await DeterminismTests.Eventually(() => completed.GetValueOrDefault(request.TurnId));
        var (prompt, generated) = tiny.Generate(request.Messages, s_options);
        Assert.Equal(prompt, record.PromptIds);
        Assert.Equal(generated, record.GeneratedIds);
        Assert.NotEmpty(generated);

        // Both images are in the prompt as boi + 260 (48x32 -> 960x624) or 256 (40x40 -> 768x768) image tokens + eoi.
        var vision = tiny.Model.Checkpoint.Vision!;
        int[] boi = [.. Enumerable.Range(0, prompt.Length).Where(i => prompt[i] == vision.BeginOfImageTokenId)];
        Assert.Equal(2, boi.Length);
        foreach (var (at, n) in boi.Zip(new[] { 260, 256 }))
        {
            Assert.All(prompt[(at + 1)..(at + 1 + n)], id => Assert.Equal(vision.ImageTokenId, id));
            Assert.Equal(vision.EndOfImageTokenId, prompt[at + 1 + n]);
        }
        Assert.Equal(260 + 256, prompt.Count(id => id == vision.ImageTokenId));

        // The transcript keeps the images' bytes as sent (what a restarted session re-encodes).
        var transcript = await client.GetTranscriptAsync(request.SessionId);
        var sent = request.Messages[0].Images!;
        var kept = transcript[0].Images!;
        Assert.Equal(sent.Count, kept.Count);
        for (int i = 0; i < sent.Count; i++)
            Assert.Equal((sent[i].Data, sent[i].Url), (kept[i].Data, kept[i].Url));
    }

    [Fact]
    public async Task A_restarted_session_re_encodes_its_images_and_continues_with_the_same_tokens()
    {
        const string session = "vision-restart";
        var first = new TurnRequest { SessionId = session, Messages = [ImageMessage()], Options = s_options };
        var second = new TurnRequest { SessionId = session, Messages = [ChatMessage.FromUser("Which one is brighter?")], Options = s_options with { Seed = 12 } };

        // Without a restart: turn two reuses the cache (images included).
        var (systemA, clientA) = tiny.Start(name: "vision-a");
        int[] uninterrupted;
        using (systemA)
        {
            var completed = TurnRecording.Attach(systemA);
            Assert.Null((await clientA.RunTurnAsync(first).WaitAsync(TimeSpan.FromSeconds(120))).Finished.Error);
            var reused = await clientA.RunTurnAsync(second).WaitAsync(TimeSpan.FromSeconds(120));
            Assert.Null(reused.Finished.Error);
            Assert.True(reused.Finished.Usage.CachedTokens > 516, $"cached {reused.Finished.Usage.CachedTokens}");
            uninterrupted = (await DeterminismTests.Eventually(() => completed.GetValueOrDefault(second.TurnId))).GeneratedIds;
        }

        // With one: turn one on a system that then goes away, turn two on a new one sharing the store.
        var store = new InMemorySessionStore();
        var (systemB, clientB) = tiny.Start(store, "vision-b");
        using (systemB)
            Assert.Null((await clientB.RunTurnAsync(first with { TurnId = Guid.NewGuid().ToString("N") }).WaitAsync(TimeSpan.FromSeconds(120))).Finished.Error);
        await systemB.Terminate();

        var (systemC, clientC) = tiny.Start(store, "vision-c");
        using var _ = systemC;
        var completedC = TurnRecording.Attach(systemC);
        var rebuilt = await clientC.RunTurnAsync(second).WaitAsync(TimeSpan.FromSeconds(120));
        Assert.Null(rebuilt.Finished.Error);
        Assert.Equal(0, rebuilt.Finished.Usage.CachedTokens);
        var record = await DeterminismTests.Eventually(() => completedC.GetValueOrDefault(second.TurnId));
        Assert.Equal(uninterrupted, record.GeneratedIds);

        var transcript = await clientC.GetTranscriptAsync(session);
        var (prompt, generated) = tiny.Generate(transcript.Take(transcript.Count - 1).ToArray(), second.Options);
        Assert.Equal(prompt, record.PromptIds);
        Assert.Equal(generated, record.GeneratedIds);
    }

    [Fact]
    public async Task A_remote_image_url_is_refused_with_a_clear_error()
    {
        var (system, client) = tiny.Start();
        using var _ = system;
        var request = new TurnRequest
        {
            SessionId = "vision-remote",
            Messages = [ChatMessage.FromUser("What is this?") with { Images = [new ImagePart(null, null, "https://example.com/cat.png")] }],
        };
        var result = await client.RunTurnAsync(request).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(FinishReason.Error, result.Finished.Reason);
        Assert.Contains("remote image URLs are refused ('https://example.com/cat.png')", result.Finished.Error);
        Assert.Empty(await client.GetTranscriptAsync(request.SessionId));
    }

    [Fact]
    public async Task A_corrupt_image_ends_the_turn_with_the_decoders_error()
    {
        var (system, client) = tiny.Start();
        using var _ = system;
        var request = new TurnRequest
        {
            SessionId = "vision-corrupt",
            Messages = [ChatMessage.FromUser("And this?") with { Images = [new ImagePart("image/png", [137, 80, 78, 71, 1, 2, 3], null)] }],
        };
        var result = await client.RunTurnAsync(request).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(FinishReason.Error, result.Finished.Reason);
        Assert.Contains("an image could not be used: image 1 of 1", result.Finished.Error);
    }
}
