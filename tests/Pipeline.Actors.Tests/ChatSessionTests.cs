using Pipeline.Actors.Client;
using Pipeline.Actors.Tests.Infrastructure;
using Pipeline.Tokenizer.Chat;

namespace Pipeline.Actors.Tests;

/// <summary>ChatSession on the tiny model: streaming, the final event, cache reuse, reset, determinism, cancellation.</summary>
public class ChatSessionTests(TinyModel tiny) : IClassFixture<TinyModel>
{
    private static readonly SendOptions Sampled = new() { Temperature = 1.0f, TopK = 40, Seed = 5, MaxNewTokens = 6 };

    [Fact]
    public async Task Streams_text_events_then_one_final_event_with_counts_and_timings()
    {
        var (system, client) = tiny.Start();
        using var _ = system;
        await using var session = ChatSession.Attach(client, system: "You are concise.");
        var events = new List<ChatStreamEvent>();
        await foreach (var e in session.SendStreamAsync("What is the capital of France?", Sampled))
            events.Add(e);

        Assert.True(events.Count >= 2, $"{events.Count} events");
        Assert.All(events[..^1], e =>
        {
            Assert.False(e.Done);
            Assert.NotEmpty(e.Text);
            Assert.Null(e.FinishReason);
        });
        var final = events[^1];
        Assert.True(final.Done);
        Assert.Empty(final.Text);
        Assert.NotNull(final.FinishReason);
        Assert.True(final.PromptTokens > 10, $"prompt {final.PromptTokens}");
        Assert.Equal(0, final.CachedTokens);
        Assert.InRange(final.CompletionTokens, 1, 6);
        Assert.True(final.TtftMs > 0);
        Assert.True(final.PrefillTokensPerSecond > 0);
        Assert.True(final.TotalMs >= final.TtftMs);
        if (final.CompletionTokens > 2)
            Assert.True(final.DecodeTokensPerSecond > 0);

        var transcript = await session.GetTranscriptAsync();
        Assert.Equal(["system", "user", "assistant"], transcript.Select(m => m.Role));
        Assert.Equal("You are concise.", transcript[0].Content);
        Assert.Equal(string.Concat(events.Where(e => !e.IsReasoning).Select(e => e.Text)), transcript[2].Content);
    }

    [Fact]
    public async Task Turn_two_reuses_the_cache_and_reset_starts_over()
    {
        var (system, client) = tiny.Start();
        using var _ = system;
        await using var session = ChatSession.Attach(client, system: "Be brief.");
        var one = await session.SendAsync("What is the capital of France?", Sampled);
        Assert.Equal(0, one.Final.CachedTokens);
        var two = await session.SendAsync("And of Germany?", Sampled);
        Assert.True(two.Final.CachedTokens > one.Final.PromptTokens / 2, $"cached {two.Final.CachedTokens} of {two.Final.PromptTokens}");
        Assert.True(two.Final.PromptTokens > one.Final.PromptTokens);

        string before = session.SessionId;
        session.Reset();
        Assert.NotEqual(before, session.SessionId);
        var three = await session.SendAsync("And of Japan?", Sampled);
        Assert.Equal(0, three.Final.CachedTokens);
        var transcript = await session.GetTranscriptAsync();
        Assert.Equal(["system", "user", "assistant"], transcript.Select(m => m.Role));
        Assert.Equal("Be brief.", transcript[0].Content);

        // A new system prompt after the first turn starts a new conversation that leads with it.
        session.System = "Answer in French.";
        Assert.NotEqual(before, session.SessionId);
        await session.SendAsync("Hello", Sampled);
        transcript = await session.GetTranscriptAsync();
        Assert.Equal("Answer in French.", transcript[0].Content);
        Assert.Equal(3, transcript.Count);
    }

    [Fact]
    public async Task Same_seed_gives_the_same_answer_as_the_PipelineClient_path()
    {
        var (system, client) = tiny.Start();
        using var _ = system;
        var options = new SendOptions { Temperature = 1.0f, TopK = 0, TopP = 1, MinP = 0.01f, Seed = 42, MaxNewTokens = 8, ReasoningEffort = ReasoningEffort.Low };
        await using var session = ChatSession.Attach(client, system: "S");
        var viaSession = await session.SendAsync("Tell me a story", options);
        var direct = await client.RunTurnAsync(new TurnRequest
        {
            SessionId = "direct-" + Guid.NewGuid().ToString("N"),
            Messages = [ChatMessage.FromSystem("S"), ChatMessage.FromUser("Tell me a story")],
            Options = options.ToGenerationOptions(),
        });
        Assert.Equal(direct.Text, viaSession.Text);
        Assert.Equal(direct.Reasoning, viaSession.Reasoning);
        Assert.Equal(direct.Finished.Usage.CompletionTokens, viaSession.Final.CompletionTokens);
        Assert.Equal(direct.Finished.Usage.PromptTokens, viaSession.Final.PromptTokens);

        await using var again = ChatSession.Attach(client, system: "S");
        Assert.Equal(viaSession.Text, (await again.SendAsync("Tell me a story", options)).Text);
    }

    [Fact]
    public async Task Cancelling_throws_and_the_session_answers_the_next_turn()
    {
        var (system, client) = tiny.Start();
        using var _ = system;
        await using var session = ChatSession.Attach(client);
        using var cancel = new CancellationTokenSource();
        int streamed = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var e in session.SendStreamAsync("hello", new SendOptions { Temperature = 1.0f, Seed = 3, MaxNewTokens = 200 }, cancel.Token))
            {
                streamed++;
                cancel.Cancel();
            }
        });
        Assert.InRange(streamed, 1, 2);
        var next = await session.SendAsync("again", Sampled).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.True(next.Final.CachedTokens > 0);
    }

    [Fact]
    public async Task One_turn_at_a_time_and_bad_options_fail_with_the_pipelines_reason()
    {
        var (system, client) = tiny.Start();
        using var _ = system;
        await using var session = ChatSession.Attach(client);
        await using (var first = session.SendStreamAsync("hello", Sampled with { MaxNewTokens = 50 }).GetAsyncEnumerator())
        {
            Assert.True(await first.MoveNextAsync());
            var error = await Assert.ThrowsAsync<InvalidOperationException>(() => session.SendAsync("second", Sampled));
            Assert.Contains("already answering", error.Message);
            Assert.Throws<InvalidOperationException>(session.Reset);
        }

        var failed = await Assert.ThrowsAsync<TurnFailedException>(() => session.SendAsync("x", Sampled with { MaxNewTokens = 0 }));
        Assert.Contains("MaxNewTokens", failed.Message);
        var bad = await Assert.ThrowsAsync<TurnFailedException>(() => session.SendAsync("x", Sampled with { Temperature = -1 }));
        Assert.Contains("emperature", bad.Message);
    }

    [Fact]
    public async Task LoadAsync_runs_its_own_pipeline()
    {
        await using var session = await ChatSession.LoadAsync(TestPaths.TinyModel, new ChatSessionOptions { Threads = 1, System = "Be concise.", Hocon = "pipeline.layer-groups = 2" });
        Assert.Equal(2, session.Client.Settings.LayerGroups);
        var one = await session.SendAsync("Hi", Sampled with { MaxNewTokens = 3 });
        var two = await session.SendAsync("Again", Sampled with { MaxNewTokens = 3 });
        Assert.True(two.Final.CachedTokens > 0);
        Assert.Contains(one.Final.FinishReason, new FinishReason?[] { FinishReason.Length, FinishReason.Stop });
    }

    [Fact]
    public void SendOptions_map_to_generation_options()
    {
        var options = new SendOptions
        {
            MaxNewTokens = 17,
            Temperature = 0.6f,
            TopP = 0.9f,
            TopK = 20,
            MinP = 0.05f,
            Seed = 9,
            ReasoningEffort = ReasoningEffort.Medium,
            EnableThinking = false,
            Stop = ["END"],
            ToolsJson = "[]",
        }.ToGenerationOptions();
        Assert.Equal(17, options.MaxNewTokens);
        Assert.Equal(0.6f, options.Temperature);
        Assert.Equal(0.9f, options.TopP);
        Assert.Equal(20, options.TopK);
        Assert.Equal(0.05f, options.MinP);
        Assert.Equal(9UL, options.Seed);
        Assert.Equal("medium", options.ReasoningEffort);
        Assert.False(options.EnableThinking);
        Assert.Equal(["END"], options.Stop!);
        Assert.Equal("[]", options.ToolsJson);
        Assert.Null(new SendOptions().ToGenerationOptions().ReasoningEffort);
    }

    [Fact]
    public void Image_files_are_read_with_their_media_type_and_bad_ones_are_named()
    {
        string path = Path.Combine(Path.GetTempPath(), $"img-{Guid.NewGuid():N}.png");
        File.WriteAllBytes(path, [0x89, 0x50, 0x4E, 0x47]);
        try
        {
            var image = ImageFiles.Load(path);
            Assert.Equal("image/png", image.MediaType);
            Assert.Equal(4, image.Data!.Length);
        }
        finally
        {
            File.Delete(path);
        }
        Assert.Contains(".txt", Assert.Throws<ArgumentException>(() => ImageFiles.Load("/tmp/x.txt")).Message);
        Assert.Contains("missing.png", Assert.Throws<FileNotFoundException>(() => ImageFiles.Load("/tmp/missing.png")).Message);
    }
}
